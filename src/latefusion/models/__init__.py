"""Encoders by name, and the late-fusion model built from them. A new encoder is one module that
registers a class taking `(input_shape, out_dim, **options)` and exposing `out_dim`."""

from __future__ import annotations

import inspect
from typing import Annotated, Any, get_args, get_origin, get_type_hints

from pydantic import TypeAdapter, ValidationError
from torch import nn

from ..config import EncoderConfig, ModelConfig
from ..errors import ConfigError
from ..yamlfile import short_repr
from . import audio, encoders, resnet  # noqa: F401  (register the built-in encoders)
from .fusion import LateFusion
from .input_stage import Staged, build_input_stage
from .protocol import FusedModel, FusionHead, LateFusionModel
from .registry import ENCODERS


def check_encoder_options(config: EncoderConfig, where: str) -> None:
    """Refuse options the encoder's constructor does not take, or values outside the bounds its
    annotations declare (the config's Annotated types: `n_mels: MelBins`), before anything is built."""
    encoder = ENCODERS.get(config.name)
    try:
        inspect.signature(encoder).bind(None, None, **config.options)
    except TypeError as error:
        raise ConfigError(f"{where}: encoder {config.name!r} does not take options {config.options}: {error}") from None
    hints = bounded_hints(encoder)
    for name, value in config.options.items():
        if name in hints:
            try:
                TypeAdapter(hints[name]).validate_python(value)
            except ValidationError as error:
                raise ConfigError(f"{where}.options.{name}: {error.errors()[0]['msg']} (found {short_repr(value)}); "
                                  f"encoder {config.name!r}") from None


def bounded_hints(encoder) -> dict[str, Any]:
    """The constructor's parameters annotated with bounds (Annotated, maybe inside `X | None`); a
    plug-in's other annotations are left to it."""

    def bounded(hint) -> bool:
        return get_origin(hint) is Annotated or any(bounded(arg) for arg in get_args(hint))

    try:
        hints = get_type_hints(encoder.__init__, include_extras=True)
    except Exception:  # a plug-in's annotation that does not resolve: nothing to check
        return {}
    return {name: hint for name, hint in hints.items() if bounded(hint)}


def build_encoder(config: EncoderConfig, input_shape: tuple[int, ...], out_dim: int) -> nn.Module:
    check_encoder_options(config, "model.encoders")
    return ENCODERS.get(config.name)(input_shape, out_dim, **config.options)


def load_pretrained_weights(model: nn.Module) -> None:
    """Before training: every encoder whose options name a pretrained weights file loads it (an encoder
    opts in with a `weights_file` attribute and a `load_pretrained()` method, as resnet18 does)."""
    for module in model.modules():
        if getattr(module, "weights_file", None):
            module.load_pretrained()


def encoder_config(spec, config: ModelConfig, modality: str) -> EncoderConfig:
    """The encoder the config chooses for `modality`, or else the one the data set suggests."""
    unknown = set(config.encoders) - set(spec.modality_names)
    if unknown:
        raise ConfigError(f"model.encoders names modalities {sorted(unknown)} that data set {spec.name!r} lacks; it has {spec.modality_names}")
    return config.encoders.get(modality) or EncoderConfig(**spec.encoders.get(modality, {"name": "mlp"}))


def build_late_fusion(bundle, config: ModelConfig, modalities: list[str]) -> LateFusion:
    """A late-fusion model over `modalities` of `bundle` (one modality gives a uni-modal model)."""
    encoders = {}
    for name in modalities:
        chosen = encoder_config(bundle, config, name)
        modality = bundle.modality(name)
        encoder = build_encoder(chosen, modality.shape, config.feature_dim)
        encoders[name] = Staged(build_input_stage(modality.stage), encoder) if modality.stage else encoder
    return LateFusion(encoders, bundle.num_classes, config.fusion)


__all__ = ["ENCODERS", "FusedModel", "FusionHead", "LateFusion", "LateFusionModel", "build_encoder", "build_late_fusion", "check_encoder_options", "encoder_config", "load_pretrained_weights"]
