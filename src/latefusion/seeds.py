"""Repeating a run over seeds, and the mean and spread of what the repeats measured.

The rule for `--seeds N` (on `latefusion train` and `latefusion demo`): repeat K = 0, 1, ..., N-1
goes to OUT/seed-K/ and sets

  * train.seed = K (weight initialisation, batch order), and
  * data.options.seed = K for a data set drawn from a seed (the synthetic presets: they declare
    `data.options.seed` among their registered defaults), so each repeat also draws fresh data.

A data set read from your own files is the same in every repeat; only training varies. Whatever a
config file or `--set` gave for these two keys is replaced by K.

The spread is the sample standard deviation over seeds (n - 1 in the denominator), 0 for one seed.

Only repeats are averaged: folders whose runs were configured differently beyond these two seed keys
are refused, naming the keys that differ (`check_same_settings`; paths into a run's own seed folder,
such as UMT's teachers, count as the same). `latefusion compare` is the tool for different settings.

Several demo seeds write OUT/summary.json in this shape (each per-seed summary has the one-seed
shape typed in summary.py; `mean` and `std` mirror its `methods` and `probe` sections):

  {"dataset": ..., "modalities": [...], "seeds": ["seed-0", "seed-1", ...],
   "mean": {"methods": {name: {"val_acc", "test_acc"}}, "probe": {encoder: {modality: acc}}},
   "std": {same keys as mean},
   "guide_choices": {"seed-0": "ume", ...},      (each seed's verdict: ume, umt or inconclusive)
   "guide_pooled": the verdict over the seeds (guide.pooled_verdict; absent for one seed),
   "per_seed": {"seed-0": <one-seed summary>, ...}}
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Iterator

from .config import RunConfig, flat_config, read_yaml
from .errors import ConfigError, RunFolderError
from .guide import PREFER, pooled_verdict
from .runs import RunDir
from .stats import mean_std
from .summary import run_folder_in

SEED_PREFIX = "seed-"
# The config keys a seed sets (see the module docstring): the only ones repeats may differ in.
SEED_KEYS = ("train.seed", "data.options.seed")


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
    """The seed-K subfolders of `root`, in order of K; refused (check_same_settings) when their runs
    were configured differently beyond the seed keys."""
    found = [(int(p.name[len(SEED_PREFIX):]), p) for p in Path(root).glob(f"{SEED_PREFIX}*")
             if p.is_dir() and p.name[len(SEED_PREFIX):].isdigit()]
    folders = [path for _, path in sorted(found)]
    check_same_settings({path.name: path for path in folders})
    return folders


def comparable_settings(folder: Path, run: Path) -> dict[str, Any]:
    """A run's flat config without the seed keys; a path into `folder` (a uni-modal run the method
    uses) is written relative to it, so the same layout in another seed folder compares equal."""
    settings = {}
    for key, value in flat_config(read_yaml(run / "config.yaml")).items():
        if key in SEED_KEYS:
            continue
        if isinstance(value, str) and ("/" in value or "\\" in value):
            parent = Path(value).parent
            if parent.name == folder.name or parent.resolve() == folder.resolve():
                value = f"<seed folder>/{Path(value).name}"
        settings[key] = value
    return settings


def settings_by_run(folder: Path) -> dict[str, dict[str, Any]]:
    return {run.name: comparable_settings(folder, run) for run in sorted(Path(folder).iterdir()) if (run / "config.yaml").is_file()}


def check_same_settings(folders: dict[str, Path]) -> None:
    """Refuse to treat as seeds of one experiment folders whose runs' configs differ beyond SEED_KEYS;
    the message names each differing key, in which run and with which values."""
    if len(folders) < 2:
        return
    (first_label, first), *others = folders.items()
    reference = settings_by_run(Path(first))
    differences = []
    for label, folder in others:
        for run, settings in settings_by_run(Path(folder)).items():
            if run not in reference:
                continue
            old = reference[run]
            differences += [(run, key, f"{run}: {key}: {old.get(key)!r} in {first_label}, {settings.get(key)!r} in {label}")
                            for key in sorted(old.keys() | settings.keys()) if old.get(key) != settings.get(key)]
    if differences:
        keys = sorted({key for _, key, _ in differences})
        shown = "\n  ".join(line for _, _, line in differences[:12]) + (f"\n  ... and {len(differences) - 12} more" if len(differences) > 12 else "")
        raise RunFolderError(f"cannot average {', '.join(folders)} as seeds of one experiment: their runs' configs differ beyond the seed "
                             f"keys ({', '.join(SEED_KEYS)}), in {', '.join(keys)}:\n  {shown}\n"
                             "compare different settings with `latefusion compare RUN...` instead")


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


def aggregate_summaries(per_seed: dict[str, dict[str, Any]], folders: dict[str, Path] | None = None) -> dict[str, Any]:
    """The several-seed summary (shape in the module docstring) from one-seed summaries by label.
    `folders` (label -> the seed's demo folder), when given, are first checked to be repeats of one
    configuration (check_same_settings)."""
    if folders is not None:
        check_same_settings(folders)
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
        "guide_choices": {label: s["guide"].get("verdict", s["guide"]["choice"]) for label, s in per_seed.items()},
        **({"guide_pooled": pooled} if folders and (pooled := pooled_guide({label: s["guide"] for label, s in per_seed.items()}, folders)) else {}),
        "per_seed": per_seed,
    }


def pooled_guide(verdicts: dict[str, dict[str, Any]], folders: dict[str, Path], prefer: str | None = None) -> dict[str, Any] | None:
    """The guide's verdict over the seeds (guide.pooled_verdict) from each seed's one-seed verdict and
    its runs' saved validation predictions; None for one seed or for runs without predictions.
    `prefer`: the near-tie preference; by default the one the seeds' verdicts declare (else PREFER)."""
    declared = {v.get("evidence", {}).get("prefer", PREFER) for v in verdicts.values()}
    prefer = prefer or (declared.pop() if len(declared) == 1 else PREFER)
    correct, data = {}, set()
    for label, folder in folders.items():
        runs = {key: RunDir(run_folder_in(folder, key)) for key in ("naive", "ume", "umt")}
        runs = {key: run for key, run in runs.items() if run.is_finished()}
        if not all(run.predictions_file.is_file() for run in runs.values()):
            return None
        correct[label] = {key: run.predictions()["val"].correct for key, run in runs.items()}
        data.add(runs["ume"].result().get("fingerprints", {}).get("data"))
    return pooled_verdict(verdicts, correct, same_samples=len(data) == 1, prefer=prefer)
