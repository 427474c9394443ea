"""Typed run configuration: YAML file + `--set key=value` overrides, validated with pydantic.

Every section rejects unknown keys (with a did-you-mean) so a typo never silently falls back to a default.
Method-specific options live in each method's own `Options` model (see `methods/`), not here.
"""

from __future__ import annotations

import hashlib
import json
from pathlib import Path
from typing import Annotated, Any, Literal, get_args, get_origin

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError

from . import yamlfile
from .errors import ConfigError
from .registry import did_you_mean
from .yamlfile import YAMLRefused, short_repr


# Upper bounds on sizes and counts. They are generous (far beyond any run that fits on one machine)
# and only there so that a slip such as `data.batch_size=100000000000000000000` is refused here,
# naming the key and the bound, rather than as an out-of-memory error or an overflow deep in torch.
# docs/configs.md and docs/reliability.md list them.
MAX_BATCH_SIZE = 2**20      # data.batch_size, data.eval_batch_size
MAX_WORKERS = 256           # data.num_workers
MAX_FEATURE_DIM = 65536     # model.feature_dim
MAX_EPOCHS = 100_000        # train.epochs, train.patience, optim.step_size
MAX_STEPS = 10**9           # train.checkpoint_every_steps, train.log_every_steps
# Sizes of the data, checked where data set and prepare options are validated (an image side of 20,000
# is 4.8 GB of float32 per image) and when a file is read: an audio file's sample rate outside the
# rates is a damaged header (a WAV saying 1 Hz, resampled to 16 kHz, became 25.6 M samples a clip).
MAX_IMAGE_SIDE = 4096       # data.options.image_size, prepare's size, augmentation crops
MAX_FRAMES = 1024           # frames (and flow frames) per clip
MIN_SAMPLE_RATE, MAX_SAMPLE_RATE = 1000, 768_000  # Hz: audio files and data.options.sample_rate, prepare's rate
MAX_CLIP_SECONDS = 600      # s: an audio clip read whole (no data.options.audio_seconds), audio_seconds, clip_seconds
# Encoder options (model.encoders.<modality>.options), checked when the config is resolved (a width
# of 10^6 or 10^7 mel bins asks for terabytes of weights or filters).
MAX_CHANNELS = 8192         # the widest layer of an encoder: mlp hidden, cnn width x 2^(blocks - 1), resnet18 8 x width
MAX_LAYERS = 64             # mlp depth, cnn blocks
MAX_MEL_BINS = 1024         # audio-cnn n_mels
MAX_WINDOW = 65536          # samples: audio-cnn n_fft and hop, the augmentation's n_fft and hop

ImageSide = Annotated[int, Field(gt=0, le=MAX_IMAGE_SIDE)]
FrameCount = Annotated[int, Field(gt=0, le=MAX_FRAMES)]
SampleRate = Annotated[int, Field(ge=MIN_SAMPLE_RATE, le=MAX_SAMPLE_RATE)]
ClipSeconds = Annotated[float, Field(gt=0, le=MAX_CLIP_SECONDS)]
Channels = Annotated[int, Field(gt=0, le=MAX_CHANNELS)]
Layers = Annotated[int, Field(gt=0, le=MAX_LAYERS)]
MelBins = Annotated[int, Field(gt=0, le=MAX_MEL_BINS)]
Window = Annotated[int, Field(gt=0, le=MAX_WINDOW)]


class Section(BaseModel):
    # NaN and Inf pass range checks such as gt=0 (inf > 0), so they are refused outright.
    model_config = ConfigDict(extra="forbid", validate_assignment=True, allow_inf_nan=False)


class EncoderConfig(Section):
    name: str
    options: dict[str, Any] = Field(default_factory=dict)


# `data.batch_size`: the global training batch, a number or "auto" (engine.train_batch_size chooses it
# from the size of the training split; config.yaml keeps "auto", result.json records the number used).
AUTO = "auto"


class DataConfig(Section):
    name: str = "synthetic-unimodal"
    path: str | None = None
    options: dict[str, Any] = Field(default_factory=dict)
    batch_size: Literal["auto"] | Annotated[int, Field(gt=0, le=MAX_BATCH_SIZE)] = AUTO
    eval_batch_size: int = Field(512, gt=0, le=MAX_BATCH_SIZE)
    num_workers: int = Field(0, ge=0, le=MAX_WORKERS)
    # Run the data checks (data/checks.py) when the data set is built; a failed check stops the run.
    check: bool = True
    # Drop the samples the checks find bad, and say how many, instead of stopping.
    skip_bad: bool = False


class ModelConfig(Section):
    feature_dim: int = Field(64, gt=0, le=MAX_FEATURE_DIM)
    fusion: Literal["concat", "sum"] = "concat"
    # Per-modality encoder; a modality left out gets the dataset's suggested encoder.
    encoders: dict[str, EncoderConfig] = Field(default_factory=dict)


