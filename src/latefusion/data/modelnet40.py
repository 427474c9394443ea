"""ModelNet40 (Wu et al., 2015) as rendered views: 12,311 CAD objects of 40 classes, each rendered
from 12 viewpoints (the layout of multi-view CNN work, e.g. MVCNN's 12-view shaded renders). Two
views are the two modalities, front and rear by default: views 0 and 6, as Greedy (Wu et al., 2022)
uses [3P]; the paper's choice is not known [NF].

Raw layout (`latefusion prepare modelnet40 --src RAW`):

  RAW/<class>/<train|test>/<object>.obj.shaded_v001.png ... _v012.png   (or <object>_001.png ... _012.png)

All views are stored (`view00` ... `view11`, uint8 (size, size, 3)), so which views form the
modalities is a training-time key: `data.options.views`, e.g. {front: 0, rear: 6}. An object with
some views missing is skipped and reported. Validation: 20% of the train objects [3P: Greedy].
"""

from __future__ import annotations

import re
from pathlib import Path

import numpy as np
from pydantic import Field, field_validator

from ..errors import DataError
from ..config import DataConfig, ImageSide, Section, validate
from .registry import DATASETS
from .augment import FrameTransform, ImageAugment, Transforms
from .media import read_image
from .prepared import RECIPES, PrepareOptions, Recipe, Sample, Scan, Stored, open_prepared, prepared_bundle

VIEW_FILE = re.compile(r"^(?P<object>.+_\d+)\D*?(?P<view>\d{3})\.png$")


class ModelNetOptions(PrepareOptions):
    val_fraction: float = Field(0.2, ge=0, lt=1)  # [3P] Greedy holds out 20% of train
    views: int = Field(12, gt=0)
    size: ImageSide = 224  # MVCNN renders are 224 x 224 already


def view_name(view: int) -> str:
    return f"view{view:02d}"


@RECIPES.register("modelnet40")
class ModelNetRecipe(Recipe):
    name = "modelnet40"
    Options = ModelNetOptions

    def scan(self, src: Path, options: ModelNetOptions) -> Scan:
        class_names = sorted(p.name for p in src.iterdir() if (p / "train").is_dir() or (p / "test").is_dir())
        if not class_names:
            raise DataError(f"{src} holds no <class>/train or <class>/test folders of rendered views")
        samples, skipped = [], []
        for label, name in enumerate(class_names):
            for split in ("train", "test"):
                objects: dict[str, dict[int, str]] = {}
                for path in sorted((src / name / split).glob("*.png")):
                    match = VIEW_FILE.match(path.name)
                    if match is None:
                        skipped.append({"id": str(path), "split": split, "why": f"{path}: name is not <object>[.obj.shaded_v]NNN.png"})
                        continue
                    objects.setdefault(match["object"], {})[int(match["view"]) - 1] = str(path)
                for obj, views in sorted(objects.items()):
                    missing = [v + 1 for v in range(options.views) if v not in views]
                    if missing:
                        skipped.append({"id": obj, "split": split, "why": f"{src / name / split}: object {obj} lacks view(s) {missing} of {options.views}"})
                        continue
                    samples.append(Sample(obj, label, split, obj, {view_name(v): views[v] for v in range(options.views)}))
        return Scan(samples, class_names, skipped)

    def stored(self, options: ModelNetOptions) -> list[Stored]:
        return [Stored(view_name(v), (options.size, options.size, 3), "uint8") for v in range(options.views)]

    def decode(self, sample: Sample, options: ModelNetOptions) -> tuple[dict[str, np.ndarray], None]:
        return {name: read_image(Path(path), options.size) for name, path in sample.sources.items()}, None


class ModelNetData(Section):
    views: dict[str, int] = Field(default_factory=lambda: {"front": 0, "rear": 6})  # modality name -> view (0-based)
    image: ImageAugment = Field(default_factory=ImageAugment)

    @field_validator("views")
    @classmethod
    def at_least_one(cls, views: dict[str, int]) -> dict[str, int]:
        if not views or any(v < 0 for v in views.values()):
            raise DataError("give one or more modality: view pairs with views counted from 0, e.g. {front: 0, rear: 6}")
        return views


@DATASETS.register("modelnet40", options=ModelNetData)
def build_modelnet40(config: DataConfig):
    options = validate(ModelNetData, config.options, "data.options of modelnet40")
    prepared = open_prepared(config.path, "modelnet40")
    missing = {m: v for m, v in options.views.items() if view_name(v) not in prepared.stored}
    if missing:
        raise DataError(f"data.options.views {missing}: {config.path} holds views 0..{len(prepared.stored) - 1}")

    def transforms(train: bool) -> Transforms:
        return Transforms({m: (view_name(v), FrameTransform(options.image, train)) for m, v in options.views.items()})

    return prepared_bundle(prepared, transforms, {m: "image" for m in options.views}, {m: {"name": "resnet18"} for m in options.views})
