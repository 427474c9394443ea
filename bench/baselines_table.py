#!/usr/bin/env python3
"""Every method of `latefusion demo --methods all` on each data set, over several training seeds:
prints one markdown table per data set, mean ± std over the seeds of test accuracy, macro-F1, each
modality's accuracy (a joint model's accuracy from that modality's share of its scores; a uni-modal
run's own accuracy), each encoder's linear-probe accuracy, and the wall time relative to naive fusion.

    OMP_NUM_THREADS=1 .venv/bin/python bench/baselines_table.py --data synthetic-unimodal synthetic-paired --seeds 0 1 2 3 4

Each (data set, seed) is one demo pipeline in `--out/<data>/seed<k>` (finished runs are reused, so an
interrupted table resumes; a reused run keeps the wall time it was trained in). The seed is
`train.seed` (initialisation and batch order); the data set itself is the same for every seed.
Defaults of each data set and method are used unchanged.
"""

from __future__ import annotations

import argparse
from pathlib import Path

from latefusion.pipeline import baseline_methods, run_experiment
from latefusion.resolve import resolve_config
from latefusion.stats import mean_std
from latefusion.summary import UNIMODAL


def percent_mean_std(values: list[float]) -> str:
    mean, std = mean_std(values)
    return f"{100 * mean:.1f} ± {100 * std:.1f}"


def ratio_mean_std(values: list[float]) -> str:
    mean, std = mean_std(values)
    return f"{mean:.2f} ± {std:.2f}"


def collect(data: str, seeds: list[int], out: Path, quick: bool = False) -> tuple[dict[str, dict[str, list[float]]], list[str]]:
    """method -> {"test", "f1", "acc:<modality>", "probe:<modality>", "time": [one per seed]}, and the modalities."""
    rows: dict[str, dict[str, list[float]]] = {}
    for seed in seeds:
        base = resolve_config(None, [f"data.name={data}", f"train.seed={seed}", "train.progress=false"], quick=quick)
        experiment = run_experiment(base, out / data / f"seed{seed}", methods=baseline_methods(), log=lambda *_: None)
        naive_time = experiment.runs["naive"]["wall_time_s"]
        for name, result in experiment.runs.items():
            row = rows.setdefault(name, {})
            row.setdefault("test", []).append(result["test_acc"])
            row.setdefault("f1", []).append(result["test_macro_f1"])
            row.setdefault("time", []).append(result["wall_time_s"] / naive_time)
            if name.startswith(f"{UNIMODAL}:"):  # a uni-modal run: its own modality's accuracy and encoder
                modality = name.split(":", 1)[1]
                row.setdefault(f"acc:{modality}", []).append(result["test_acc"])
            for modality, acc in result.get("test_acc_by_modality", {}).items():
                row.setdefault(f"acc:{modality}", []).append(acc)
            for modality, probe in experiment.probes.get(name, {}).items():
                row.setdefault(f"probe:{modality}", []).append(probe["test_acc"])
        print(f"  {data} seed {seed} done", flush=True)
    return rows, experiment.modalities


def render(rows: dict[str, dict[str, list[float]]], modalities: list[str]) -> str:
    header = ["method", "test acc", "macro-F1", *(f"acc {m}" for m in modalities), *(f"probe {m}" for m in modalities), "time / naive"]
    lines = ["| " + " | ".join(header) + " |", "|---|" + "---:|" * (len(header) - 1)]
    for method, row in rows.items():
        cells = [method, percent_mean_std(row["test"]), percent_mean_std(row["f1"])]
        cells += [percent_mean_std(row[f"{kind}:{m}"]) if f"{kind}:{m}" in row else "—" for kind in ("acc", "probe") for m in modalities]
        cells.append(ratio_mean_std(row["time"]))
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--data", nargs="+", default=["synthetic-unimodal", "synthetic-paired"])
    parser.add_argument("--seeds", nargs="+", type=int, default=[0, 1, 2, 3, 4])
    parser.add_argument("--out", type=Path, default=Path("runs/bench-baselines"))
    parser.add_argument("--quick", action="store_true", help="each data set's --quick settings (fewer epochs)")
    args = parser.parse_args()
    for data in args.data:
        rows, modalities = collect(data, args.seeds, args.out / "quick" if args.quick else args.out, args.quick)
        print(f"\n{data}{' (--quick settings)' if args.quick else ''}: test accuracy, macro-F1, per-modality and linear-probe test accuracy (%), and wall time relative "
              f"to naive fusion, mean ± std over train.seed in {args.seeds}:\n")
        print(render(rows, modalities))


if __name__ == "__main__":
    main()
