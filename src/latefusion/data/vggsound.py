"""VGG-Sound (Chen et al., 2020): about 200k 10-second YouTube clips, 309/310 classes; audio + visual.

Raw layout (`latefusion prepare vggsound --src RAW`):

  RAW/vggsound.csv              the public CSV, no header: YouTube id, start second, label, train|test
  RAW/video/<clip>.mp4          the downloaded clips, <clip> = `name_format` of (ytid, start), or instead
  RAW/audio/<clip>.wav          pre-extracted audio and
  RAW/frames/<clip>/*.jpg       pre-extracted frames (1 fps), as OGM-GE's preprocessing leaves them

Stored per clip: `audio` int16 (clip_seconds x rate,) mono, resampled to 16 kHz, tiled when shorter
(as OGM-GE does); `visual` uint8 (frames, size, size, 3), frames spread evenly over the clip (3
frames of a 10 s clip: one every ~3 s, from the 1 fps frames when pre-extracted). A clip without an
audio track is skipped and reported: audio is what VGG-Sound is labelled by.
Validation: whole YouTube ids of the train split (one video can give several clips).
"""

from __future__ import annotations

import csv
from pathlib import Path

import numpy as np
from pydantic import Field

from ..errors import DataError
from ..config import ClipSeconds, DataConfig, FrameCount, ImageSide, SampleRate, Section, validate
from .registry import DATASETS
from .augment import AudioAugment, AudioTransform, FrameTransform, ImageAugment, Transforms
from .media import MediaError, fit_length, read_audio, read_frame_folder, read_video_frames
from .prepared import RECIPES, Prepared, PrepareOptions, Recipe, Sample, Scan, Stored, open_prepared, prepared_bundle


class VGGSoundOptions(PrepareOptions):
    csv: str = "vggsound.csv"
    name_format: str = "{ytid}_{start:06d}"
    frames: FrameCount = 3  # [3P] OGM-GE: 3 frames
    size: ImageSide = 224  # [3P] OGM-GE trains at 224; stored frames are squashed to size x size
    rate: SampleRate = 16000  # [3P] OGM-GE: 16 kHz mono
    clip_seconds: ClipSeconds = 10.0


def audio_and_frames(video: Path, audio: Path, frames: Path, options) -> tuple[np.ndarray | None, np.ndarray]:
    """A clip's waveform (None: the clip has no audio track) and frames, from the mp4 if there is
    one, else from pre-extracted wav + JPEG frames."""
    if video.is_file():
        return read_audio(video, options.rate), read_video_frames(video, options.frames, options.size)
    if audio.is_file() or frames.is_dir():
        return read_audio(audio, options.rate), read_frame_folder(frames, options.frames, options.size)
    raise MediaError(f"missing file: neither {video} nor {audio} with {frames}/ exists")


@RECIPES.register("vggsound")
class VGGSoundRecipe(Recipe):
    name = "vggsound"
    Options = VGGSoundOptions

    def scan(self, src: Path, options: VGGSoundOptions) -> Scan:
        table = src / options.csv
        if not table.is_file():
            raise DataError(f"{table} is missing; expected VGG-Sound's public CSV (ytid, start, label, split) there")
        rows, skipped = [], []
        with table.open(newline="") as handle:
            for number, row in enumerate(csv.reader(handle), 1):
                try:
                    ytid, start, label, split = (field.strip() for field in row)
                    clip = options.name_format.format(ytid=ytid, start=int(start))
                    if split not in ("train", "test"):
                        raise ValueError(f"split {split!r} is not train or test")
                except ValueError as error:
                    skipped.append({"id": f"{table.name}:{number}", "split": "?", "why": f"{table}, line {number} {row}: {error}; expected ytid,start,label,train|test"})
                    continue
                rows.append((clip, ytid, label, split))
        class_names = sorted({label for _, _, label, _ in rows})
        label_of = {name: i for i, name in enumerate(class_names)}
        samples = [Sample(clip, label_of[label], split, ytid, {
            "video": str(src / "video" / f"{clip}.mp4"), "audio": str(src / "audio" / f"{clip}.wav"), "frames": str(src / "frames" / clip),
        }) for clip, ytid, label, split in rows]
        return Scan(samples, class_names, skipped)

    def stored(self, options: VGGSoundOptions) -> list[Stored]:
        return [Stored("audio", (round(options.clip_seconds * options.rate),), "int16"),
                Stored("visual", (options.frames, options.size, options.size, 3), "uint8")]

    def decode(self, sample: Sample, options: VGGSoundOptions) -> tuple[dict[str, np.ndarray], None]:
        wave, frames = audio_and_frames(*(Path(sample.sources[k]) for k in ("video", "audio", "frames")), options)
        if wave is None:
            raise MediaError(f"{sample.sources['video']}: no audio track")
        return {"audio": fit_length(wave, round(options.clip_seconds * options.rate)), "visual": frames}, None


class AudioVisualData(Section):
    audio: AudioAugment = Field(default_factory=AudioAugment)  # [3P] OGM-GE: random 5 s, STFT n_fft 256, hop 128
    visual: ImageAugment = Field(default_factory=ImageAugment)  # [3P] OGM-GE: RandomResizedCrop(224) + flip


def audio_visual_bundle(prepared: Prepared, options: AudioVisualData):
    def transforms(train: bool) -> Transforms:
        return Transforms({
            "audio": ("audio", AudioTransform(options.audio, prepared.options["rate"], train)),
            "visual": ("visual", FrameTransform(options.visual, train)),
        })

    return prepared_bundle(prepared, transforms, {"audio": "audio", "visual": "frames"}, {"audio": {"name": "resnet18"}, "visual": {"name": "resnet18"}})


@DATASETS.register("vggsound", options=AudioVisualData)
def build_vggsound(config: DataConfig):
    return audio_visual_bundle(open_prepared(config.path, "vggsound"), validate(AudioVisualData, config.options, "data.options of vggsound"))
