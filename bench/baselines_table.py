#!/usr/bin/env python3
"""Every method of `latefusion demo --methods all` on each data set, over several training seeds:
prints a markdown table of test accuracy and per-modality linear-probe accuracy, mean ± std.

    OMP_NUM_THREADS=1 .venv/bin/python bench/baselines_table.py --data synthetic-unimodal synthetic-paired --seeds 0 1 2

Each (data set, seed) is one demo pipeline in `--out/<data>/seed<k>` (finished runs are reused, so an
interrupted table resumes). The seed is `train.seed` (initialisation and batch order); the data set
itself is the same for every seed. Defaults of each data set and method are used unchanged.
"""

from __future__ import annotations

import argparse
from pathlib import Path

from latefusion.resolve import resolve_config
from latefusion.pipeline import baseline_methods, run_pipeline
from latefusion.stats import mean_std


def percent_mean_std(values: list[float]) -> str:
    mean, std = mean_std(values)
    return f"{100 * mean:.1f} ± {100 * std:.1f}"


def collect(data: str, seeds: list[int], out: Path) -> dict[str, dict[str, list[float]]]:
    """method -> {"test": [...], "probe:<modality>": [...]} over the seeds."""
    rows: dict[str, dict[str, list[float]]] = {}
    for seed in seeds:
        base = resolve_config(None, [f"data.name={data}", f"train.seed={seed}", "train.progress=false"])
        summary = run_pipeline(base, out / data / f"seed{seed}", methods=baseline_methods(), log=lambda *_: None)
        probes = summary["probe"]
        for name, result in summary["methods"].items():
            row = rows.setdefault(name, {})
            row.setdefault("test", []).append(result["test_acc"])
            # A uni-modal run has the encoder of its own modality only; UME's encoders are those runs'.
            if name.startswith("unimodal:"):
                modality = name.split(":", 1)[1]
                row.setdefault(f"probe:{modality}", []).append(probes["unimodal"][modality])
            elif name in probes:
                for modality, acc in probes[name].items():
                    row.setdefault(f"probe:{modality}", []).append(acc)
        print(f"  {data} seed {seed} done", flush=True)
    return rows


def render(tables: dict[str, dict[str, dict[str, list[float]]]], modalities: dict[str, list[str]]) -> str:
    header = ["method"]
    for data, names in modalities.items():
        header += [f"{data} test"] + [f"probe {m}" for m in names]
    lines = ["| " + " | ".join(header) + " |", "|---|" + "---:|" * (len(header) - 1)]
    methods = list(next(iter(tables.values())))
    for method in methods:
        cells = [method]
        for data, names in modalities.items():
            row = tables[data].get(method, {})
            cells.append(percent_mean_std(row["test"]) if "test" in row else "—")
            cells += [percent_mean_std(row[f"probe:{m}"]) if f"probe:{m}" in row else "—" for m in names]
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--data", nargs="+", default=["synthetic-unimodal", "synthetic-paired"])
    parser.add_argument("--seeds", nargs="+", type=int, default=[0, 1, 2])
    parser.add_argument("--out", type=Path, default=Path("runs/bench-baselines"))
    args = parser.parse_args()
    tables, modalities = {}, {}
    for data in args.data:
        tables[data] = collect(data, args.seeds, args.out)
        modalities[data] = sorted({key.split(":", 1)[1] for row in tables[data].values() for key in row if key.startswith("probe:")})
    print(f"\nTest accuracy and linear-probe test accuracy (%), mean ± std over train.seed in {args.seeds}:\n")
    print(render(tables, modalities))


if __name__ == "__main__":
    main()