class OptimConfig(Section):
    name: Literal["adamw", "sgd"] = "adamw"
    lr: float = Field(1e-3, gt=0)
    weight_decay: float = Field(1e-4, ge=0)
    momentum: float = Field(0.9, ge=0, lt=1)
    schedule: Literal["none", "cosine", "step"] = "cosine"
    step_size: int = Field(30, gt=0, le=MAX_EPOCHS)
    gamma: float = Field(0.1, gt=0, le=1)
    grad_clip: float | None = Field(None, gt=0)


class TrainConfig(Section):
    epochs: int = Field(30, ge=1, le=MAX_EPOCHS)
    # Stop when validation accuracy has not improved for this many epochs (None: run all epochs).
    patience: int | None = Field(None, gt=0, le=MAX_EPOCHS)
    seed: int = Field(0, ge=0, lt=2**32)
    # Also save last.pt every this many steps inside an epoch, so that a crash loses at most these
    # steps (None: at the end of each epoch only). It does not change the result.
    checkpoint_every_steps: int | None = Field(200, gt=0, le=MAX_STEPS)
    device: Literal["auto", "cpu", "cuda"] = "auto"
    precision: Literal["auto", "fp32", "bf16"] = "auto"
    # CUDA only (CPU runs ignore both): convolution weights in channels_last memory format, and
    # cuDNN's autotuner (torch.backends.cudnn.benchmark). Neither changes what is computed.
    channels_last: bool = True
    cudnn_benchmark: bool = True
    progress: bool = True
    # Where the per-epoch metrics go besides metrics.jsonl (always written): csv, tensorboard (optional package).
    loggers: list[Literal["jsonl", "csv", "tensorboard"]] = Field(default_factory=lambda: ["jsonl"])
    # Read the logged training values (and check the loss is finite) every this many steps: each read
    # waits for the GPU, so reading every step would serialise the host and the device.
    log_every_steps: int = Field(50, gt=0, le=MAX_STEPS)


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
    parts = list(loc[:-1])
    while parts:
        annotation = getattr(model.model_fields.get(str(parts.pop(0))), "annotation", None)
        if get_origin(annotation) is dict and parts:  # a mapping of sections: the next part is its key
            annotation, _ = get_args(annotation)[1], parts.pop(0)
        if not (isinstance(annotation, type) and issubclass(annotation, BaseModel)):
            return []
        model = annotation
    return list(model.model_fields)


def _bounds(model: type[BaseModel], loc: tuple) -> str:
    """`an integer from 1 to 1048576` for a bounded integer key at `loc`, else ''."""
    names = _field_names(model, loc)
    if not names or str(loc[-1]) not in names:
        return ""
    parent = model
    for part in loc[:-1]:  # the section holding the key (_field_names walked the same path)
        annotation = getattr(parent.model_fields.get(str(part)), "annotation", None)
        if isinstance(annotation, type) and issubclass(annotation, BaseModel):
            parent = annotation
    field = parent.model_fields[str(loc[-1])]
    low = high = None
    for item in field.metadata:
        low = getattr(item, "ge", None) if getattr(item, "ge", None) is not None else (
            item.gt + 1 if getattr(item, "gt", None) is not None else low)
        high = getattr(item, "le", None) if getattr(item, "le", None) is not None else (
            item.lt - 1 if getattr(item, "lt", None) is not None else high)
    if field.annotation not in (int, int | None) or low is None or high is None:
        return ""
    return f"; expected an integer from {low} to {high}"


# Keys that take "auto" or a bounded integer. Pydantic reports a value neither accepts once per branch
# (`data.batch_size.literal['auto']`, `data.batch_size.constrained-int`); the message is the integer's,
# under the key itself, with the bound and "or auto".
AUTO_OR_INT_KEYS = {("data", "batch_size"): MAX_BATCH_SIZE}


def _auto_or_int(item: dict[str, Any]) -> tuple[dict[str, Any] | None, str]:
    """`item` as the error of an auto-or-integer key (None: the "auto" branch's, left out) and the bound
    to append; anything else unchanged, with no bound."""
    loc = tuple(item["loc"])
    bound = AUTO_OR_INT_KEYS.get(loc[:-1]) if len(loc) > 1 else None
    if bound is None:
        return item, ""
    if str(loc[-1]).startswith("literal"):
        return None, ""
    return {**item, "loc": loc[:-1]}, f"; expected an integer from 1 to {bound}, or auto"


