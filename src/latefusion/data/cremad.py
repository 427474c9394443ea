"""CREMA-D (Cao et al., 2014): 7,442 clips of 91 actors speaking 12 sentences in 6 emotions; audio +
visual (the speaker's face). The field's benchmark of modality imbalance since OGM-GE (Peng et al.,
CVPR 2022; repository `GeWu-Lab/OGM-GE_CVPR2022`).

Raw layout (`latefusion prepare crema-d --src RAW`), the official release as distributed:

  RAW/AudioWAV/<actor>_<sentence>_<emotion>_<level>.wav     e.g. 1001_DFA_ANG_XX.wav (16 kHz mono)
  RAW/VideoFlash/<same name>.flv                             the videos as released (FLV); an .mp4 of
                                                             the same name is read instead where there is no .flv

Classes: the 6 emotions ANG, DIS, FEA, HAP, NEU, SAD (alphabetical; OGM-GE numbers them NEU, HAP, SAD,
FEA, DIS, ANG: the order changes nothing but the class indices). The clip name's emotion is the label.

Stored per clip, each choice with its source:
  `audio` int16 (clip_seconds x rate,): the AudioWAV file resampled to 22.05 kHz and tiled to 3 s
      (cut when longer): OGM-GE's `dataset/CramedDataset.py` loads with librosa at sr=22050 and takes
      `np.tile(samples, 3)[:22050 * 3]` [3P]. Its spectrogram (librosa.stft, n_fft 512, hop 353,
      log(|S| + 1e-7): 257 x 188) is the training input stage, set in configs/crema-d/base.yaml
      (audio: seconds 3, n_fft 512, hop 353) [3P]; torch.stft centres frames by reflect padding, as
      the librosa of OGM-GE's time did (librosa 0.10 pads with zeros).
  `visual` uint8 (frames, size, size, 3): frames at 1 fps, frame i at (i + 0.5) s of the video, as
      OGM-GE's `pre-processing/AVE&CREMAD/video2frame-1fps.py` extracts them [3P]; a clip shorter than
      i + 0.5 s wraps around to its start [ours] (CREMA-D clips last a few seconds: 1-3 frames are
      distinct). `frames` 1 by default: OGM-GE's CREMA-D training reads `--fps 1` frame per clip
      [3P]; BalanceBenchmark's CREMA-D loader reads 2 [3P]. Squashed to size x size (224 [3P]); the
      crop (RandomResizedCrop(224) + flip for training, resize for evaluation) is the training transform.

Splits:
  actor-disjoint (default). A seeded shuffle of the 91 actors (`seed`) puts `test_fraction`
      of them in test; validation is `val_fraction` of the remaining train clips, by whole actors
      (carve.py); no actor is in two splits. The actors of each split are listed under "groups" in
      the prepared folder's report.json. [ours]: CREMA-D has no official split.
  OGM-GE's split with `split_lists=DIR`, from its list files (DIR, or RAW/DIR, holding its `train.csv` and
      `test.csv`, lines `<clip>,<EMOTION>`, from `data/CREMAD/` of its repository). Those lists split
      clips at random, so most actors are in train and test alike: a model can lean on the speaker's
      face and voice. Prepare prints a warning saying how many actors overlap. Validation is carved
      from its train list by whole actors, as above. Clips in neither list are skipped and reported.
"""

from __future__ import annotations

import bisect
import csv
import random
import re
from pathlib import Path

import numpy as np
from pydantic import Field

from ..config import ClipSeconds, DataConfig, FrameCount, ImageSide, SampleRate, validate
from ..errors import DataError
from .media import MediaError, decode_video, fit_length, read_audio
from .prepared import RECIPES, PrepareOptions, Recipe, Sample, Scan, Stored, open_prepared
from .registry import DATASETS
from .vggsound import AudioVisualData, audio_visual_bundle

EMOTIONS = ["ANG", "DIS", "FEA", "HAP", "NEU", "SAD"]
CLIP_NAME = re.compile(r"^(?P<actor>\d{4})_(?P<sentence>[A-Z]{3})_(?P<emotion>[A-Z]{3})_(?P<level>[A-Z]{2})$")


class CremaDOptions(PrepareOptions):
    split_lists: str | None = None  # a folder with OGM-GE's train.csv and test.csv: its split instead of the actor-disjoint one
    test_fraction: float = Field(0.2, gt=0, lt=1)  # [ours] share of the actors held out as test (split=actors)
    frames: FrameCount = 1  # [3P] OGM-GE: --fps 1 frame per clip (BalanceBenchmark: 2)
    size: ImageSide = 224  # [3P] OGM-GE: 224
    rate: SampleRate = 22050  # [3P] OGM-GE: librosa.load(sr=22050)
    clip_seconds: ClipSeconds = 3.0  # [3P] OGM-GE: tiled to 3 s
    audio: str = "AudioWAV"
    video: str = "VideoFlash"


def clip_table(src: Path, options: CremaDOptions) -> tuple[dict[str, dict[str, str]], list[dict[str, str]]]:
    """Every clip name found in the audio and video folders -> its files by role; names that are not
    CREMA-D clip names are returned as skipped."""
    audio, video = src / options.audio, src / options.video
    if not audio.is_dir():
        raise DataError(f"{audio} is missing; expected CREMA-D's AudioWAV/ folder of <actor>_<sentence>_<emotion>_<level>.wav files")
    if not video.is_dir():
        raise DataError(f"{video} is missing; expected CREMA-D's VideoFlash/ folder of .flv (or .mp4) videos")
    names = {p.stem for p in audio.glob("*.wav")} | {p.stem for p in video.iterdir() if p.suffix in (".flv", ".mp4")}
    clips, skipped = {}, []
    for name in sorted(names):
        match = CLIP_NAME.match(name)
        if not match or match["emotion"] not in EMOTIONS:
            skipped.append({"id": name, "split": "?", "why": f"{name}: not a CREMA-D clip name <actor>_<sentence>_<emotion>_<level> "
                                                             f"with an emotion of {', '.join(EMOTIONS)}"})
            continue
        flv = video / f"{name}.flv"
        clips[name] = {"audio": str(audio / f"{name}.wav"), "video": str(flv if flv.exists() or not (video / f"{name}.mp4").exists() else video / f"{name}.mp4")}
    return clips, skipped


