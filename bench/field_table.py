#!/usr/bin/env python3
"""Every method (uni-modal, naive, UME, UMT and every registered baseline) on one prepared data set of
the field's benchmarks, over several training seeds, beside the accuracy BalanceBenchmark published:

    .venv/bin/python bench/field_table.py --prepared data/crema-d --data crema-d --seeds 0 1 2

prints a markdown table of test accuracy and test macro-F1 (%, mean ± std over the seeds) per method,
the published accuracy of the same method beside it, and under the table how the two protocols differ.

Our runs. The recipe is the data set's: `configs/<NAME>/base.yaml` when it exists (read with
`resolve_config(base.yaml, ["data.path=DIR", ...])`), else the data set's registered defaults; then
the `--set KEY=VALUE` overrides. Each method's options are those of `configs/<NAME>/<method>.yaml` when
that file exists (UMT's weight 10, UME's probability average...), less the run folders the pipeline
fills itself (UME's members, UMT's teachers), then `--method-option METHOD.KEY=VALUE`. The device is
the config's `train.device` (`auto`: the GPU when there is one). Each seed K is one demo pipeline
(`latefusion demo --methods all`, pipeline.run_pipeline) in `--out/<NAME>/seed-K` with `train.seed=K`
(initialisation and batch order); the prepared folder, and so the split, is the same for every seed.
Finished runs are reused, so an interrupted table resumes; runs configured otherwise are refused
(use another `--out`). `latefusion report --out ... OUT/<NAME>` makes the usual report of the folder.

Published numbers. BalanceBenchmark (Xu et al., 2025: "BalanceBenchmark: A Survey for Multimodal
Imbalance Learning", arXiv 2502.10816; repository GeWu-Lab/BalanceBenchmark), its results figure
(an image in the repository), top-1 test accuracy (%), transcribed by hand into the dicts below, one
per data set. CREMA-D: baseline 65.50, UMT 67.47, OGM 67.76, MMPareto 79.97, MLA 72.30,
G-Blending 71.59, AGM 71.59, PMR 67.19, MMCosine 67.19, LFM 70.02, Re-learning 71.02, ReconBoost
74.01, OPM 68.75, Greedy 66.48. Kinetics-Sounds: baseline 65.63, UMT 68.60, OGM 67.04, MMPareto
74.55, MLA 69.05, G-Blending 68.82, AGM 66.62, PMR 67.11, MMCosine 67.49, LFM 66.37, Re-learning
65.92, ReconBoost 68.38, OPM 66.89, Greedy 66.82. UME, G2D, InfoReg, Data Remixing and the TPAMI OGM
are not among its methods ("–"); its "OGM" trainer is the CVPR OGM-GE. Its names map to ours as
`THEIR_NAMES` says (its "baseline" is our `naive`, its "OGM" our `ogm_ge`). VGG-Sound and UCF101:
only the late-fusion and UMT figures docs/datasets.md quotes. No other data set's figure was
transcribed: those rows print "–".
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import Any

from latefusion.config import RunConfig, config_differences, deep_merge, parse_overrides, read_yaml
from latefusion.engine import resolve_device
from latefusion.methods import METHODS
from latefusion.pipeline import baseline_methods, paper_methods, run_pipeline
from latefusion.resolve import resolve_config
from latefusion.seeds import seed_config
from latefusion.stats import mean_std
from latefusion.summary import UNIMODAL

REPO = Path(__file__).resolve().parents[1]
CONFIGS = REPO / "configs"

SOURCE = "BalanceBenchmark (GeWu-Lab/BalanceBenchmark, arXiv 2502.10816)"
SOURCE_DETAIL = f"{SOURCE}, its results figure, top-1 test accuracy (%)"

# Our method name -> the row BalanceBenchmark's figure gives it (None: not one of its methods).
THEIR_NAMES: dict[str, str | None] = {
    "naive": "baseline", "ume": None, "umt": "UMT", "gblend": "G-Blending", "ogm_ge": "OGM",
    "mmpareto": "MMPareto", "mla": "MLA", "pmr": "PMR", "agm": "AGM", "mmcosine": "MMCosine", "lfm": "LFM",
    "relearn": "Re-learning", "reconboost": "ReconBoost", "opm": "OPM", "greedy": "Greedy",
}

# BalanceBenchmark's results figure, CREMA-D column (test accuracy, %), by our method names.
CREMA_D_PUBLISHED: dict[str, float] = {
    "naive": 65.50, "umt": 67.47, "ogm_ge": 67.76, "mmpareto": 79.97, "mla": 72.30,
    "gblend": 71.59, "agm": 71.59, "pmr": 67.19, "mmcosine": 67.19, "lfm": 70.02, "relearn": 71.02,
    "reconboost": 74.01, "opm": 68.75, "greedy": 66.48,
}
# The same figure, Kinetics-Sounds column.
KINETICS_SOUNDS_PUBLISHED: dict[str, float] = {
    "naive": 65.63, "umt": 68.60, "ogm_ge": 67.04, "mmpareto": 74.55, "mla": 69.05,
    "gblend": 68.82, "agm": 66.62, "pmr": 67.11, "mmcosine": 67.49, "lfm": 66.37, "relearn": 65.92,
    "reconboost": 68.38, "opm": 66.89, "greedy": 66.82,
}
# The same source as docs/datasets.md quotes it: late fusion and UMT only.
VGGSOUND_PUBLISHED: dict[str, float] = {"naive": 48.08, "umt": 51.58}
UCF101_PUBLISHED: dict[str, float] = {"naive": 81.80, "umt": 84.18}

PUBLISHED: dict[str, dict[str, float]] = {
    "crema-d": CREMA_D_PUBLISHED,
    "kinetics-sounds": KINETICS_SOUNDS_PUBLISHED,
    "vggsound": VGGSOUND_PUBLISHED,
    "ucf101": UCF101_PUBLISHED,
}
# What is known of the published protocol, per data set, for the notes under the table.
THEIR_SPLIT = {
    "crema-d": "OGM-GE's lists (`data/CREMAD/train.csv`, `test.csv` of GeWu-Lab/OGM-GE_CVPR2022), which split "
               "clips at random, so most actors are in train and test alike",
}
DASH = "–"


def recipe(data: str, prepared: Path, sets: list[str]) -> tuple[RunConfig, str]:
    """The shared sections (data, model, optim, train) and where they came from."""
    base = CONFIGS / data / "base.yaml"
    overrides = [f"data.path={prepared}", "train.progress=false", *sets]
    if base.is_file():
        return resolve_config(base, [f"data.name={data}", *overrides]), str(base.relative_to(REPO))
    return resolve_config(None, [f"data.name={data}", *overrides]), f"the registered defaults of {data!r} (no configs/{data}/base.yaml)"


def recipe_method_options(data: str, methods: list[str]) -> tuple[dict[str, dict[str, Any]], list[str]]:
    """method -> the options of configs/<data>/<method>.yaml, less the run folders the pipeline fills."""
    options, files = {}, []
    for name in [UNIMODAL, *methods]:
        path = CONFIGS / data / f"{name}.yaml"
        if not path.is_file():
            continue
        method = read_yaml(path).get("method") or {}
        if method.get("name", name) != name:
            raise SystemExit(f"{path}: names method {method.get('name')!r}, expected {name!r}")
        filled = {"modality"} if name == UNIMODAL else {METHODS.get(name).unimodal_runs_option}
        kept = {k: v for k, v in (method.get("options") or {}).items() if k not in filled}
        if kept:
            options[name] = kept
        files.append(str(path.relative_to(REPO)))
    return options, files


def check_prepared(prepared: Path, data: str) -> dict[str, Any]:
    """The options the folder was prepared with (prepare.json); refused when it holds another data set."""
    settings = prepared / "prepare.json"
    if not settings.is_file():
        raise SystemExit(f"{prepared} holds no prepare.json: prepare it first (latefusion prepare {data} --src RAW --dst {prepared})")
    stored = json.loads(settings.read_text())
    if stored.get("dataset") != data:
        raise SystemExit(f"{prepared} was prepared as {stored.get('dataset')!r}, not {data!r}")
    return stored.get("options", {})


def collect(base: RunConfig, seeds: list[int], out: Path, method_options: dict[str, dict[str, Any]]) -> dict[str, dict[str, list[float]]]:
    """method -> {"test_acc": [...], "test_macro_f1": [...], "val_acc": [...]} over the seeds."""
    rows: dict[str, dict[str, list[float]]] = {}
    for seed in seeds:
        summary = run_pipeline(seed_config(base, seed), out / f"seed-{seed}", method_options=method_options,
                               methods=baseline_methods(), log=lambda *_: None)
        for name, result in summary["methods"].items():
            for key in ("test_acc", "test_macro_f1", "val_acc"):
                rows.setdefault(name, {}).setdefault(key, []).append(result[key])
        print(f"  {base.data.name} seed {seed} done", file=sys.stderr, flush=True)
    return rows


def percent(values: list[float]) -> str:
    mean, std = mean_std(values)
    return f"{100 * mean:.1f} ± {100 * std:.1f}"


def render_table(data: str, rows: dict[str, dict[str, list[float]]], seeds: list[int], device: str) -> str:
    published = PUBLISHED.get(data, {})
    caption = (f"{data}: test accuracy and test macro-F1 (%), mean ± std over train.seed in {seeds} (ours, device {device}), "
               f"beside {SOURCE_DETAIL}")
    if not published:
        caption += f"; no figure of that source was transcribed for {data}, so its column is {DASH}"
    elif data != "crema-d":
        caption += f"; for {data} only the rows docs/datasets.md quotes ({', '.join(sorted(published))}) were transcribed"
    lines = [f"Table: {caption}.", "",
             "| method | BalanceBenchmark row | test acc (%) | test macro-F1 (%) | BalanceBenchmark acc (%) |",
             "|---|---|---:|---:|---:|"]
    for name, row in rows.items():
        theirs = THEIR_NAMES.get(name) or DASH
        figure = f"{published[name]:.2f}" if name in published else DASH
        lines.append(f"| {name} | {theirs} | {percent(row['test_acc'])} | {percent(row['test_macro_f1'])} | {figure} |")
    return "\n".join(lines)


def describe_split(data: str, options: dict[str, Any]) -> str:
    if options.get("split_lists"):
        return f"ours: the lists in {options['split_lists']} (prepared with split_lists), validation carved from their train list"
    if data == "crema-d":
        return (f"ours: actor-disjoint (prepare seed {options.get('seed')}, {options.get('test_fraction')} of the actors in test, "
                f"validation {options.get('val_fraction')} of the train clips by whole actors); no actor is in two splits, so a "
                f"model cannot lean on a speaker's face or voice it saw in training, and the two splits' numbers are not comparable")
    return f"ours: the splits `latefusion prepare {data}` made (docs/datasets.md; prepare options {options})"


def recipe_statement(source: str) -> str:
    """The `# Recipe:` comment of a base.yaml (where its settings come from), on one line; "" without one."""
    path = REPO / source
    if not path.is_file():
        return ""
    lines, inside = [], False
    for line in path.read_text(encoding="utf-8").splitlines():
        if line.startswith("# Recipe:"):
            inside = True
        elif inside and (not line.startswith("# ") or line.startswith("# tests/")):
            break
        if inside:
            lines.append(line[2:].strip())
    return " ".join(lines).removeprefix("Recipe:").strip()


def describe_recipe(config: RunConfig, unchanged: RunConfig, source: str) -> str:
    encoders = ", ".join(f"{m} {e.name}" + (f" {e.options}" if e.options else "") for m, e in config.model.encoders.items())
    optim = config.optim
    # An encoder's empty options flatten to one key, filled ones to a key per option: not a change of its own.
    changed = [line for line in config_differences(unchanged, config) if not line.endswith((": {} -> None", ": None -> {}"))]
    statement = recipe_statement(source)
    return (f"ours: {source}" + (f" (its recipe: {statement})" if statement else "")
            + (f", changed by --set ({'; '.join(changed)})" if changed else ", unchanged")
            + f": encoders {encoders}, from scratch unless a weights option names a file; feature_dim {config.model.feature_dim}, "
              f"fusion {config.model.fusion}, epochs {config.train.epochs}, batch {config.data.batch_size}, "
              f"{optim.name} lr {optim.lr}, schedule {optim.schedule}")


def render_notes(data: str, config: RunConfig, unchanged: RunConfig, source: str, prepared_options: dict[str, Any],
                 method_files: list[str], method_options: dict[str, dict[str, Any]], seeds: list[int]) -> str:
    frames = prepared_options.get("frames")
    their_split = THEIR_SPLIT.get(data, "not transcribed here")
    notes = [
        "Protocol differences (ours against the published column):",
        "- Model selection: theirs on the test split; ours on "
        "validation (the checkpoint of the best validation accuracy), the test split evaluated once.",
        f"- Split: theirs {their_split}; {describe_split(data, prepared_options)}.",
        f"- Recipe: {describe_recipe(config, unchanged, source)}"
        + (f"; {frames} frame(s) per clip stored" if frames is not None else "")
        + ". Theirs: BalanceBenchmark's own encoders, epochs and preprocessing"
        + (" (its CREMA-D loader reads 2 frames per clip)" if data == "crema-d" else "")
        + ", not transcribed here; the recipe's own sources are in its comments.",
        f"- Method options: {', '.join(method_files) if method_files else 'the methods’ defaults'}"
        + (f" ({json.dumps(method_options, sort_keys=True)})" if method_options else "")
        + "; theirs: BalanceBenchmark's per-method settings.",
        f"- Seeds: ours train.seed in {seeds} (initialisation and batch order); the prepared data and its split are the "
        f"same for every seed; ± is the sample std over seeds (0 for one seed). Theirs: one number per method; how many "
        f"runs it stands for was not transcribed.",
    ]
    return "\n".join(notes)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--prepared", type=Path, required=True, help="a folder `latefusion prepare NAME` wrote")
    parser.add_argument("--data", required=True, metavar="NAME", help="its data set, e.g. crema-d")
    parser.add_argument("--seeds", nargs="+", type=int, default=[0, 1, 2])
    parser.add_argument("--set", dest="sets", action="append", default=[], metavar="KEY=VALUE", help="a config override, as on `latefusion train`")
    parser.add_argument("--method-option", dest="method_options", action="append", default=[], metavar="METHOD.KEY=VALUE",
                        help="an option for one method, e.g. --method-option umt.weight=50")
    parser.add_argument("--out", type=Path, default=Path("runs/field-table"))
    args = parser.parse_args(argv)

    prepared_options = check_prepared(args.prepared, args.data)
    config, source = recipe(args.data, args.prepared.resolve(), args.sets)
    options, method_files = recipe_method_options(args.data, [*paper_methods(), *baseline_methods()])
    options = deep_merge(options, parse_overrides(args.method_options))
    device = str(resolve_device(config.train.device))
    rows = collect(config, args.seeds, args.out / args.data, options)
    print(render_table(args.data, rows, args.seeds, device))
    print()
    unchanged, _ = recipe(args.data, args.prepared.resolve(), [])
    print(render_notes(args.data, config, unchanged, source, prepared_options, method_files, options, args.seeds))


if __name__ == "__main__":
    main()
