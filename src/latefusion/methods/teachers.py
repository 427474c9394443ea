"""Finding, checking and loading the uni-modal runs that UME reuses as members and UMT as teachers."""

from __future__ import annotations

from torch import nn

from ..data import DataSpec
from ..errors import ConfigError
from ..runs import RunDir, record_references, resolve_references
from .base import TrainingContext
from .registry import load_model


def unimodal_runs(run_dirs: dict[str, str], spec: DataSpec, option: str, context: TrainingContext) -> dict[str, RunDir]:
    """`{modality: run folder}` -> the finished uni-modal runs, checked against this run's data (by the
    data's fingerprint, not only its name), and recorded in this run's references.json."""
    unknown = set(run_dirs) - set(spec.modality_names)
    if unknown:
        raise ConfigError(f"{option} names modalities {sorted(unknown)} that data set {spec.name!r} lacks; it has {spec.modality_names}")
    missing = [m for m in spec.modality_names if m not in run_dirs]
    if missing:
        raise ConfigError(f"{option} has no uni-modal run for modalities {missing}; give one per modality, e.g. {option}.{missing[0]}=runs/unimodal-{missing[0]}")
    runs = resolve_references(context.run, run_dirs, option)
    for modality, run in runs.items():
        config = run.config()
        if config.method.name != "unimodal" or config.method.options.get("modality") != modality:
            trained_on = f" on {config.method.options.get('modality')!r}" if config.method.name == "unimodal" else ""
            raise ConfigError(f"{option}.{modality}: {run.path} is a {config.method.name!r} run{trained_on}, expected a uni-modal run on {modality!r}")
        fingerprint = run.result().get("fingerprints", {}).get("data")
        if fingerprint != context.bundle.fingerprint:
            raise ConfigError(f"{option}.{modality}: {run.path} was trained on other data ({config.data.name!r}, fingerprint {fingerprint}) "
                              f"than this run ({spec.name!r}, fingerprint {context.bundle.fingerprint}); train the uni-modal runs on this data")
    if context.writes:
        record_references(context.run, option, runs)
    return runs


def unimodal_models(runs: dict[str, RunDir], device) -> dict[str, nn.Module]:
    """Each run's trained uni-modal model (its encoder and linear head), frozen, in eval mode, on `device`."""
    return {modality: load_model(run, device).requires_grad_(False) for modality, run in runs.items()}
