"""Encoders by name, and the late-fusion model built from them. A new encoder is one module that
registers a class taking `(input_shape, out_dim, **options)` and exposing `out_dim`."""

from __future__ import annotations

from torch import nn

from ..config import ConfigError, EncoderConfig, ModelConfig
from ..registry import Registry

ENCODERS: Registry[type[nn.Module]] = Registry("encoder")

from . import audio, encoders, resnet  # noqa: E402,F401  (register the built-in encoders)
from .fusion import LateFusion  # noqa: E402
from .input_stage import Staged, build_input_stage  # noqa: E402


def build_encoder(config: EncoderConfig, input_shape: tuple[int, ...], out_dim: int) -> nn.Module:
    try:
        return ENCODERS.get(config.name)(input_shape, out_dim, **config.options)
    except TypeError as error:
        raise ConfigError(f"encoder {config.name!r}: bad options {config.options}: {error}") from None


def build_late_fusion(bundle, config: ModelConfig, modalities: list[str]) -> LateFusion:
    """A late-fusion model over `modalities` of `bundle` (one modality gives a uni-modal model)."""
    unknown = set(config.encoders) - set(bundle.modality_names)
    if unknown:
        raise ConfigError(f"model.encoders names modalities {sorted(unknown)} that data set {bundle.name!r} lacks; it has {bundle.modality_names}")
    encoders = {}
    for name in modalities:
        chosen = config.encoders.get(name) or EncoderConfig(**bundle.encoders.get(name, {"name": "mlp"}))
        modality = bundle.modality(name)
        encoder = build_encoder(chosen, modality.shape, config.feature_dim)
        encoders[name] = Staged(build_input_stage(modality.stage), encoder) if modality.stage else encoder
    return LateFusion(encoders, bundle.num_classes, config.fusion)


__all__ = ["ENCODERS", "LateFusion", "build_encoder", "build_late_fusion"]
