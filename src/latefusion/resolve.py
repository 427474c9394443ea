"""From what the user wrote to a checked RunConfig: the data set's registered defaults under the
user's YAML and `--set` overrides, then every option the sections leave free-form (method, encoder)
checked against what its method or encoder takes, so a typo fails in seconds, before any training."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from .config import DataConfig, RunConfig, deep_merge, parse_overrides, read_yaml, validate
from .data import DATASETS
from .errors import ConfigError
from .methods import METHODS
from .methods.base import validate_options
from .models import check_encoder_options


def resolve_config(path: str | Path | None = None, overrides: list[str] = (), *, quick: bool = False) -> RunConfig:
    """The user's config over the defaults registered for its data set (and its quick settings)."""
    user = deep_merge(read_yaml(path) if path is not None else {}, parse_overrides(list(overrides)))
    data = user.get("data")
    name = data.get("name", DataConfig().name) if isinstance(data, dict) else DataConfig().name
    # A name of the wrong type or unknown gets no defaults here; validation or the registry names the error.
    base = dict(DATASETS.defaults(name)) if isinstance(name, str) and name in DATASETS else {}
    quick_settings = base.pop("quick", None)
    if quick:
        base = deep_merge(base, check_quick(name, quick_settings, user))
    source = (str(path) if path else "defaults") + (" + --set overrides" if overrides else "")
    config = validate(RunConfig, deep_merge(base, user), source)
    check_free_form_options(config)
    return config


def check_quick(name: Any, settings: dict[str, Any] | None, user: dict[str, Any]) -> dict[str, Any]:
    """`--quick` is the quick settings a data set registered (`"quick"` in its defaults; `{}` says the
    data set is quick already); on one that registered none it is refused, never silently ignored."""
    if settings is not None or not (isinstance(name, str) and name in DATASETS):  # an unknown name: the registry names the error
        return settings or {}
    with_quick = [n for n in DATASETS.names() if "quick" in DATASETS.defaults(n)]
    path = user.get("data", {}).get("path") if isinstance(user.get("data"), dict) else None
    shown = f"{name!r}" + (f" ({path})" if path else "")
    raise ConfigError(f"--quick: data set {shown} has no quick settings, so --quick would change nothing; set what to shorten "
                      f"yourself (e.g. --set train.epochs=5) and drop --quick. Data sets with quick settings: {', '.join(with_quick)}")


def check_free_form_options(config: RunConfig, method_options: dict[str, Any] | None = None) -> None:
    """The data set and method exist, the data set's options (where it registered their model: sizes
    are bounded there), the method's options (or `method_options`, for a method the pipeline completes
    itself) and each encoder's options are ones they take."""
    data_options = DATASETS.options(config.data.name)
    if data_options is not None:
        validate(data_options, config.data.options, f"data.options of {config.data.name}")
    method = METHODS.get(config.method.name)
    if method_options is None or config.method.options:
        validate_options(method, config.method.options)
    for modality, encoder in config.model.encoders.items():
        check_encoder_options(encoder, f"model.encoders.{modality}")
