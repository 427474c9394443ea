"""From stored arrays to compact batches, in the data loader: augmentation (on for the train split
only) and cutting, with no float work. What the model takes is computed from these batches on its
device, by the input stage each transform names (models/input_stage.py).

* frames, views: random resized crop + horizontal flip for training (one crop per clip, shared by its
  frames); the whole frame resized for evaluation. uint8 out; stage `imagenet` (ImageNet mean/std).
* flow: the same crop and flip, with the x component negated on a flip (a mirrored motion moves the
  other way): v -> 256 - v about the 128 that JPEG flow frames use for zero motion. int16 out, since
  256 - 0 does not fit in uint8; stage `flow` centres on 128 and scales by 1/128.
* audio: a random window of `seconds` for training, the middle window for evaluation. int16 out;
  stage `log-spectrogram`: STFT magnitude, log(|S| + 1e-7), OGM-GE's VGG-Sound recipe (n_fft 256,
  hop 128) by default.

Crops and resizes stay in uint8 (torch's fast antialiased path). A VGG-Sound sample crosses from a
worker to the training process as 0.45 MB of uint8 frames + 0.16 MB of int16 audio instead of
2.1 MB of float32; see bench/README.md for what this buys.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from pydantic import Field
from torch import Tensor

from ..errors import DataError
from ..config import MAX_WINDOW, ClipSeconds, ImageSide, Section, Window
from .base import Inputs


class ImageAugment(Section):
    crop: ImageSide = 224  # output side in pixels
    scale_min: float = Field(0.08, gt=0, le=1)  # a training crop covers [scale_min, 1] of the frame's area
    flip: bool = True


class AudioAugment(Section):
    seconds: ClipSeconds = 5.0
    n_fft: int = Field(256, ge=8, le=MAX_WINDOW)
    hop: Window = 128


def random_boxes(n: int, height: int, width: int, options: ImageAugment) -> list[tuple[int, int, int, int]]:
    """(top, left, height, width) of random crops covering [scale_min, 1] of the area, aspect in [3/4, 4/3]."""
    area = torch.empty(n).uniform_(options.scale_min, 1.0)
    ratio = torch.empty(n).uniform_(math.log(3 / 4), math.log(4 / 3)).exp()
    widths = ((area * ratio).sqrt() * width).round().clamp(1, width).long()
    heights = ((area / ratio).sqrt() * height).round().clamp(1, height).long()
    tops = (torch.rand(n) * (height - heights + 1)).long()
    lefts = (torch.rand(n) * (width - widths + 1)).long()
    return list(zip(tops.tolist(), lefts.tolist(), heights.tolist(), widths.tolist()))


def crop_clips(x: Tensor, options: ImageAugment, train: bool) -> tuple[Tensor, Tensor]:
    """uint8 (B, T, H, W, C) -> uint8 (B, T, C, crop, crop), and which clips were flipped. The frames
    of a clip share one crop. Resizing stays in uint8 on a channels_last view (torch's fast path,
    antialiased); converting to float is left to the model's input stage."""
    b, t, h, w, c = x.shape
    size = (options.crop, options.crop)
    frames = x.permute(0, 1, 4, 2, 3)  # (B, T, C, H, W) as a channels_last view: no copy
    if not train:
        if (h, w) == size:
            return frames.contiguous(), torch.zeros(b, dtype=torch.bool)
        out = F.interpolate(frames.flatten(0, 1), size=size, mode="bilinear", antialias=True, align_corners=False)
        return out.reshape(b, t, c, *size), torch.zeros(b, dtype=torch.bool)
    out = torch.stack([
        F.interpolate(clip[:, :, top : top + height, left : left + width], size=size, mode="bilinear", antialias=True, align_corners=False)
        for clip, (top, left, height, width) in zip(frames, random_boxes(b, h, w, options))
    ])
    flips = torch.rand(b) < 0.5 if options.flip else torch.zeros(b, dtype=torch.bool)
    out[flips] = out[flips].flip(-1)
    return out, flips