def describe_validation_error(error: ValidationError, model: type[BaseModel], source: str) -> str:
    lines = [f"invalid configuration in {source}:"]
    for item in error.errors():
        item, auto_bound = _auto_or_int(item)
        if item is None:
            continue
        key = ".".join(str(p) for p in item["loc"]) or "(top level)"
        if item["type"] == "extra_forbidden":
            hint = did_you_mean(str(item["loc"][-1]), _field_names(model, item["loc"]))
            lines.append(f"  {key}: unknown key.{hint}")
        elif item["type"] == "missing":
            lines.append(f"  {key}: required key is missing")
        else:
            bound = auto_bound or (_bounds(model, item["loc"]) if item["type"].startswith("int_") else "")
            lines.append(f"  {key}: {item['msg']} (found {short_repr(item.get('input'))}){bound}")
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
    """`["train.epochs=5", "method.options.weight=10"]` -> nested dict; values are parsed as YAML scalars.

    Values are read as in config files (see yamlfile.py): `off`/`on`/`yes`/`no` stay strings, only
    `true`/`false` are booleans; duplicated keys and alias bombs are refused.
    """
    nested: dict[str, Any] = {}
    for item in overrides:
        shown = short_repr(item)
        key, sep, value = item.partition("=")
        if not sep or not key.strip():
            raise ConfigError(f"override {shown}: expected KEY=VALUE, e.g. train.epochs=5")
        node = nested
        *parents, leaf = key.strip().split(".")
        for part in parents:
            node = node.setdefault(part, {})
            if not isinstance(node, dict):
                raise ConfigError(f"override {shown}: {short_repr(part)} is set both as a value and as a section")
        try:
            node[leaf] = yamlfile.load(value, f"override {shown}") if value.strip() else None
        except YAMLRefused as error:
            raise ConfigError(str(error)) from None
        except yaml.YAMLError as error:
            raise ConfigError(f"override {shown}: the value is not a valid YAML scalar or list ({str(error).splitlines()[0]})") from None
    return nested


def read_yaml(path: str | Path, *, _chain: tuple[Path, ...] = ()) -> dict[str, Any]:
    """The mapping in the config file `path`, with the files it `extends:` merged under it.

    `extends: base.yaml` (or a list of files, merged in order) names files relative to this one; each
    is read first (with its own `extends:`), and this file's keys are deep-merged over them: a section
    given here updates the inherited one key by key, any other value replaces the inherited one.
    """
    path = Path(path)
    if not path.is_file():
        raise ConfigError(f"config file {path} does not exist")
    try:
        raw = yamlfile.load(path.read_text(encoding="utf-8"), f"config file {path}") or {}
    except YAMLRefused as error:
        raise ConfigError(str(error)) from None
    except yaml.YAMLError as error:
        raise ConfigError(f"config file {path} is not valid YAML: {error}") from None
    except UnicodeDecodeError as error:
        raise ConfigError(f"config file {path} is not UTF-8 text: {error}") from None
    if not isinstance(raw, dict):
        raise ConfigError(f"config file {path}: expected a mapping at the top level, found {type(raw).__name__}")
    if "extends" not in raw:
        return raw
    extends = raw.pop("extends")
    names = [extends] if isinstance(extends, str) else extends
    if not isinstance(names, list) or not all(isinstance(name, str) and name.strip() for name in names):
        raise ConfigError(f"config file {path}: extends: expected a file name or a list of file names "
                          f"(relative to this file), found {short_repr(extends)}")
    chain = (*_chain, path.resolve())
    merged: dict[str, Any] = {}
    for name in names:
        base = path.parent / name
        if base.resolve() in chain:
            cycle = " -> ".join(str(p) for p in (*chain[chain.index(base.resolve()):], base.resolve()))
            raise ConfigError(f"config file {path}: extends {name}, which makes a cycle: {cycle}")
        if not base.is_file():
            raise ConfigError(f"config file {path}: extends {name}, but {base} does not exist")
        merged = deep_merge(merged, read_yaml(base, _chain=chain))
    return deep_merge(merged, raw)


def dump_config(config: BaseModel) -> str:
    return yaml.safe_dump(config.model_dump(mode="json"), sort_keys=False)


# Keys that change how a run is shown or how fast it runs, not what it computes.
NEUTRAL_KEYS = frozenset({"train.progress", "train.loggers", "train.log_every_steps", "train.checkpoint_every_steps", "train.channels_last",
                          "train.cudnn_benchmark", "data.eval_batch_size"})


def flat_config(config: RunConfig | dict[str, Any]) -> dict[str, Any]:
    """`{"train.epochs": 30, "method.options.weight": 1.0, ...}` without the neutral keys."""
    def flat(tree, prefix=""):
        for key, value in tree.items():
            if isinstance(value, dict) and value:
                yield from flat(value, f"{prefix}{key}.")
            else:
                yield f"{prefix}{key}", value
    tree = config.model_dump(mode="json") if isinstance(config, BaseModel) else config
    return {k: v for k, v in flat(tree) if k not in NEUTRAL_KEYS}


def config_differences(old: RunConfig | dict[str, Any], new: RunConfig | dict[str, Any]) -> list[str]:
    """`key: old -> new` for every key whose value differs (neutral keys aside)."""
    a, b = flat_config(old), flat_config(new)
    return [f"{k}: {a.get(k)!r} -> {b.get(k)!r}" for k in sorted(a.keys() | b.keys()) if a.get(k) != b.get(k)]


def config_fingerprint(config: RunConfig) -> str:
    """A hash of everything in the config that changes what a run computes."""
    return hashlib.sha256(json.dumps(flat_config(config), sort_keys=True).encode()).hexdigest()[:16]
