"""Kinetics-Sounds (Arandjelovic & Zisserman, ICCV 2017): the Kinetics classes that can be heard
(instruments, voices, tools); audio + visual. Benchmarked by OGM-GE and BalanceBenchmark.

Raw layout (`latefusion prepare kinetics-sounds --src RAW`): a Kinetics-400 folder as
`latefusion prepare kinetics400` reads it (kinetics.py): `RAW/annotations/{train,validate}.csv` and
the clips `<ytid>_<start:06d>_<end:06d>.mp4` anywhere under RAW. Only the clips of the chosen
classes are read.

Classes (`classes`): the 31-class list shipped as `data/assets/kinetics_sounds_31.txt` by default
(its header names its source: the 31 classes the AdaMML authors list; OGM-GE's own 31-class lists
give label numbers only). Papers use 31-, 32-, 33- and 34-class variants; `--set classes=FILE` reads
another list, one Kinetics-400 class name a line (`#` comments; underscores and case do not matter).
A name that is no class of the annotations is an error, never silently dropped. Class indices
follow the list's order.

Stored per clip: as Kinetics-400's audio + visual (`audio` int16 16 kHz x 10 s, tiled when shorter;
`visual` 3 frames spread over the clip, 224 px), OGM-GE's VGG-Sound/Kinetics-Sounds preprocessing [3P].
A clip without an audio track is skipped and reported by default (`missing_audio=skip`): the
classes were chosen for their sound, and OGM-GE's loaders keep only clips with audio [3P];
`missing_audio=silence` keeps them with a silent waveform, listed under "filled".
Splits: Kinetics-400's official validation set is the test split; validation is carved from train
by whole YouTube ids (as for Kinetics-400).
"""

from __future__ import annotations

import difflib
from importlib import resources
from pathlib import Path
from typing import Literal

from ..config import DataConfig, validate
from ..errors import DataError
from .kinetics import KineticsOptions, KineticsRecipe
from .prepared import RECIPES, Scan, open_prepared
from .registry import DATASETS
from .vggsound import AudioVisualData, audio_visual_bundle

PACKAGED = "kinetics_sounds_31.txt"


class KineticsSoundsOptions(KineticsOptions):
    classes: str | None = None  # a class list file (FILE, or RAW/FILE); None: the packaged 31-class list
    missing_audio: Literal["silence", "skip"] = "skip"  # [3P] OGM-GE keeps clips with audio only
    modalities: Literal["audio_visual"] = "audio_visual"


def normalise(name: str) -> str:
    return " ".join(name.replace("_", " ").lower().split())


def parse_class_list(text: str, where: str) -> list[str]:
    names = [line.split("#", 1)[0].strip() for line in text.splitlines()]
    names = [name for name in names if name]
    if not names:
        raise DataError(f"{where} lists no class (one Kinetics-400 class name a line)")
    seen, repeated = set(), []
    for name in names:
        if normalise(name) in seen:
            repeated.append(name)
        seen.add(normalise(name))
    if repeated:
        raise DataError(f"{where} lists {repeated} more than once")
    return names


def read_class_list(src: Path, classes: str | None) -> tuple[list[str], str]:
    """The class names and where they were read."""
    if classes is None:
        text = resources.files("latefusion.data.assets").joinpath(PACKAGED).read_text(encoding="utf-8")
        return parse_class_list(text, PACKAGED), f"the packaged {PACKAGED}"
    path = Path(classes)
    if not path.is_file() and not path.is_absolute() and (src / path).is_file():
        path = src / path
    if not path.is_file():
        raise DataError(f"classes={classes}: no such file (looked in the working folder and in {src})")
    return parse_class_list(path.read_text(encoding="utf-8"), str(path)), str(path)


@RECIPES.register("kinetics-sounds")
class KineticsSoundsRecipe(KineticsRecipe):
    name = "kinetics-sounds"
    Options = KineticsSoundsOptions

    def scan(self, src: Path, options: KineticsSoundsOptions) -> Scan:
        wanted, where = read_class_list(src, options.classes)
        kinetics = super().scan(src, options)
        known = {normalise(name): k for k, name in enumerate(kinetics.class_names)}
        unknown = [name for name in wanted if normalise(name) not in known]
        if unknown:
            hints = {name: difflib.get_close_matches(normalise(name), list(known), n=1) for name in unknown}
            said = "; ".join(f"{name!r}" + (f" (did you mean {hint[0]!r}?)" if hint else "") for name, hint in hints.items())
            raise DataError(f"{where} names classes that the Kinetics-400 annotations in {src / options.annotations} do not have: {said}")
        label_of = {known[normalise(name)]: k for k, name in enumerate(wanted)}
        samples = [s for s in kinetics.samples if s.label in label_of]
        for sample in samples:
            sample.label = label_of[sample.label]
        return Scan(samples, [kinetics.class_names[known[normalise(name)]] for name in wanted], kinetics.skipped)


@DATASETS.register("kinetics-sounds", options=AudioVisualData)
def build_kinetics_sounds(config: DataConfig):
    return audio_visual_bundle(open_prepared(config.path, "kinetics-sounds"),
                               validate(AudioVisualData, config.options, "data.options of kinetics-sounds"))
