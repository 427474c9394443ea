"""The first step of an encoder over prepared data: compact batches -> float model inputs, on the
model's device.

Data loader workers only crop, flip and resize (uint8 frames and views, flow widened to int16) and
cut the audio window (int16), so a batch crosses processes at a quarter of its float32 size or less
and the CPU does no float work; what is left runs here, where a GPU does it in microseconds:

* imagenet:        frames or views, uint8 -> float, ImageNet mean/std normalisation.
* flow:            stored values are centred on 128 (zero motion) and scaled to about [-1, 1]; the
                   loader already negated the x component of flipped clips (as 256 - v, exact in int16).
* log-spectrogram: int16 waveform window -> STFT magnitude -> log(|S| + 1e-7), (B, 1, freq, time);
                   the STFT is `Spectrogram`, the same front-end as the audio-cnn encoder's log-mel.
* standardize:     number features -> (x - mean) / std per feature, with the training split's
                   statistics, stored in the stage itself (data/standardize.py).

A data set names the stage of each modality in `Modality.stage` (stored with every run, so a loaded
model rebuilds it); `build_late_fusion` wraps the chosen encoder in `Staged`, so any encoder, and
everything that calls `model.encoders[m]` (probes, UMT teachers, UME members), gets float inputs.
The stages hold no parameters and no persistent buffers: they change no state dict. They run before
the convolutions, under the loop's autocast, and the convolutions then take bf16 and channels_last
as usual (autocast leaves elementwise ops and the STFT in float32: they are not on its
lower-precision list).
"""

from __future__ import annotations

from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from ..errors import ConfigError

IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)


class ImageNetInput(nn.Module):
    """uint8 (..., 3, H, W) -> float (x - 255 mean) / (255 std), per channel."""

    def __init__(self) -> None:
        super().__init__()
        self.register_buffer("mean", torch.tensor(IMAGENET_MEAN).view(3, 1, 1) * 255, persistent=False)
        self.register_buffer("std", torch.tensor(IMAGENET_STD).view(3, 1, 1) * 255, persistent=False)

    def forward(self, x: Tensor) -> Tensor:
        return (x.float() - self.mean) / self.std


class FlowInput(nn.Module):
    """Stacked flow (B, 2L, H, W), stored values centred on 128 -> (x - 128) / 128."""

    def forward(self, x: Tensor) -> Tensor:
        return (x.float() - 128.0) / 128.0


class Spectrogram(nn.Module):
    """float waveform (B, samples) -> STFT magnitude (B, n_fft // 2 + 1, frames), Hann window: the one
    STFT of the package (the log-spectrogram stage and the audio-cnn encoder's log-mel).

    A clip shorter than one window is zero-padded to a window: the STFT centres its frames by
    reflect-padding n_fft // 2 samples, which needs a clip longer than that."""

    def __init__(self, n_fft: int, hop: int) -> None:
        super().__init__()
        self.n_fft, self.hop = n_fft, hop
        self.register_buffer("window", torch.hann_window(n_fft), persistent=False)

    def forward(self, wave: Tensor) -> Tensor:
        wave = F.pad(wave, (0, max(0, self.n_fft - wave.shape[-1])))
        return torch.stft(wave, self.n_fft, self.hop, window=self.window, return_complex=True).abs()

    def frames(self, samples: int) -> int:
        return 1 + max(samples, self.n_fft) // self.hop


class LogSpectrogramInput(nn.Module):
    """int16 waveform window (B, samples) -> log STFT magnitude (B, 1, n_fft // 2 + 1, samples // hop + 1)."""

    def __init__(self, n_fft: int, hop: int) -> None:
        super().__init__()
        self.spectrogram = Spectrogram(n_fft, hop)

    def forward(self, x: Tensor) -> Tensor:
        return torch.log(self.spectrogram(x.float() / 32768.0) + 1e-7).unsqueeze(1)


class StandardizeInput(nn.Module):
    """Number features (B, *shape) -> (x - mean) / std, per feature. `mean` and `std` (lists of the
    sample's shape) are the training split's, computed by data/standardize.py; a feature constant in
    training has std 1 there (centred only)."""

    def __init__(self, mean: list | None = None, std: list | None = None) -> None:
        super().__init__()
        if mean is None or std is None:
            raise ConfigError("the input stage 'standardize' holds no statistics: build the data with latefusion.data.build_dataset "
                              "(or from_arrays / from_dataframe), which computes them from the train split")
        self.register_buffer("mean", torch.tensor(mean, dtype=torch.float32), persistent=False)
        self.register_buffer("std", torch.tensor(std, dtype=torch.float32), persistent=False)

    def forward(self, x: Tensor) -> Tensor:
        return (x.float() - self.mean) / self.std


INPUT_STAGES: dict[str, type[nn.Module]] = {"imagenet": ImageNetInput, "flow": FlowInput, "log-spectrogram": LogSpectrogramInput,
                                            "standardize": StandardizeInput}


def build_input_stage(stage: dict[str, Any]) -> nn.Module:
    """{"name": ..., **options} as a data set declares it in `Modality.stage`."""
    options = dict(stage)
    name = options.pop("name", None)
    if name not in INPUT_STAGES:
        raise ConfigError(f"input stage {stage}: name {name!r} is not one of {sorted(INPUT_STAGES)}")
    return INPUT_STAGES[name](**options)


class Staged(nn.Module):
    """An encoder that runs its modality's input stage first; exposes the encoder's `out_dim`."""

    def __init__(self, stage: nn.Module, encoder: nn.Module) -> None:
        super().__init__()
        self.stage, self.encoder = stage, encoder
        self.out_dim = encoder.out_dim

    def forward(self, x: Tensor) -> Tensor:
        return self.encoder(self.stage(x))
