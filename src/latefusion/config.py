"""Typed run configuration: YAML file + `--set key=value` overrides, validated with pydantic.

Every section rejects unknown keys (with a did-you-mean) so a typo never silently falls back to a default.
Method-specific options live in each method's own `Options` model (see `methods/`), not here.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Literal

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError

from .registry import did_you_mean


class ConfigError(ValueError):
    """A configuration that cannot be used; the message names the key, what was found and what was expected."""


class Section(BaseModel):
    model_config = ConfigDict(extra="forbid", validate_assignment=True)


class EncoderConfig(Section):
    name: str
    options: dict[str, Any] = Field(default_factory=dict)


class DataConfig(Section):
    name: str = "synthetic-unimodal"
    path: str | None = None
    options: dict[str, Any] = Field(default_factory=dict)
    batch_size: int = Field(128, gt=0)
    eval_batch_size: int = Field(512, gt=0)
    num_workers: int = Field(0, ge=0)


class ModelConfig(Section):
    feature_dim: int = Field(64, gt=0)
    fusion: Literal["concat", "sum"] = "concat"
    # Per-modality encoder; a modality left out gets the dataset's suggested encoder.
    encoders: dict[str, EncoderConfig] = Field(default_factory=dict)


class OptimConfig(Section):
    name: Literal["adamw", "sgd"] = "adamw"
    lr: float = Field(1e-3, gt=0)
    weight_decay: float = Field(1e-4, ge=0)
    momentum: float = Field(0.9, ge=0, lt=1)
    schedule: Literal["none", "cosine", "step"] = "cosine"
    step_size: int = Field(30, gt=0)
    gamma: float = Field(0.1, gt=0, le=1)
    grad_clip: float | None = Field(None, gt=0)


class TrainConfig(Section):
    epochs: int = Field(30, ge=0)
    # Stop when validation accuracy has not improved for this many epochs (None: run all epochs).
    patience: int | None = Field(None, gt=0)
    seed: int = 0
    device: Literal["auto", "cpu", "cuda"] = "auto"
    precision: Literal["auto", "fp32", "bf16"] = "auto"
    progress: bool = True


class MethodConfig(Section):
    name: str = "naive"
    options: dict[str, Any] = Field(default_factory=dict)


class RunConfig(Section):
    data: DataConfig = Field(default_factory=DataConfig)
    model: ModelConfig = Field(default_factory=ModelConfig)
    optim: OptimConfig = Field(default_factory=OptimConfig)
    train: TrainConfig = Field(default_factory=TrainConfig)
    method: MethodConfig = Field(default_factory=MethodConfig)


def _field_names(model: type[BaseModel], loc: tuple) -> list[str]:
    """The valid keys at the place `loc` points to, for a did-you-mean."""
    for part in loc[:-1]:
        field = model.model_fields.get(str(part))
        annotation = getattr(field, "annotation", None)
        if not (isinstance(annotation, type) and issubclass(annotation, BaseModel)):
            return []
        model = annotation
    return list(model.model_fields)


def describe_validation_error(error: ValidationError, model: type[BaseModel], source: str) -> str:
    lines = [f"invalid configuration in {source}:"]
    for item in error.errors():
        key = ".".join(str(p) for p in item["loc"]) or "(top level)"
        if item["type"] == "extra_forbidden":
            hint = did_you_mean(str(item["loc"][-1]), _field_names(model, item["loc"]))
            lines.append(f"  {key}: unknown key.{hint}")
        elif item["type"] == "missing":
            lines.append(f"  {key}: required key is missing")
        else:
            lines.append(f"  {key}: {item['msg']} (found {item.get('input')!r})")
    return "\n".join(lines)


def validate(model: type[BaseModel], raw: dict[str, Any], source: str):
    try:
        return model.model_validate(raw)
    except ValidationError as error:
        raise ConfigError(describe_validation_error(error, model, source)) from None


def deep_merge(base: dict[str, Any], update: dict[str, Any]) -> dict[str, Any]:
    merged = dict(base)
    for key, value in update.items():
        if isinstance(value, dict) and isinstance(merged.get(key), dict):
            merged[key] = deep_merge(merged[key], value)
        else:
            merged[key] = value
    return merged


def parse_overrides(overrides: list[str]) -> dict[str, Any]:
    """`["train.epochs=5", "method.options.weight=10"]` -> nested dict; values are parsed as YAML scalars."""
    nested: dict[str, Any] = {}
    for item in overrides:
        key, sep, value = item.partition("=")
        if not sep or not key.strip():
            raise ConfigError(f"override {item!r}: expected KEY=VALUE, e.g. train.epochs=5")
        node = nested
        *parents, leaf = key.strip().split(".")
        for part in parents:
            node = node.setdefault(part, {})
            if not isinstance(node, dict):
                raise ConfigError(f"override {item!r}: {part!r} is set both as a value and as a section")
        node[leaf] = yaml.safe_load(value) if value.strip() else None
    return nested


def read_yaml(path: str | Path) -> dict[str, Any]:
    path = Path(path)
    if not path.is_file():
        raise ConfigError(f"config file {path} does not exist")
    try:
        raw = yaml.safe_load(path.read_text()) or {}
    except yaml.YAMLError as error:
        raise ConfigError(f"config file {path} is not valid YAML: {error}") from None
    if not isinstance(raw, dict):
        raise ConfigError(f"config file {path}: expected a mapping at the top level, found {type(raw).__name__}")
    return raw


def dump_config(config: BaseModel) -> str:
    return yaml.safe_dump(config.model_dump(mode="json"), sort_keys=False)


def resolve_config(path: str | Path | None = None, overrides: list[str] = (), *, quick: bool = False) -> RunConfig:
    """The user's config over the defaults registered for its data set (and its quick settings)."""
    from .data import DATASETS  # here: the data package imports this module

    user = deep_merge(read_yaml(path) if path is not None else {}, parse_overrides(list(overrides)))
    name = user.get("data", {}).get("name", DataConfig().name)
    base = dict(DATASETS.defaults(name)) if name in DATASETS else {}
    quick_settings = base.pop("quick", {})
    if quick:
        base = deep_merge(base, quick_settings)
    source = (str(path) if path else "defaults") + (" + --set overrides" if overrides else "")
    return validate(RunConfig, deep_merge(base, user), source)
