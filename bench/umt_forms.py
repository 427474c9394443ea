"""UMT's forms against each other: {plain, projected} distillation x {scratch, teacher} initialisation
x weight {1, 10}, over seeds, on the synthetic presets, the embedded avdigits and a bring-your-own
.npz case; prints one markdown table per data set.

    OMP_NUM_THREADS=1 python bench/umt_forms.py --seeds 0 1 2 3 4 --out runs/umt-forms

Per data set and seed: one uni-modal run per modality (the teachers) and one naive run, then the eight
UMT forms against the same teachers. Columns: test accuracy (%), UMT minus naive, and per modality the
UMT encoder's linear probe minus the uni-modal encoder's (points), mean ± std over seeds. The
bring-your-own case is a generated .npz read through the folder data set: modality `a` carries the
label strongly, `b` weakly, and a third of the classes are told apart only by the two together.
"""

from __future__ import annotations

import argparse
import itertools
from pathlib import Path

import numpy as np
import torch

from latefusion.data import build_dataset
from latefusion.pipeline import method_config
from latefusion.probe import probe_run
from latefusion.resolve import resolve_config
from latefusion.stats import mean_std
from latefusion.train import train

FORMS = [{"distill": d, "init": i, "weight": w} for d, i, w in itertools.product(("plain", "projected"), ("scratch", "teacher"), (1.0, 10.0))]


def write_byo(path: Path, seed: int) -> None:
    """Two 24-d modalities, 6 classes, 1,200 samples: a strong and a weak modality plus a paired rule."""
    rng = np.random.default_rng(1000 + seed)
    n, classes = 1200, 6
    label = rng.integers(0, classes, n)
    proto_a, proto_b = rng.normal(size=(classes, 24)), rng.normal(size=(classes, 24))
    shared = label.copy()
    shared[label == 5] = 4  # classes 4 and 5 share their prototypes: alone, neither modality tells them apart
    a = 0.45 * proto_a[shared] + rng.normal(size=(n, 24))
    b = 0.3 * proto_b[shared] + rng.normal(size=(n, 24))
    sign = rng.choice([-1.0, 1.0], size=n)
    paired = label >= 4  # ... but the product of two signs, one in each modality, does
    a[paired, :4] += 1.5 * sign[paired, None]
    b[paired, :4] += 1.5 * (sign[paired] * np.where(label[paired] == 4, 1, -1))[:, None]
    split = np.array(["train"] * 600 + ["val"] * 300 + ["test"] * 300)
    np.savez(path, label=label, split=split, a=a.astype(np.float32), b=b.astype(np.float32))


def base_config(data: str, seed: int, out: Path):
    common = [f"train.seed={seed}", "train.progress=false"]
    if data == "byo":
        path = out / f"byo-{seed}.npz"
        path.parent.mkdir(parents=True, exist_ok=True)
        write_byo(path, seed)
        return resolve_config(None, ["data.name=folder", f"data.path={path}", "train.epochs=30", *common])
    if data == "avdigits":
        return resolve_config(None, ["data.name=avdigits", *common], quick=True)
    return resolve_config(None, [f"data.name={data}", f"data.options.seed={seed}", "train.epochs=30", *common])


def label(form: dict) -> str:
    return f"{form['distill']}, {form['init']}, weight {form['weight']:g}"


def pm(values: list[float], signed: bool = False) -> str:
    mean, std = mean_std(values)
    return f"{mean:+.1f} ± {std:.1f}" if signed else f"{mean:.1f} ± {std:.1f}"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2, 3, 4])
    parser.add_argument("--data", nargs="+", default=["synthetic-unimodal", "synthetic-paired", "avdigits", "byo"])
    parser.add_argument("--out", type=Path, default=Path("runs/umt-forms"))
    args = parser.parse_args()
    torch.set_num_threads(1)
    for data in args.data:
        rows: dict[str, dict[str, list[float]]] = {}
        for seed in args.seeds:
            folder = args.out / data / f"seed-{seed}"
            base = base_config(data, seed, args.out / data)
            bundle = build_dataset(base.data)
            modalities = bundle.modality_names
            teachers = {m: str(folder / f"unimodal-{m}") for m in modalities}
            for m in modalities:
                train(method_config(base, "unimodal", {"modality": m}), teachers[m], resume=True, bundle=bundle)
            teacher_probe = {m: probe_run(teachers[m], bundle=bundle)[m]["test_acc"] for m in modalities}
            naive = train(method_config(base, "naive", {}), folder / "naive", resume=True, bundle=bundle)["test_acc"]
            rows.setdefault("naive", {}).setdefault("test", []).append(100 * naive)
            for i, form in enumerate(FORMS):
                run = folder / f"umt-{i}"
                result = train(method_config(base, "umt", {"teachers": teachers, **form}), run, resume=True, bundle=bundle)
                probe = probe_run(run, bundle=bundle)
                row = rows.setdefault(label(form), {})
                row.setdefault("test", []).append(100 * result["test_acc"])
                row.setdefault("vs naive", []).append(100 * (result["test_acc"] - naive))
                for m in modalities:
                    row.setdefault(f"gap {m}", []).append(100 * (probe[m]["test_acc"] - teacher_probe[m]))
        modalities = [k.removeprefix("gap ") for k in next(iter(r for k, r in rows.items() if k != "naive")) if k.startswith("gap ")]
        print(f"\n{data}, seeds {args.seeds}: naive test {pm(rows['naive']['test'])}\n")
        print("| UMT form | test (%) | UMT - naive | " + " | ".join(f"probe {m}: UMT - uni-modal" for m in modalities) + " |")
        print("|---|---:|---:|" + "---:|" * len(modalities))
        for name, row in rows.items():
            if name == "naive":
                continue
            print(f"| {name} | {pm(row['test'])} | {pm(row['vs naive'], True)} | " + " | ".join(pm(row[f'gap {m}'], True) for m in modalities) + " |")


if __name__ == "__main__":
    main()
