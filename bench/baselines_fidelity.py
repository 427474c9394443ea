#!/usr/bin/env python3
"""The four baselines in their source-faithful forms (docs/methods.md, "Baselines as their sources
define them"), against naive fusion and against the variants the fixes replaced where an option
still gives them, over several seeds on a synthetic preset's quick settings. Prints a markdown table
(test accuracy, wall time) and G-Blending's per-super-epoch weights.

    OMP_NUM_THREADS=1 PYTHONPATH=src python bench/baselines_fidelity.py --data synthetic-paired --seeds 0 1 2

`train.seed` and `data.options.seed` are both the seed. Finished runs in `--out` are reused.
"""

from __future__ import annotations

import argparse
import json
import statistics
from pathlib import Path

from latefusion.resolve import resolve_config
from latefusion.train import train

VARIANTS = {
    "naive": ["method.name=naive"],
    "gblend": ["method.name=gblend"],
    "gblend (estimate_epochs 1)": ["method.name=gblend", "method.options.estimate_epochs=1"],
    "ogm_ge (alpha 0.1)": ["method.name=ogm_ge"],
    "ogm_ge (alpha 0.3, old default)": ["method.name=ogm_ge", "method.options.alpha=0.3"],
    "mmpareto": ["method.name=mmpareto"],
    "mla": ["method.name=mla"],
    "mla (forget 0: never-forgetting projector)": ["method.name=mla", "method.options.projection_forget=0"],
}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--data", default="synthetic-paired")
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    parser.add_argument("--variants", nargs="*", default=list(VARIANTS))
    parser.add_argument("--out", type=Path, default=Path("runs/bench-fidelity"))
    args = parser.parse_args()
    rows: dict[str, dict[str, list[float]]] = {}
    for seed in args.seeds:
        for name in args.variants:
            folder = args.out / args.data / f"seed{seed}" / name.replace(" ", "_").replace(":", "").replace("(", "").replace(")", "")
            if (folder / "result.json").exists():
                result = json.loads((folder / "result.json").read_text())
            else:
                config = resolve_config(None, [f"data.name={args.data}", f"data.options.seed={seed}", f"train.seed={seed}",
                                               "train.progress=false", *VARIANTS[name]], quick=True)
                result = train(config, folder)
            row = rows.setdefault(name, {})
            row.setdefault("test", []).append(100 * result["test_acc"])
            row.setdefault("time", []).append(result["wall_time_s"])
            if name == "gblend":
                history = [json.loads(line) for line in (folder / "metrics.jsonl").read_text().splitlines() if line.strip()]
                weights = [(h["epoch"], *(round(h[f"train_w_{k}"], 3) for k in ("a", "b", "fused"))) for h in history]
                print(f"seed {seed} gblend weights (epoch, a, b, fused): {weights}", flush=True)
            print(f"seed {seed} {name}: test {100 * result['test_acc']:.1f}, {result['wall_time_s']:.1f} s", flush=True)

    def cell(values: list[float], digits: int = 1) -> str:
        std = statistics.stdev(values) if len(values) > 1 else 0.0
        return f"{statistics.mean(values):.{digits}f} ± {std:.{digits}f}"

    print(f"\n{args.data}, quick settings, seeds {args.seeds}\n")
    print("| method | test acc (%) | wall time (s) |\n|---|---:|---:|")
    for name, row in rows.items():
        print(f"| {name} | {cell(row['test'])} | {cell(row['time'])} |")


if __name__ == "__main__":
    main()
