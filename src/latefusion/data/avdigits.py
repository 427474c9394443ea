"""avdigits: the embedded audio-visual data set (the default of `latefusion demo`).

1,797 real handwritten digits (8x8, UCI via scikit-learn) paired by class with spoken digit words
synthesised by eSpeak NG (1 s at 8 kHz), split 60/20/20 with disjoint synthetic speakers per split.
The file ships clean (`data/assets/avdigits.npz`, built by scripts/build_avdigits.py; provenance and
licences in docs/avdigits.md); this loader degrades both modalities so that neither is near-perfect
alone: a 3x3 occlusion and Gaussian noise (std 3 on the 0..16 scale) for images, white noise at a
whole-clip SNR drawn from [0, 10] dB for audio. Each sample's degradation is fixed by
(seed, sample index, modality), so every read of a sample gives the same tensors.
"""

from __future__ import annotations

from importlib import resources

import numpy as np
import torch
from pydantic import Field

from ..config import DataConfig, Section, validate
from .registry import DATASETS
from .base import SPLITS, DataBundle, Modality, TensorSplit

ASSET = "avdigits.npz"
SAMPLE_RATE = 8000


class AVDigitsOptions(Section):
    seed: int = Field(0, ge=0)
    image_noise: float = Field(3.0, ge=0)
    occlusion: int = Field(3, ge=0, le=8)
    snr_db_min: float = 0.0
    snr_db_max: float = 10.0


def sample_generator(seed: int, index: int, stream: int) -> torch.Generator:
    return torch.Generator().manual_seed((seed * 1_000_003 + index) * 2 + stream)


def degrade_image(image: torch.Tensor, g: torch.Generator, options: AVDigitsOptions) -> torch.Tensor:
    """(8, 8) values 0..16 -> (1, 8, 8) in [0, 1]: a zeroed square patch, then Gaussian noise."""
    image = image.float().clone()
    if options.occlusion:
        top, left = torch.randint(9 - options.occlusion, (2,), generator=g).tolist()
        image[top : top + options.occlusion, left : left + options.occlusion] = 0
    image = (image + options.image_noise * torch.randn(image.shape, generator=g)).clamp(0, 16)
    return (image / 16).unsqueeze(0)


def degrade_audio(audio: torch.Tensor, g: torch.Generator, options: AVDigitsOptions) -> torch.Tensor:
    """int16 samples -> float waveform plus white noise at a whole-clip SNR drawn from [min, max] dB."""
    x = audio.float() / 32768
    snr_db = options.snr_db_min + (options.snr_db_max - options.snr_db_min) * torch.rand((), generator=g)
    noise_power = x.pow(2).mean() / 10 ** (snr_db / 10)
    return x + noise_power.sqrt() * torch.randn(x.shape, generator=g)


@DATASETS.register("avdigits", defaults={
    "data": {"batch_size": 64},
    "model": {"feature_dim": 64},
    "train": {"epochs": 30},
    "quick": {"train": {"epochs": 10}},
})
def build(config: DataConfig) -> DataBundle:
    options = validate(AVDigitsOptions, config.options, "data.options of avdigits")
    with resources.files("latefusion.data.assets").joinpath(ASSET).open("rb") as handle, np.load(handle) as archive:
        images, audio = torch.from_numpy(archive["image"]), torch.from_numpy(archive["audio"])
        labels, splits = torch.from_numpy(archive["label"]), archive["split"]
        class_names = [str(name) for name in archive["class_names"]]
    degraded_images = torch.stack([degrade_image(images[i], sample_generator(options.seed, i, 0), options) for i in range(len(images))])
    degraded_audio = torch.stack([degrade_audio(audio[i], sample_generator(options.seed, i, 1), options) for i in range(len(audio))])
    bundle_splits = {}
    for code, split in enumerate(SPLITS):
        rows = torch.from_numpy(np.flatnonzero(splits == code))
        bundle_splits[split] = TensorSplit({"image": degraded_images[rows], "audio": degraded_audio[rows]}, labels[rows])
    return DataBundle(
        name="avdigits",
        modalities=[Modality("image", "image", (1, 8, 8)), Modality("audio", "audio", (SAMPLE_RATE,))],
        num_classes=len(class_names),
        class_names=class_names,
        encoders={
            "image": {"name": "cnn", "options": {"blocks": 2}},
            "audio": {"name": "audio-cnn", "options": {"sample_rate": SAMPLE_RATE, "n_fft": 256, "hop": 128, "n_mels": 32, "width": 16}},
        },
        splits=bundle_splits,
    )
