"""AVE, the Audio-Visual Event data set (Tian et al., ECCV 2018): 4,143 10-second YouTube videos of
28 event categories, each with an event both heard and seen; audio + visual. Benchmarked as a
classification task by OGM-GE (Peng et al., CVPR 2022) and its successors.

Raw layout (`latefusion prepare ave --src RAW`), the release as distributed (AVE_Dataset.zip):

  RAW/AVE/<VideoID>.mp4       the videos
  RAW/Annotations.txt         Category&VideoID&Quality&StartTime&EndTime, one line per video (header line)
  RAW/trainSet.txt            the official splits, lines in the same format (a header line is allowed)
  RAW/valSet.txt
  RAW/testSet.txt

Classes: the 28 categories of Annotations.txt, sorted (of the split files when there is no
Annotations.txt). Each video is one sample labelled by its category, the whole 10 s video as OGM-GE
classifies it [3P]: the event's StartTime/EndTime are not used. A video listed twice with the same
category is one sample [ours]; one listed under two categories, or in two split files, is skipped and
reported (OGM-GE's loader drops every video listed twice, same category or not [3P]).

Stored per video: `audio` int16 (clip_seconds x rate,), 16 kHz mono as OGM-GE's
`pre-processing/AVE&CREMAD/preprocess_audio.py` extracts it [3P], 10 s (tiled when shorter, cut when
longer); `visual` uint8 (frames, size, size, 3), 3 frames spread evenly over the video: OGM-GE's AVE
loader takes 3 of the 10 frames extracted at 1 fps, evenly spaced [3P]; 224 px [3P]. A video without
an audio track is skipped and reported. OGM-GE's AVE spectrogram (scipy, 512-sample windows, hop
159: 257 x 1004 on 10 s) is matched in size by the training input stage in configs/ave/base.yaml
(n_fft 512, hop 159, log magnitude), not in its scaling (scipy's power spectral density,
standardised per clip) [ours].
Splits: the official train, validation and test sets (`val_fraction` 0: nothing is carved).
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
from pydantic import Field

from ..config import ClipSeconds, DataConfig, FrameCount, ImageSide, SampleRate, validate
from ..errors import DataError
from .media import MediaError, fit_length, read_audio, read_video_frames
from .prepared import RECIPES, PrepareOptions, Recipe, Sample, Scan, Stored, open_prepared
from .registry import DATASETS
from .vggsound import AudioVisualData, audio_visual_bundle

SPLIT_FILES = {"train": "trainSet.txt", "val": "valSet.txt", "test": "testSet.txt"}
HEADER = "Category&VideoID&Quality&StartTime&EndTime"


class AVEOptions(PrepareOptions):
    val_fraction: float = Field(0.0, ge=0, lt=1)  # AVE has an official validation set
    frames: FrameCount = 3  # [3P] OGM-GE: 3 frames per video
    size: ImageSide = 224  # [3P] OGM-GE: 224
    rate: SampleRate = 16000  # [3P] OGM-GE: 16 kHz mono
    clip_seconds: ClipSeconds = 10.0  # AVE's videos last 10 s
    videos: str = "AVE"


def read_lines(path: Path) -> tuple[list[tuple[int, str, str]], list[dict[str, str]]]:
    """(line number, category, video id) of an AVE list file, and the lines that could not be read."""
    rows, skipped = [], []
    for number, line in enumerate(path.read_text(encoding="utf-8-sig").splitlines(), 1):
        line = line.strip()
        if not line or line.replace(" ", "") == HEADER:
            continue
        fields = line.split("&")
        if len(fields) != 5 or not fields[0].strip() or not fields[1].strip():
            skipped.append({"id": f"{path.name}:{number}", "split": "?", "why": f"{path}, line {number} {line!r}: expected {HEADER}"})
            continue
        rows.append((number, fields[0].strip(), fields[1].strip()))
    return rows, skipped


@RECIPES.register("ave")
class AVERecipe(Recipe):
    name = "ave"
    Options = AVEOptions

    def scan(self, src: Path, options: AVEOptions) -> Scan:
        skipped: list[dict[str, str]] = []
        listed: dict[str, list[tuple[str, str]]] = {}  # video -> [(split, category)]
        for split, file in SPLIT_FILES.items():
            path = src / file
            if not path.is_file():
                raise DataError(f"{path} is missing; expected AVE's {', '.join(SPLIT_FILES.values())} in {src}")
            rows, bad = read_lines(path)
            skipped += [{**item, "split": split} for item in bad]
            for _, category, video in rows:
                if (split, category) not in listed.setdefault(video, []):
                    listed[video].append((split, category))
        annotations = src / "Annotations.txt"
        categories = {category for entries in listed.values() for _, category in entries}
        if annotations.is_file():
            rows, _ = read_lines(annotations)
            categories |= {category for _, category, _ in rows}
        class_names = sorted(categories)
        samples = []
        for video, entries in sorted(listed.items()):
            if len(entries) > 1:
                said = ", ".join(f"{category} in {SPLIT_FILES[split]}" for split, category in entries)
                skipped.append({"id": video, "split": entries[0][0], "why": f"{video} is listed more than once ({said}); left out, as OGM-GE does"})
                continue
            split, category = entries[0]
            samples.append(Sample(video, class_names.index(category), split, video, {"video": str(src / options.videos / f"{video}.mp4")}))
        return Scan(samples, class_names, skipped)

    def stored(self, options: AVEOptions) -> list[Stored]:
        return [Stored("audio", (round(options.clip_seconds * options.rate),), "int16"),
                Stored("visual", (options.frames, options.size, options.size, 3), "uint8")]

    def decode(self, sample: Sample, options: AVEOptions) -> tuple[dict[str, np.ndarray], None]:
        video = Path(sample.sources["video"])
        visual = read_video_frames(video, options.frames, options.size)
        wave = read_audio(video, options.rate)
        if wave is None:
            raise MediaError(f"{video}: no audio track")
        return {"audio": fit_length(wave, round(options.clip_seconds * options.rate)), "visual": visual}, None


@DATASETS.register("ave", options=AudioVisualData)
def build_ave(config: DataConfig):
    return audio_visual_bundle(open_prepared(config.path, "ave"), validate(AudioVisualData, config.options, "data.options of ave"))
