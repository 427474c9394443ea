"""UCF101 (Soomro et al., 2012): 101 actions, 13,320 clips; modalities RGB and optical flow.

Raw layout (`latefusion prepare ucf101 --src RAW`), as distributed plus the usual two-stream flow:

  RAW/ucfTrainTestlist/classInd.txt           "1 ApplyEyeMakeup"
  RAW/ucfTrainTestlist/trainlist0K.txt        "ApplyEyeMakeup/v_ApplyEyeMakeup_g08_c01.avi 1"   (K = split 1, 2, 3)
  RAW/ucfTrainTestlist/testlist0K.txt         "ApplyEyeMakeup/v_ApplyEyeMakeup_g01_c01.avi"
  RAW/UCF-101/<Class>/v_<Class>_gGG_cCC.avi
  RAW/tvl1_flow/                              precomputed flow JPEGs (128 = no motion), per clip either
                                              u/<clip>/*.jpg and v/<clip>/*.jpg (or x/, y/), or
                                              <clip>/flow_x_*.jpg and <clip>/flow_y_*.jpg
                                              (optional: see `flow_source`)

Stored per clip: `rgb` (frames, size, size, 3) uint8, frames spread evenly over the clip, and `flow`
(flow_frames, size, size, 2) uint8, consecutive flow fields from the clip's middle (TSN's stacking).

Where flow comes from (`flow_source`): `auto` (default) reads a clip's precomputed flow JPEGs and,
for a clip that has none, computes its flow from the video during prepare (flow.py: pyramidal
Horn-Schunck, not TV-L1) and lists the clip under "filled" in the report; `files` requires the
JPEGs (a clip without them is skipped and reported); `compute` computes every clip's flow and
ignores the JPEGs. Computed flow is stored exactly as the JPEGs are (same fields, bound, 128 = no
motion), so training does not care where it came from. A flow folder that exists but is damaged
or too short is an error in every mode, never replaced silently.
Validation: whole groups gGG of the official train list; the official splits are drawn by group
because the clips of one group share actor and scene.
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Literal

import numpy as np
from pydantic import Field

from ..errors import DataError
from ..config import DataConfig, FrameCount, ImageSide, Section, validate
from .registry import DATASETS
from .augment import FlowTransform, FrameTransform, ImageAugment, Transforms
from .flow import video_flow
from .media import MediaError, decode_video, read_image, spread_frames
from .prepared import RECIPES, Prepared, PrepareOptions, Recipe, Sample, Scan, Stored, open_prepared, prepared_bundle

CLIP_NAME = re.compile(r"^v_(?P<action>\w+?)_g(?P<group>\d+)_c(?P<clip>\d+)$")


class UCF101Options(PrepareOptions):
    split: Literal[1, 2, 3] = 1
    frames: FrameCount = 3  # [ours] RGB frames per clip
    flow_frames: FrameCount = 5  # [3P] TSN stacks 5 flow fields (10 channels)
    size: ImageSide = 224  # stored frames are resized (squashed) to size x size
    lists: str = "ucfTrainTestlist"
    videos: str = "UCF-101"
    flow: str = "tvl1_flow"
    flow_source: Literal["auto", "files", "compute"] = "auto"


class NoFlowFiles(MediaError):
    """A clip has no precomputed flow folder at all (as opposed to a damaged one)."""


def read_lines(path: Path) -> list[str]:
    if not path.is_file():
        raise DataError(f"{path} is missing; expected the official UCF101 split lists there")
    return [line.strip() for line in path.read_text().splitlines() if line.strip()]


def flow_files(root: Path, clip: str) -> tuple[list[Path], list[Path]]:
    for x, y in (("u", "v"), ("x", "y")):
        if (root / x / clip).is_dir():
            return sorted((root / x / clip).glob("*.jpg")), sorted((root / y / clip).glob("*.jpg"))
    if (root / clip).is_dir():
        return sorted((root / clip).glob("flow_x_*.jpg")), sorted((root / clip).glob("flow_y_*.jpg"))
    raise NoFlowFiles(f"no flow frames for {clip} under {root}: looked for u/{clip}/, x/{clip}/ and {clip}/flow_x_*.jpg")


def read_flow_stack(root: Path, clip: str, count: int, size: int) -> np.ndarray:
    """`count` consecutive flow fields from the clip's middle: (count, size, size, 2) uint8."""
    xs, ys = flow_files(root, clip)
    if len(xs) != len(ys):
        raise MediaError(f"flow of {clip} under {root}: {len(xs)} x frames but {len(ys)} y frames")
    if len(xs) < count:
        raise MediaError(f"flow of {clip} under {root}: {len(xs)} frames, need at least flow_frames={count}")
    start = (len(xs) - count) // 2
    pairs = zip(xs[start : start + count], ys[start : start + count])
    return np.stack([np.stack([read_image(x, size, "L"), read_image(y, size, "L")], axis=-1) for x, y in pairs])