def actor_of(clip: str) -> str:
    return clip.split("_", 1)[0]


def actor_split(clips: list[str], test_fraction: float, seed: int) -> dict[str, str]:
    """clip -> train or test, whole actors in test: a seeded shuffle of the actors, the first
    round(test_fraction x actors) of them (at least one) in test."""
    actors = sorted({actor_of(c) for c in clips})
    random.Random(seed).shuffle(actors)
    test = set(actors[: max(1, round(test_fraction * len(actors)))])
    return {c: "test" if actor_of(c) in test else "train" for c in clips}


def read_split_lists(folder: Path) -> dict[str, tuple[str, str]]:
    """OGM-GE's train.csv and test.csv: clip -> (split, emotion)."""
    listed = {}
    for split in ("train", "test"):
        path = folder / f"{split}.csv"
        if not path.is_file():
            raise DataError(f"{path} is missing; split_lists must be a folder holding OGM-GE's CREMA-D train.csv and test.csv (lines <clip>,<EMOTION>)")
        with path.open(encoding="utf-8-sig", newline="") as handle:
            for number, row in enumerate(csv.reader(handle), 1):
                if not row or not row[0].strip():
                    continue
                if len(row) < 2:
                    raise DataError(f"{path}, line {number} {row}: expected <clip>,<EMOTION>")
                listed[row[0].strip()] = (split, row[1].strip())
    return listed


@RECIPES.register("crema-d")
class CremaDRecipe(Recipe):
    name = "crema-d"
    Options = CremaDOptions
    record_groups = True

    def scan(self, src: Path, options: CremaDOptions) -> Scan:
        clips, skipped = clip_table(src, options)
        warnings = []
        if options.split_lists is not None:
            folder = Path(options.split_lists)
            folder = folder if folder.is_dir() or folder.is_absolute() else src / folder
            listed = read_split_lists(folder)
            splits = {}
            for clip in clips:
                if clip not in listed:
                    skipped.append({"id": clip, "split": "?", "why": f"{clip} is in neither train.csv nor test.csv of {folder}"})
                elif listed[clip][1] != CLIP_NAME.match(clip)["emotion"]:
                    skipped.append({"id": clip, "split": listed[clip][0], "why": f"{clip}: the list says {listed[clip][1]}, the clip name another emotion"})
                else:
                    splits[clip] = listed[clip][0]
            for clip in sorted(set(listed) - set(clips)):
                skipped.append({"id": clip, "split": listed[clip][0], "why": f"{clip} is listed in {folder} but has no file in {options.audio}/ or {options.video}/"})
            both = {actor_of(c) for c, s in splits.items() if s == "train"} & {actor_of(c) for c, s in splits.items() if s == "test"}
            if both:
                warnings.append(f"the split lists of {folder} put clips of {len(both)} actors in both train and test "
                                f"(OGM-GE's split is by clip, not by actor): test accuracy can rest on recognising the speaker. "
                                f"The default split (without split_lists) keeps actors apart.")
        else:
            splits = actor_split(sorted(clips), options.test_fraction, options.seed)
        samples = [Sample(clip, EMOTIONS.index(CLIP_NAME.match(clip)["emotion"]), split, actor_of(clip), clips[clip])
                   for clip, split in sorted(splits.items())]
        return Scan(samples, EMOTIONS, skipped, warnings)

    def stored(self, options: CremaDOptions) -> list[Stored]:
        return [Stored("audio", (round(options.clip_seconds * options.rate),), "int16"),
                Stored("visual", (options.frames, options.size, options.size, 3), "uint8")]

    def decode(self, sample: Sample, options: CremaDOptions) -> tuple[dict[str, np.ndarray], None]:
        wave = read_audio(Path(sample.sources["audio"]), options.rate)
        if wave is None:
            raise MediaError(f"{sample.sources['audio']}: no audio stream")
        frames = frames_per_second(decode_video(Path(sample.sources["video"])), options.frames, options.size)
        return {"audio": fit_length(wave, round(options.clip_seconds * options.rate)), "visual": frames}, None


def frames_per_second(frames: list, count: int, size: int) -> np.ndarray:
    """Frames at (i + 0.5) s for i < count, as a 1 fps extraction takes them; a time past the video's
    end wraps around to its start. (count, size, size, 3) uint8."""
    times = [frame.time for frame in frames]
    if any(t is None for t in times):  # no timestamps: assume evenly spaced frames over 1 s per 25
        times = [i / 25 for i in range(len(frames))]
    start, duration = times[0], times[-1] - times[0] + (times[-1] - times[0]) / max(1, len(times) - 1)
    picks = []
    for i in range(count):
        t = start + ((i + 0.5) % duration if duration > 0 else 0)
        picks.append(min(len(frames) - 1, bisect.bisect_right(times, t + 1e-6) - 1))  # the frame showing at t
    return np.stack([frames[k].to_ndarray(width=size, height=size, format="rgb24") for k in picks])


@DATASETS.register("crema-d", options=AudioVisualData)
def build_cremad(config: DataConfig):
    return audio_visual_bundle(open_prepared(config.path, "crema-d"), validate(AudioVisualData, config.options, "data.options of crema-d"))
