"""Repeating a run over seeds, and the mean and spread of what the repeats measured.

The rule for `--seeds N` (on `latefusion train` and `latefusion demo`): repeat K = 0, 1, ..., N-1
goes to OUT/seed-K/ and sets

  * train.seed = K (weight initialisation, batch order), and
  * data.options.seed = K for a data set drawn from a seed (the synthetic presets: they declare
    `data.options.seed` among their registered defaults), so each repeat also draws fresh data.

A data set read from your own files is the same in every repeat; only training varies. Whatever a
config file or `--set` gave for these two keys is replaced by K.

The spread is the sample standard deviation over seeds (n - 1 in the denominator), 0 for one seed.

Several demo seeds write OUT/summary.json in this shape (each per-seed summary has the one-seed
shape typed in summary.py; `mean` and `std` mirror its `methods` and `probe` sections):

  {"dataset": ..., "modalities": [...], "seeds": ["seed-0", "seed-1", ...],
   "mean": {"methods": {name: {"val_acc", "test_acc"}}, "probe": {encoder: {modality: acc}}},
   "std": {same keys as mean},
   "guide_choices": {"seed-0": "ume", ...},
   "per_seed": {"seed-0": <one-seed summary>, ...}}
"""

from __future__ import annotations

import statistics
from pathlib import Path
from typing import Any, Iterator

from . import distributed
from .config import RunConfig
from .pipeline import run_pipeline
from .errors import ConfigError, RunFolderError
from .storage import write_json

SEED_PREFIX = "seed-"


def seed_config(base: RunConfig, seed: int) -> RunConfig:
    update: dict[str, Any] = {"train": base.train.model_copy(update={"seed": seed})}
    if "seed" in base.data.options:
        update["data"] = base.data.model_copy(update={"options": {**base.data.options, "seed": seed}})
    return base.model_copy(update=update, deep=True)


def each_seed(base: RunConfig, out: str | Path, n: int) -> Iterator[tuple[str, RunConfig, Path]]:
    """(label, config, folder) for seeds 0 .. n-1."""
    if n < 1:
        raise ConfigError(f"--seeds {n}: expected a number of seeds of at least 1")
    for seed in range(n):
        label = f"{SEED_PREFIX}{seed}"
        yield label, seed_config(base, seed), Path(out) / label


def seed_folders(root: str | Path) -> list[Path]:
    """The seed-K subfolders of `root`, in order of K."""
    found = [(int(p.name[len(SEED_PREFIX):]), p) for p in Path(root).glob(f"{SEED_PREFIX}*")
             if p.is_dir() and p.name[len(SEED_PREFIX):].isdigit()]
    return [path for _, path in sorted(found)]


def mean_std(values: list[float]) -> tuple[float, float]:
    return statistics.fmean(values), statistics.stdev(values) if len(values) > 1 else 0.0


def mean_and_std(trees: list[dict[str, Any]]) -> tuple[dict[str, Any], dict[str, Any]]:
    """Element-wise mean and standard deviation of nested dicts of numbers that share their keys."""
    mean: dict[str, Any] = {}
    std: dict[str, Any] = {}
    for key, value in trees[0].items():
        if isinstance(value, dict):
            mean[key], std[key] = mean_and_std([tree[key] for tree in trees])
        else:
            mean[key], std[key] = mean_std([tree[key] for tree in trees])
    return mean, std


def aggregate_summaries(per_seed: dict[str, dict[str, Any]]) -> dict[str, Any]:
    """The several-seed summary (shape in the module docstring) from one-seed summaries by label."""
    labels = list(per_seed)
    first = per_seed[labels[0]]
    for label, summary in per_seed.items():
        for key in ("dataset", "modalities"):
            if summary[key] != first[key]:
                raise RunFolderError(f"cannot aggregate seeds of different data: {labels[0]} has {key} {first[key]!r}, {label} has {summary[key]!r}")
        for section in ("methods", "probe"):
            if summary[section].keys() != first[section].keys():
                raise RunFolderError(f"cannot aggregate {section!r} across seeds: {labels[0]} has {sorted(first[section])}, {label} has {sorted(summary[section])}")
    mean, std = mean_and_std([{"methods": s["methods"], "probe": s["probe"]} for s in per_seed.values()])
    return {
        "dataset": first["dataset"],
        "modalities": first["modalities"],
        "seeds": labels,
        "mean": mean,
        "std": std,
        "guide_choices": {label: s["guide"]["choice"] for label, s in per_seed.items()},
        "per_seed": per_seed,
    }


def run_demo_seeds(base: RunConfig, out: str | Path, n: int, *, method_options: dict[str, dict[str, Any]] | None = None,
                   methods: list[str] = (), log=print) -> dict[str, Any]:
    """The whole demo pipeline once per seed, into OUT/seed-K/, then OUT/summary.json over all of them."""
    per_seed = {}
    for label, config, folder in each_seed(base, out, n):
        log(f"{label} (train.seed={config.train.seed}, data.options.seed={config.data.options.get('seed', 'n/a')}):")
        per_seed[label] = run_pipeline(config, folder, method_options=method_options, methods=methods, log=log)
    summary = aggregate_summaries(per_seed)
    if distributed.is_main():
        write_json(Path(out) / "summary.json", summary)
    return summary
