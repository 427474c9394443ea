"""Compare UMT distillation forms on the synthetic presets over several seeds; prints a markdown table.

    OMP_NUM_THREADS=1 python scripts/compare_umt_forms.py --seeds 0 1 2 3 4 5 --out runs/umt-forms

Per preset and seed it runs the demo pipeline once (uni-modal, naive, UME and the default UMT) and
then each extra UMT form against the same uni-modal teachers. Columns: test accuracy of naive, UME
and UMT, the UMT - naive difference, and the UMT encoders' probe minus the uni-modal encoders'
probe (mean over modalities), all in points, mean +- std over seeds.
"""

from __future__ import annotations

import argparse
import statistics
from pathlib import Path

import torch

from latefusion.resolve import resolve_config
from latefusion.data import build_dataset
from latefusion.pipeline import method_config, run_pipeline
from latefusion.probe import probe_run
from latefusion.stats import mean_std
from latefusion.train import train

FORMS = {
    "projected, init teacher, weight 1 (default)": {},
    "plain, init teacher, weight 1": {"distill": "plain"},
    "plain, init scratch, weight 10 (BalanceMM's form)": {"distill": "plain", "init": "scratch", "weight": 10.0},
}


def signed_mean_std(values: list[float]) -> str:
    mean, std = mean_std(values)
    return f"{mean:+.1f} ± {std:.1f}" if len(values) > 1 else f"{mean:+.1f}"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    parser.add_argument("--out", type=Path, default=Path("runs/umt-forms"))
    args = parser.parse_args()
    torch.set_num_threads(1)
    print("| preset | UMT form | naive | UME | UMT | UMT - naive | UMT probe - uni-modal probe |")
    print("|---|---|---:|---:|---:|---:|---:|")
    for preset in ("synthetic-unimodal", "synthetic-paired"):
        rows: dict[str, dict[str, list[float]]] = {form: {} for form in FORMS}
        for seed in args.seeds:
            base = resolve_config(None, [f"data.name={preset}", f"data.options.seed={seed}", f"train.seed={seed}", "train.progress=false"], quick=True)
            folder = args.out / f"{preset}-{seed}"
            summary = run_pipeline(base, folder, log=lambda *_: None)
            bundle = build_dataset(base.data)
            teachers = {m: str(folder / f"unimodal-{m}") for m in summary["modalities"]}
            for index, (form, options) in enumerate(FORMS.items()):
                run = folder / ("umt" if index == 0 else f"umt-form{index}")
                result = train(method_config(base, "umt", {"teachers": teachers, **options}), run, resume=True, bundle=bundle)
                probe = probe_run(run, bundle=bundle)
                gap = statistics.mean(probe[m]["test_acc"] - summary["probe"]["unimodal"][m] for m in summary["modalities"])
                values = {"naive": summary["methods"]["naive"]["test_acc"], "ume": summary["methods"]["ume"]["test_acc"],
                          "umt": result["test_acc"], "diff": result["test_acc"] - summary["methods"]["naive"]["test_acc"], "gap": gap}
                for key, value in values.items():
                    rows[form].setdefault(key, []).append(100 * value)
        for form, v in rows.items():
            print(f"| {preset} | {form} | {statistics.mean(v['naive']):.1f} | {statistics.mean(v['ume']):.1f} | "
                  f"{statistics.mean(v['umt']):.1f} | {signed_mean_std(v['diff'])} | {signed_mean_std(v['gap'])} |")


if __name__ == "__main__":
    main()
