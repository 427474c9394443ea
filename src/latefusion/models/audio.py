"""Audio encoder: waveform -> log-mel spectrogram (plain torch, no torchaudio) -> small CNN.

The spectrogram is computed inside the encoder, on the model's device, so data loaders only move
raw samples and a GPU does the transform. Its STFT is the input stages' `Spectrogram`, so the
package has one audio front-end.
"""

from __future__ import annotations

import torch
from torch import Tensor, nn

from ..config import Channels, Layers, MelBins, SampleRate, Window
from ..errors import ConfigError
from .registry import ENCODERS
from .encoders import SmallCNN
from .input_stage import Spectrogram


def hz_to_mel(hz: Tensor) -> Tensor:
    return 2595.0 * torch.log10(1.0 + hz / 700.0)


def mel_filterbank(sample_rate: int, n_fft: int, n_mels: int) -> Tensor:
    """(n_fft // 2 + 1, n_mels) triangular filters evenly spaced on the HTK mel scale, 0 Hz to Nyquist."""
    freqs = torch.linspace(0, sample_rate / 2, n_fft // 2 + 1)
    mel_points = torch.linspace(0, hz_to_mel(torch.tensor(sample_rate / 2.0)).item(), n_mels + 2)
    hz_points = 700.0 * (10 ** (mel_points / 2595.0) - 1.0)
    lower, center, upper = hz_points[:-2], hz_points[1:-1], hz_points[2:]
    rising = (freqs[:, None] - lower) / (center - lower)
    falling = (upper - freqs[:, None]) / (upper - center)
    return torch.clamp(torch.minimum(rising, falling), min=0.0)


class LogMel(nn.Module):
    def __init__(self, sample_rate: int, n_fft: int = 256, hop: int | None = None, n_mels: int = 40) -> None:
        super().__init__()
        self.spectrogram = Spectrogram(n_fft, hop or n_fft // 4)
        self.register_buffer("filters", mel_filterbank(sample_rate, n_fft, n_mels), persistent=False)

    def forward(self, waveform: Tensor) -> Tensor:
        """(batch, samples) -> (batch, 1, n_mels, frames), each example standardised."""
        spec = self.spectrogram(waveform.float()) ** 2
        mel = torch.log(torch.einsum("bft,fm->bmt", spec, self.filters) + 1e-6)
        mel = (mel - mel.mean(dim=(1, 2), keepdim=True)) / (mel.std(dim=(1, 2), keepdim=True) + 1e-5)
        return mel.unsqueeze(1)

    def frames(self, samples: int) -> int:
        return self.spectrogram.frames(samples)


@ENCODERS.register("audio-cnn")
class AudioCNN(nn.Module):
    def __init__(self, input_shape: tuple[int, ...], out_dim: int, sample_rate: SampleRate = 16000, n_fft: Window = 256,
                 hop: Window | None = None, n_mels: MelBins = 40, width: Channels = 32, blocks: Layers = 3) -> None:
        super().__init__()
        if len(input_shape) != 1:
            raise ConfigError(f"audio-cnn expects 1-D waveforms (samples,), got input shape {input_shape}")
        self.logmel = LogMel(sample_rate, n_fft, hop, n_mels)
        self.cnn = SmallCNN((1, n_mels, self.logmel.frames(input_shape[0])), out_dim, width=width, blocks=blocks)
        self.out_dim = out_dim

    def forward(self, waveform: Tensor) -> Tensor:
        return self.cnn(self.logmel(waveform))
