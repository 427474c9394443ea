"""`latefusion compare RUN...`: finished runs of different settings side by side.

One row per run: the config keys in which the runs differ, as each run ran (the encoder the data set
chose where the config leaves it out; the runs a run learned from as paths from its own folder; an
empty section is no setting; the keys all of them share and the neutral keys of config.flat_config
are left out), the data fingerprint of each run when they were trained on different data
(result.json), then validation and test accuracy and macro-F1 from result.json, then the
linear-probe test accuracy of each modality where the run was probed (probe.json). The text table
fits a width (100 characters by default): runs are named from their common folder, and a table too
wide shows the scores first and the settings in further tables, each as wide as fits. CSV and JSON
(FORMATS) hold the same, whole. Seeds of one setting are averaged by `latefusion report`, not here.
"""

from __future__ import annotations

import csv
import io
import json
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from .config import flat_config
from .errors import RunFolderError
from .models import encoder_config
from .runs import RunDir
from .seeds import seed_folders
from .storage import read_json

SCORES = (("val_acc", "val acc"), ("test_acc", "test acc"), ("val_macro_f1", "val F1"), ("test_macro_f1", "test F1"))
MAX_CELL = 40
DATA_COLUMN = "data fingerprint"  # shown as a column when the runs' data differ
WIDTH = 100
ENCODERS_PREFIX = "model.encoders."


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


def run_settings(run: RunDir, modalities: list[str]) -> dict[str, Any]:
    """The run's flat config as it ran: the encoder of each of its modalities (the data set's choice
    where the config names none), other runs' folders as paths from this one, empty sections left out."""
    config = run.config()
    spec = run.spec()
    settings = {}
    for key, value in flat_config(config).items():
        if value == {}:
            continue
        if isinstance(value, str) and os.path.isabs(value) and RunDir(value).config_file.is_file():
            value = os.path.relpath(value, run.path.resolve())
        settings[key] = value
    for modality in modalities:
        chosen = encoder_config(spec, config.model, modality)
        settings[f"{ENCODERS_PREFIX}{modality}.name"] = chosen.name
        settings.update({f"{ENCODERS_PREFIX}{modality}.options.{k}": v for k, v in flat_config(chosen.options).items()})
    return settings


def compare_runs(paths: list[str | Path]) -> Comparison:
    """Read each run folder's config, result and probe (a demo folder, of one seed or several, stands
    for its runs); raises RunFolderError for a folder that is not a finished run, naming it."""
    if not paths:
        raise RunFolderError("compare needs at least one run folder")
    paths = [run for path in paths for run in run_folders(path)]
    configs, scores, data = [], [], []
    for path in paths:
        run = RunDir(path)
        result = run.result()
        configs.append(run_settings(run, result.get("modalities") or run.spec().modality_names))
        scores.append({key: result[key] for key, _ in SCORES if key in result} | run_probe(run))
        data.append(result.get("fingerprints", {}).get("data"))
    keys = sorted(set().union(*configs))
    differing = [k for k in keys if differs(k, configs)]
    if len(set(data)) > 1:  # the same config may read data whose contents changed between the runs
        differing.insert(0, DATA_COLUMN)
        for config, fingerprint in zip(configs, data):
            config[DATA_COLUMN] = fingerprint
    probe_columns = sorted({k for s in scores for k in s if k.startswith("probe:")})
    return Comparison([str(p) for p in paths], differing, [{k: c.get(k) for k in differing} for c in configs], scores, probe_columns)


def differs(key: str, configs: list[dict[str, Any]]) -> bool:
    """Whether the runs differ in `key`; a modality's encoder is compared between the runs that have
    that modality (a uni-modal run has one), so a run without it is no difference."""
    encoder = key.startswith(ENCODERS_PREFIX)
    return len({repr(c.get(key)) for c in configs if key in c or not encoder}) > 1


def cell(value: Any) -> str:
    text = "-" if value is None else str(value)
    return text if len(text) <= MAX_CELL else "\u2026" + text[-(MAX_CELL - 1):]


def run_names(runs: list[str]) -> tuple[list[str], str | None]:
    """Each run's path from the folder all of them are in, and that folder (None: the paths as given)."""
    if len(runs) < 2:
        return runs, None
    folder = os.path.commonpath([os.path.abspath(run) for run in runs])
    names = [os.path.relpath(os.path.abspath(run), folder) for run in runs]
    return (runs, None) if "." in names else (names, folder)


def text_table(columns: list[tuple[str, list[str]]]) -> list[str]:
    widths = [max(len(text) for text in [title, *cells]) for title, cells in columns]
    rows = [[title for title, _ in columns], ["-" * w for w in widths], *zip(*(cells for _, cells in columns))]
    return ["  ".join(text.ljust(width) for text, width in zip(row, widths)).rstrip() for row in rows]


def format_table(comparison: Comparison, width: int = WIDTH) -> str:
    """A plain-text table, accuracies and F1 in percent, in at most `width` characters where the cells
    allow (a column wider than that gets a table of its own)."""
    names, folder = run_names(comparison.runs)
    settings = [(key, [cell(settings[key]) for settings in comparison.settings]) for key in comparison.differing]
    scores = [(title, [f"{scores[key] * 100:.1f}" if key in scores else "-" for scores in comparison.scores])
              for key, title in [*SCORES, *((p, p) for p in comparison.probe_columns)]]
    name_column = ("run", names)
    tables: list[list[tuple[str, list[str]]]] = [[name_column, *settings, *scores]]
    if max(map(len, text_table(tables[0]))) > width:  # the scores first, then the settings, as many tables as needed
        tables = [[name_column]]
        for column in [*scores, *settings]:
            if len(tables[-1]) > 1 and max(map(len, text_table([*tables[-1], column]))) > width:
                tables.append([name_column])
            tables[-1].append(column)
    blocks = ["\n".join(text_table(table)) for table in tables]
    same_config = [k for k in comparison.differing if k != DATA_COLUMN] == [] and len(comparison.runs) > 1
    data_differ = DATA_COLUMN in comparison.differing
    note = ("(the runs' configs are the same, neutral keys aside" + ("; their data differ: see the data fingerprints)" if data_differ else ")")
            if same_config else "")
    return "\n\n".join([*([f"runs in {folder}"] if folder else []), *blocks, *([note] if note else [])]) + "\n"


def rows(comparison: Comparison) -> list[dict[str, Any]]:
    """One record per run: its path, its differing settings, its scores (fractions, as result.json holds them)."""
    return [{"run": run, "settings": settings, "scores": scores}
            for run, settings, scores in zip(comparison.runs, comparison.settings, comparison.scores)]


def format_json(comparison: Comparison) -> str:
    return json.dumps(rows(comparison), indent=2) + "\n"


def format_csv(comparison: Comparison) -> str:
    score_keys = [*(key for key, _ in SCORES), *comparison.probe_columns]
    text = io.StringIO()
    writer = csv.writer(text, lineterminator="\n")
    writer.writerow(["run", *comparison.differing, *score_keys])
    for record in rows(comparison):
        settings = [json.dumps(v) if isinstance(v, (list, dict)) else "" if v is None else v
                    for v in (record["settings"][k] for k in comparison.differing)]
        writer.writerow([record["run"], *settings, *(record["scores"].get(k, "") for k in score_keys)])
    return text.getvalue()


# `latefusion compare --format`, besides the text table
FORMATS = {"csv": format_csv, "json": format_json}
