"""How often the guide picks the method that is better on test: over seeds, on the synthetic presets,
a bring-your-own case and (from an existing demo folder) the embedded avdigits; prints a table.

    OMP_NUM_THREADS=1 python bench/guide_accuracy.py --seeds 0 1 2 3 4 --out runs/guide-accuracy \\
        --demo avdigits=runs/demo-avdigits-5seeds

Per data set and seed it runs the demo's paper set (uni-modal runs, naive, UME, UMT; finished runs are
reused) and compares the guide's choice, made on validation, with the better of UME and UMT on test.
The bring-your-own case is bench/umt_forms.py's generated .npz (a strong and a weak modality, and two
classes told apart only by the two together). `--demo NAME=FOLDER` adds the seeds of a finished
`latefusion demo --seeds N` folder instead of running them.
"""

from __future__ import annotations

import argparse
import importlib.util
import json
from pathlib import Path

import torch

from latefusion.pipeline import run_pipeline
from latefusion.resolve import resolve_config
from latefusion.seeds import seed_folders


def write_byo(path: Path, seed: int) -> None:
    spec = importlib.util.spec_from_file_location("umt_forms", Path(__file__).with_name("umt_forms.py"))
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    module.write_byo(path, seed)


def summaries(data: str, seeds: list[int], out: Path) -> list[dict]:
    found = []
    for seed in seeds:
        common = [f"train.seed={seed}", "train.progress=false"]
        if data == "byo":
            path = out / data / f"byo-{seed}.npz"
            path.parent.mkdir(parents=True, exist_ok=True)
            write_byo(path, seed)
            config = resolve_config(None, ["data.name=folder", f"data.path={path}", "train.epochs=30", *common])
        else:
            config = resolve_config(None, [f"data.name={data}", f"data.options.seed={seed}", *common])
        found.append(run_pipeline(config, out / data / f"seed-{seed}", log=lambda *_: None))
    return found


def row(name: str, found: list[dict]) -> str:
    picks, right, margins = [], 0, []
    for summary in found:
        choice = summary["guide"]["choice"]
        ume, umt = summary["methods"]["ume"]["test_acc"], summary["methods"]["umt"]["test_acc"]
        better = "umt" if umt > ume else "ume" if ume > umt else "tie"
        picks.append(f"{choice.upper()}{'' if better in (choice, 'tie') else '*'}")
        right += better in (choice, "tie")
        margins.append(100 * (umt - ume))
    mean = sum(margins) / len(margins)
    return f"| {name} | {len(found)} | {' '.join(picks)} | {right}/{len(found)} | {mean:+.1f} |"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2, 3, 4])
    parser.add_argument("--data", nargs="+", default=["synthetic-unimodal", "synthetic-paired", "byo"])
    parser.add_argument("--demo", action="append", default=[], metavar="NAME=FOLDER")
    parser.add_argument("--out", type=Path, default=Path("runs/guide-accuracy"))
    args = parser.parse_args()
    torch.set_num_threads(1)
    print("| data set | seeds | guide's pick per seed (* = the other was better on test) | right | UMT - UME on test (points, mean) |")
    print("|---|---:|---|---:|---:|")
    for data in args.data:
        print(row(data, summaries(data, args.seeds, args.out)), flush=True)
    for item in args.demo:
        name, _, folder = item.partition("=")
        print(row(name, [json.loads((f / "summary.json").read_text()) for f in seed_folders(folder)]), flush=True)


if __name__ == "__main__":
    main()