class FrameTransform:
    """Frames (B, T, H, W, 3) -> uint8 (B, T, 3, crop, crop); a single image (B, H, W, 3) -> (B, 3, crop, crop)."""

    stage = {"name": "imagenet"}

    def __init__(self, options: ImageAugment, train: bool) -> None:
        self.options, self.train = options, train

    def __repr__(self) -> str:  # the settings, for data fingerprints (data/base.py)
        return f"{type(self).__name__}({sorted(vars(self).items())})"

    def __call__(self, x: Tensor) -> Tensor:
        single = x.dim() == 4
        out, _ = crop_clips(x.unsqueeze(1) if single else x, self.options, self.train)
        return out[:, 0] if single else out

    def shape(self, stored: tuple[int, ...]) -> tuple[int, ...]:
        side = (3, self.options.crop, self.options.crop)
        return side if len(stored) == 3 else (stored[0], *side)


class FlowTransform:
    """Stacked flow (B, L, H, W, 2) -> int16 (B, 2L, crop, crop): channels x1, y1, x2, y2, ..., centred on 128."""

    stage = {"name": "flow"}

    def __init__(self, options: ImageAugment, train: bool) -> None:
        self.options, self.train = options, train

    def __repr__(self) -> str:  # the settings, for data fingerprints (data/base.py)
        return f"{type(self).__name__}({sorted(vars(self).items())})"

    def __call__(self, x: Tensor) -> Tensor:
        out, flips = crop_clips(x, self.options, self.train)
        out = out.to(torch.int16)
        out[flips, :, 0] = 256 - out[flips, :, 0]
        return out.flatten(1, 2)

    def shape(self, stored: tuple[int, ...]) -> tuple[int, ...]:
        return (2 * stored[0], self.options.crop, self.options.crop)


class AudioTransform:
    """Waveform int16 (B, samples) -> int16 window (B, seconds x rate); the input stage makes it a
    log-magnitude spectrogram (B, 1, n_fft // 2 + 1, frames)."""

    def __init__(self, options: AudioAugment, rate: int, train: bool) -> None:
        self.options, self.train = options, train
        self.window = round(options.seconds * rate)
        self.stage = {"name": "log-spectrogram", "n_fft": options.n_fft, "hop": options.hop}

    def __repr__(self) -> str:  # the settings, for data fingerprints (data/base.py)
        return f"{type(self).__name__}({sorted(vars(self).items())})"

    def __call__(self, x: Tensor) -> Tensor:
        b, length = x.shape
        if self.window > length:
            raise DataError(f"audio window of {self.options.seconds} s is {self.window} samples, but the prepared clips hold {length}")
        if self.train:
            starts = torch.randint(0, length - self.window + 1, (b, 1))
        else:
            starts = torch.full((b, 1), (length - self.window) // 2)
        return torch.gather(x, 1, starts + torch.arange(self.window))

    def shape(self, stored: tuple[int, ...]) -> tuple[int, ...]:
        return (1, self.options.n_fft // 2 + 1, self.window // self.options.hop + 1)


class Transforms:
    """Stored arrays -> compact batches: {modality: (array name, transform)}. A class, not a closure,
    so DataLoader workers can pickle it."""

    def __init__(self, plan: dict[str, tuple[str, object]]) -> None:
        self.plan = plan

    def __repr__(self) -> str:
        return f"Transforms({self.plan!r})"

    @property
    def augments(self) -> bool:
        return any(transform.train for _, transform in self.plan.values())

    def __call__(self, raw: dict[str, Tensor]) -> Inputs:
        return {modality: transform(raw[array]) for modality, (array, transform) in self.plan.items()}

    @property
    def arrays(self) -> list[str]:
        return sorted({array for array, _ in self.plan.values()})
