"""`latefusion compare RUN...`: finished runs of different settings side by side.

One row per run: the config keys in which the runs differ (the keys all of them share are left
out, and so are the neutral keys of config.flat_config), the data fingerprint of each run when they
were trained on different data (result.json), then validation and test accuracy and
macro-F1 from result.json, then the linear-probe test accuracy of each modality where the run was
probed (probe.json). Seeds of one setting are averaged by `latefusion report`, not here.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

from .config import flat_config
from .errors import RunFolderError
from .runs import RunDir
from .seeds import seed_folders
from .storage import read_json

SCORES = (("val_acc", "val acc"), ("test_acc", "test acc"), ("val_macro_f1", "val F1"), ("test_macro_f1", "test F1"))
MAX_CELL = 40
DATA_COLUMN = "data fingerprint"  # shown as a column when the runs' data differ


@dataclass
class Comparison:
    runs: list[str]
    differing: list[str]  # config keys whose values differ between the runs, and DATA_COLUMN when their data do
    settings: list[dict[str, Any]]  # per run: differing key -> value
    scores: list[dict[str, float]]  # per run: SCORES keys, and probe:<modality>
    probe_columns: list[str]


def run_probe(run: RunDir) -> dict[str, float]:
    if not run.probe_file.is_file():
        return {}
    stored = read_json(run.probe_file)
    results = stored.get("results", {}) if isinstance(stored, dict) else {}
    return {f"probe:{modality}": r["test_acc"] for modality, r in results.items() if isinstance(r, dict) and "test_acc" in r}


def run_folders(path: str | Path) -> list[Path]:
    """The run folders `path` stands for: itself (a run), the runs of a `latefusion demo` folder, or
    the runs of every seed of a `latefusion demo --seeds N` folder, seed by seed."""
    path = Path(path)
    if RunDir(path).config_file.is_file():
        return [path]
    if seeds := seed_folders(path):
        return [run for seed in seeds for run in run_folders(seed)]
    runs = sorted(p for p in path.iterdir() if RunDir(p).config_file.is_file()) if path.is_dir() else []
    if not runs:
        raise RunFolderError(f"{path} is not a run folder (no config.yaml), nor a `latefusion demo` folder holding runs")
    return runs


def compare_runs(paths: list[str | Path]) -> Comparison:
    """Read each run folder's config, result and probe (a demo folder, of one seed or several, stands
    for its runs); raises RunFolderError for a folder that is not a finished run, naming it."""
    if not paths:
        raise RunFolderError("compare needs at least one run folder")
    paths = [run for path in paths for run in run_folders(path)]
    configs, scores, data = [], [], []
    for path in paths:
        run = RunDir(path)
        configs.append(flat_config(run.config()))
        result = run.result()
        scores.append({key: result[key] for key, _ in SCORES if key in result} | run_probe(run))
        fingerprints = result.get("fingerprints")
        data.append(fingerprints.get("data") if isinstance(fingerprints, dict) else None)
    keys = sorted(set().union(*configs))
    differing = [k for k in keys if len({repr(c.get(k)) for c in configs}) > 1]
    if len(set(data)) > 1:  # the same config may read data whose contents changed between the runs
        differing.insert(0, DATA_COLUMN)
        for config, fingerprint in zip(configs, data):
            config[DATA_COLUMN] = fingerprint
    probe_columns = sorted({k for s in scores for k in s if k.startswith("probe:")})
    return Comparison([str(p) for p in paths], differing, [{k: c.get(k) for k in differing} for c in configs], scores, probe_columns)


def cell(value: Any) -> str:
    text = "-" if value is None else str(value)
    return text if len(text) <= MAX_CELL else "\u2026" + text[-(MAX_CELL - 1):]


def format_table(comparison: Comparison) -> str:
    """A plain-text table, accuracies and F1 in percent."""
    header = ["run", *comparison.differing, *(title for _, title in SCORES), *comparison.probe_columns]
    rows = []
    for run, settings, scores in zip(comparison.runs, comparison.settings, comparison.scores):
        numbers = [f"{scores[k] * 100:.1f}" if k in scores else "-" for k in [*(key for key, _ in SCORES), *comparison.probe_columns]]
        rows.append([run, *(cell(settings[k]) for k in comparison.differing), *numbers])
    widths = [max(len(row[i]) for row in [header, *rows]) for i in range(len(header))]
    lines = ["  ".join(text.ljust(width) for text, width in zip(row, widths)).rstrip() for row in [header, *rows]]
    same_config = [k for k in comparison.differing if k != DATA_COLUMN] == [] and len(comparison.runs) > 1
    data_differ = DATA_COLUMN in comparison.differing
    note = ("\n(the runs' configs are the same, neutral keys aside" + ("; their data differ: see the data fingerprints)" if data_differ else ")")
            if same_config else "")
    return "\n".join([lines[0], "  ".join("-" * w for w in widths), *lines[1:]]) + note