@RECIPES.register("ucf101")
class UCF101Recipe(Recipe):
    name = "ucf101"
    Options = UCF101Options

    def scan(self, src: Path, options: UCF101Options) -> Scan:
        lists = src / options.lists
        class_names = [line.split()[1] for line in sorted(read_lines(lists / "classInd.txt"), key=lambda l: int(l.split()[0]))]
        label_of = {name: i for i, name in enumerate(class_names)}
        samples, skipped = [], []
        for split, file in (("train", f"trainlist0{options.split}.txt"), ("test", f"testlist0{options.split}.txt")):
            for line in read_lines(lists / file):
                relative = line.split()[0]
                clip = Path(relative).stem
                match = CLIP_NAME.match(clip)
                action = Path(relative).parent.name
                if match is None or action not in label_of:
                    skipped.append({"id": clip, "split": split, "why": f"{lists / file}: line {line!r} is not <Class>/v_<Class>_gGG_cCC.avi of a class in classInd.txt"})
                    continue
                sources = {"video": str(src / options.videos / relative), "flow": str(src / options.flow)}
                samples.append(Sample(clip, label_of[action], split, f"g{match['group']}", sources))
        return Scan(samples, class_names, skipped)

    def stored(self, options: UCF101Options) -> list[Stored]:
        return [Stored("rgb", (options.frames, options.size, options.size, 3), "uint8"),
                Stored("flow", (options.flow_frames, options.size, options.size, 2), "uint8")]

    def decode(self, sample: Sample, options: UCF101Options) -> tuple[dict[str, np.ndarray], str | None]:
        video = Path(sample.sources["video"])
        frames = decode_video(video)
        rgb = spread_frames(frames, options.frames, options.size)
        if options.flow_source != "compute":
            try:
                return {"rgb": rgb, "flow": read_flow_stack(Path(sample.sources["flow"]), sample.id, options.flow_frames, options.size)}, None
            except NoFlowFiles:
                if options.flow_source == "files":
                    raise
        note = "no precomputed flow" if options.flow_source == "auto" else "flow_source=compute"
        flow = video_flow(video, frames, options.flow_frames, options.size)
        return {"rgb": rgb, "flow": flow}, f"{note}: flow computed during prepare (pyramidal Horn-Schunck, not TV-L1)"


class RGBFlowData(Section):
    rgb: ImageAugment = Field(default_factory=ImageAugment)
    flow: ImageAugment = Field(default_factory=ImageAugment)


def rgb_flow_bundle(prepared: Prepared, options: RGBFlowData):
    """Modalities `rgb` (frames) and `flow` (stacked flow fields) of a folder storing both."""
    def transforms(train: bool) -> Transforms:
        return Transforms({"rgb": ("rgb", FrameTransform(options.rgb, train)), "flow": ("flow", FlowTransform(options.flow, train))})

    return prepared_bundle(prepared, transforms, {"rgb": "frames", "flow": "flow"}, {"rgb": {"name": "resnet18"}, "flow": {"name": "resnet18"}})


@DATASETS.register("ucf101", options=RGBFlowData)
def build_ucf101(config: DataConfig):
    return rgb_flow_bundle(open_prepared(config.path, "ucf101"), validate(RGBFlowData, config.options, "data.options of ucf101"))
