"""From stored arrays to model inputs, a batch at a time: the decoding left for training time
(uint8 -> float, waveform -> log spectrogram) and augmentation, which is on for the train split only.

* frames, views: random resized crop + horizontal flip for training (one crop per clip, shared by its
  frames); the whole frame resized for evaluation. ImageNet mean/std normalisation.
* flow: the same crop and flip, with the x component negated on a flip (a mirrored motion moves the
  other way); values centred on the 128 that JPEG flow frames use for zero motion.
* audio: a random window of `seconds` for training, the middle window for evaluation; STFT
  magnitude, log(|S| + 1e-7): OGM-GE's VGG-Sound recipe (n_fft 256, hop 128) by default.

Crops are done for the whole batch with one `grid_sample` (each sample its own affine box), which is
what keeps the loader fast on a few cores.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from pydantic import Field
from torch import Tensor

from ..config import Section
from .base import Inputs

IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)


class ImageAugment(Section):
    crop: int = Field(224, gt=0)  # output side in pixels
    scale_min: float = Field(0.08, gt=0, le=1)  # a training crop covers [scale_min, 1] of the frame's area
    flip: bool = True


class AudioAugment(Section):
    seconds: float = Field(5.0, gt=0)
    n_fft: int = Field(256, ge=8)
    hop: int = Field(128, gt=0)


def resized_crop(images: Tensor, options: ImageAugment, train: bool) -> tuple[Tensor, Tensor]:
    """(N, C, H, W) float -> (N, C, crop, crop), and which samples were flipped."""
    n, channels, size = len(images), images.shape[1], options.crop
    if not train:
        if images.shape[-2:] != (size, size):
            images = F.interpolate(images, size=(size, size), mode="bilinear", antialias=True, align_corners=False)
        return images, torch.zeros(n, dtype=torch.bool)
    area = torch.empty(n).uniform_(options.scale_min, 1.0)
    ratio = torch.empty(n).uniform_(math.log(3 / 4), math.log(4 / 3)).exp()
    width, height = (area * ratio).sqrt().clamp(max=1), (area / ratio).sqrt().clamp(max=1)
    flips = torch.rand(n) < 0.5 if options.flip else torch.zeros(n, dtype=torch.bool)
    # An affine map from output to input coordinates in [-1, 1]: box half-sizes and a random centre.
    theta = torch.zeros(n, 2, 3)
    theta[:, 0, 0] = width * (1 - 2 * flips.float())
    theta[:, 1, 1] = height
    theta[:, 0, 2] = (torch.rand(n) * 2 - 1) * (1 - width)
    theta[:, 1, 2] = (torch.rand(n) * 2 - 1) * (1 - height)
    grid = F.affine_grid(theta, [n, channels, size, size], align_corners=False)
    return F.grid_sample(images, grid, mode="bilinear", padding_mode="border", align_corners=False), flips


def _clip_crop(x: Tensor, options: ImageAugment, train: bool) -> tuple[Tensor, Tensor]:
    """uint8 (B, T, H, W, C) -> float (B, T, C, crop, crop) in [0, 255]: frames of a clip share one crop."""
    b, t, h, w, c = x.shape
    stacked = x.permute(0, 1, 4, 2, 3).reshape(b, t * c, h, w).float()
    out, flips = resized_crop(stacked, options, train)
    return out.reshape(b, t, c, options.crop, options.crop), flips


class FrameTransform:
    """Frames (B, T, H, W, 3) -> (B, T, 3, crop, crop); a single image (B, H, W, 3) -> (B, 3, crop, crop)."""

    def __init__(self, options: ImageAugment, train: bool) -> None:
        self.options, self.train = options, train
        self.mean = torch.tensor(IMAGENET_MEAN).view(3, 1, 1) * 255
        self.std = torch.tensor(IMAGENET_STD).view(3, 1, 1) * 255

    def __call__(self, x: Tensor) -> Tensor:
        single = x.dim() == 4
        out, _ = _clip_crop(x.unsqueeze(1) if single else x, self.options, self.train)
        out = (out - self.mean) / self.std
        return out[:, 0] if single else out

    def shape(self, stored: tuple[int, ...]) -> tuple[int, ...]:
        side = (3, self.options.crop, self.options.crop)
        return side if len(stored) == 3 else (stored[0], *side)


class FlowTransform:
    """Stacked flow (B, L, H, W, 2) -> (B, 2L, crop, crop): channels x1, y1, x2, y2, ... in about [-1, 1]."""

    def __init__(self, options: ImageAugment, train: bool) -> None:
        self.options, self.train = options, train

    def __call__(self, x: Tensor) -> Tensor:
        out, flips = _clip_crop(x, self.options, self.train)
        out = (out - 128.0) / 128.0
        out[flips, :, 0] = -out[flips, :, 0]
        return out.flatten(1, 2)

    def shape(self, stored: tuple[int, ...]) -> tuple[int, ...]:
        return (2 * stored[0], self.options.crop, self.options.crop)


class AudioTransform:
    """Waveform int16 (B, samples) -> log-magnitude spectrogram (B, 1, n_fft // 2 + 1, frames)."""

    def __init__(self, options: AudioAugment, rate: int, train: bool) -> None:
        self.options, self.train = options, train
        self.window = round(options.seconds * rate)
        self.hann = torch.hann_window(options.n_fft)

    def __call__(self, x: Tensor) -> Tensor:
        b, length = x.shape
        if self.window > length:
            raise ValueError(f"audio window of {self.options.seconds} s is {self.window} samples, but the prepared clips hold {length}")
        if self.train:
            starts = torch.randint(0, length - self.window + 1, (b, 1))
        else:
            starts = torch.full((b, 1), (length - self.window) // 2)
        wave = torch.gather(x, 1, starts + torch.arange(self.window)).float() / 32768.0
        spec = torch.stft(wave, self.options.n_fft, self.options.hop, window=self.hann, return_complex=True)
        return torch.log(spec.abs() + 1e-7).unsqueeze(1)

    def shape(self, stored: tuple[int, ...]) -> tuple[int, ...]:
        return (1, self.options.n_fft // 2 + 1, self.window // self.options.hop + 1)


class Transforms:
    """Stored arrays -> model inputs: {modality: (array name, transform)}. A class, not a closure,
    so DataLoader workers can pickle it."""

    def __init__(self, plan: dict[str, tuple[str, object]]) -> None:
        self.plan = plan

    def __call__(self, raw: dict[str, Tensor]) -> Inputs:
        return {modality: transform(raw[array]) for modality, (array, transform) in self.plan.items()}

    @property
    def arrays(self) -> list[str]:
        return sorted({array for array, _ in self.plan.values()})
