"""Kinetics-400 (Kay et al., 2017): ~300k 10-second YouTube clips of 400 actions; visual + audio, the
pairing G-Blending used, or RGB + optical flow (`modalities`; the UMT paper's pairing for Kinetics is
not known [NF]).

Raw layout (`latefusion prepare kinetics400 --src RAW`):

  RAW/annotations/train.csv        the public annotations, with a header:
  RAW/annotations/validate.csv     label,youtube_id,time_start,time_end,split[,is_cc]  (or val.csv)
  RAW/**/<ytid>_<start:06d>_<end:06d>.mp4   the clips, in any folders (per split, per class or flat)

The official validation set is the test split here (as in the literature: the test labels came
late); validation is carved from train by whole YouTube ids.

Clips without an audio track are common in Kinetics. Rule (`missing_audio`): `silence` (default)
stores a silent waveform, keeps the clip, and lists it under "filled" in the report, so the test
set stays the full official one; `skip` leaves such clips out and lists them under "skipped".

Stored per clip, `modalities=audio_visual` (default): `audio` int16 (clip_seconds x rate,), `visual`
uint8 (frames, size, size, 3), as for VGG-Sound (see vggsound.py). `modalities=rgb_flow`: `rgb` uint8
(frames, size, size, 3) and `flow` uint8 (flow_frames, size, size, 2), stored as UCF101's (see
ucf101.py); no flow release is assumed, so flow is always computed from the clip (flow.py: pyramidal
Horn-Schunck on frames scaled to a 256-pixel shorter side, not TV-L1) and the audio rule does not apply.
"""

from __future__ import annotations

import csv
from pathlib import Path
from typing import Literal

import numpy as np

from ..errors import DataError
from ..config import ClipSeconds, DataConfig, FrameCount, ImageSide, SampleRate, validate
from .registry import DATASETS
from .flow import video_flow
from .media import MediaError, decode_video, fit_length, read_audio, read_video_frames, spread_frames
from .prepared import RECIPES, PrepareOptions, Recipe, Sample, Scan, Stored, open_prepared
from .ucf101 import RGBFlowData, rgb_flow_bundle
from .vggsound import AudioVisualData, audio_visual_bundle

COLUMNS = ("label", "youtube_id", "time_start", "time_end")


class KineticsOptions(PrepareOptions):
    annotations: str = "annotations"
    frames: FrameCount = 3  # [ours] as VGG-Sound; G-Blending's 3D networks take 8-32 frames
    size: ImageSide = 224
    rate: SampleRate = 16000
    clip_seconds: ClipSeconds = 10.0
    missing_audio: Literal["silence", "skip"] = "silence"
    modalities: Literal["audio_visual", "rgb_flow"] = "audio_visual"
    flow_frames: FrameCount = 5  # [3P] as UCF101: TSN stacks 5 flow fields


def read_annotations(path: Path, split: str, clips: dict[str, Path]) -> tuple[list[tuple], list[dict]]:
    rows, skipped = [], []
    with path.open(newline="") as handle:
        reader = csv.DictReader(handle)
        missing = [c for c in COLUMNS if c not in (reader.fieldnames or [])]
        if missing:
            raise DataError(f"{path}: header {reader.fieldnames} lacks columns {missing}; expected {','.join(COLUMNS)},...")
        for number, row in enumerate(reader, 2):
            try:
                clip = f"{row['youtube_id']}_{int(float(row['time_start'])):06d}_{int(float(row['time_end'])):06d}"
            except (TypeError, ValueError) as error:
                skipped.append({"id": f"{path.name}:{number}", "split": split, "why": f"{path}, line {number}: {error}"})
                continue
            rows.append((clip, row["youtube_id"], row["label"], split, clips.get(clip)))
    return rows, skipped


@RECIPES.register("kinetics400")
class KineticsRecipe(Recipe):
    name = "kinetics400"
    Options = KineticsOptions

    def scan(self, src: Path, options: KineticsOptions) -> Scan:
        folder = src / options.annotations
        tables = {"train": folder / "train.csv", "test": next((p for p in (folder / "validate.csv", folder / "val.csv") if p.is_file()), folder / "validate.csv")}
        for path in tables.values():
            if not path.is_file():
                raise DataError(f"{path} is missing; expected the public Kinetics-400 annotation CSVs in {folder}")
        clips = {path.stem: path for path in src.rglob("*.mp4")}
        rows, skipped = [], []
        for split, path in tables.items():
            more_rows, more_skipped = read_annotations(path, split, clips)
            rows += more_rows
            skipped += more_skipped
        class_names = sorted({label for _, _, label, _, _ in rows})
        label_of = {name: i for i, name in enumerate(class_names)}
        samples = [Sample(clip, label_of[label], split, ytid, {"video": str(path or src / f"{clip}.mp4")}) for clip, ytid, label, split, path in rows]
        return Scan(samples, class_names, skipped)

    def stored(self, options: KineticsOptions) -> list[Stored]:
        if options.modalities == "rgb_flow":
            return [Stored("rgb", (options.frames, options.size, options.size, 3), "uint8"),
                    Stored("flow", (options.flow_frames, options.size, options.size, 2), "uint8")]
        return [Stored("audio", (round(options.clip_seconds * options.rate),), "int16"),
                Stored("visual", (options.frames, options.size, options.size, 3), "uint8")]

    def decode(self, sample: Sample, options: KineticsOptions) -> tuple[dict[str, np.ndarray], str | None]:
        video = Path(sample.sources["video"])
        if options.modalities == "rgb_flow":
            frames = decode_video(video)
            return {"rgb": spread_frames(frames, options.frames, options.size),
                    "flow": video_flow(video, frames, options.flow_frames, options.size)}, None
        length = round(options.clip_seconds * options.rate)
        visual = read_video_frames(video, options.frames, options.size)
        wave = read_audio(video, options.rate)
        if wave is not None:
            return {"audio": fit_length(wave, length), "visual": visual}, None
        if options.missing_audio == "skip":
            raise MediaError(f"{video}: no audio track (missing_audio=skip)")
        return {"audio": np.zeros(length, np.int16), "visual": visual}, "no audio track: stored as silence (missing_audio=silence)"


@DATASETS.register("kinetics400")
def build_kinetics(config: DataConfig):
    """The modalities are those the folder was prepared with: data.options are validated against them."""
    prepared = open_prepared(config.path, "kinetics400")
    modalities = prepared.options.get("modalities", "audio_visual")
    context = f"data.options of kinetics400 prepared with modalities={modalities} ({prepared.root / 'prepare.json'})"
    if modalities == "rgb_flow":
        return rgb_flow_bundle(prepared, validate(RGBFlowData, config.options, context))
    return audio_visual_bundle(prepared, validate(AudioVisualData, config.options, context))
