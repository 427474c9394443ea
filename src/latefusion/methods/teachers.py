"""Loading trained uni-modal runs for reuse by UME (as members) and UMT (as teachers)."""

from __future__ import annotations

from pathlib import Path

from ..config import ConfigError
from ..data import DataSpec
from ..models import LateFusion
from ..runs import RunDir


def load_unimodal_runs(run_dirs: dict[str, str], spec: DataSpec, option: str) -> dict[str, LateFusion]:
    """`{modality: run folder}` -> the trained uni-modal models, checked against `spec`."""
    from ..train import load_model  # here, not at the top: train imports the methods

    unknown = set(run_dirs) - set(spec.modality_names)
    if unknown:
        raise ConfigError(f"{option} names modalities {sorted(unknown)} that data set {spec.name!r} lacks; it has {spec.modality_names}")
    missing = [m for m in spec.modality_names if m not in run_dirs]
    if missing:
        raise ConfigError(f"{option} has no uni-modal run for modalities {missing}; give one per modality, e.g. {option}.{missing[0]}=runs/unimodal-{missing[0]}")
    models = {}
    for modality, path in run_dirs.items():
        run = RunDir(Path(path))
        config = run.config()
        if config.method.name != "unimodal" or config.method.options.get("modality") != modality:
            raise ConfigError(
                f"{option}.{modality}: {path} is a {config.method.name!r} run"
                f"{' on ' + repr(config.method.options.get('modality')) if config.method.name == 'unimodal' else ''}, "
                f"expected a uni-modal run on {modality!r}"
            )
        trained_on = run.spec()
        if trained_on.name != spec.name or trained_on.modality(modality) != spec.modality(modality):
            raise ConfigError(f"{option}.{modality}: {path} was trained on {trained_on.name!r} ({trained_on.modality(modality)}), not on {spec.name!r} ({spec.modality(modality)})")
        models[modality] = load_model(run)
    return models
