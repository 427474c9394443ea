"""The defaults on a user's own small data: three real cases of a few hundred samples, written in the
bring-your-own folder format (manifest.csv), each run with `latefusion demo --data FOLDER` and
nothing else set; prints one markdown table.

    OMP_NUM_THREADS=1 python bench/own_data_defaults.py --out runs/own-data --seeds 0
    OMP_NUM_THREADS=1 python bench/own_data_defaults.py --out runs/own-data --seeds 0 --before   # also the former defaults

The cases (scikit-learn is needed to build the third, only here: `pip install scikit-learn`;
it is no dependency of latefusion or its tests):

* digits-speech: 600 samples of the package's avdigits (real handwritten digits, 8x8, from
  src/latefusion/data/assets/avdigits.npz, with the spoken digit of the same class), degraded as the
  avdigits loader degrades them, written as a user would hold them: PNG images and 8 kHz WAV clips
  (file columns). Train 400 / val 100 / test 100, from avdigits' own splits (disjoint speakers).
* digits-numbers: 600 other avdigits samples: the PNG image, and the spoken digit as 20 number
  columns a user might have extracted (16 log band energies, RMS, zero-crossing rate, spectral
  centroid in Hz, voiced duration in s: features on very different scales). Train 400 / val 100 / test 100.
* breast-cancer: scikit-learn's Wisconsin breast cancer data (569 real samples, 2 classes) as two
  number-column modalities: `cell` (the 10 mean and 10 standard-error features) and `worst` (the 10
  worst-value features). A seeded stratified split, 60/20/20.

Per case, setting and seed, the table shows the training-set size, the batch size and steps per epoch
each run recorded, every model's test accuracy, and the linear-probe test accuracy of each modality's
encoder in the uni-modal, naive and UMT runs (UME's encoders are the uni-modal ones). A model is
flagged NEAR CHANCE when its test accuracy is below chance + 0.2 x (1 - chance), chance being the
share of the most common class in test, while the best probe of its own encoders is above that line.
`--before` adds the former defaults, `data.batch_size=128 data.options.standardize_numbers=false`;
`--ablation` each change alone on the cases with number columns (on digits-speech the former defaults
differ in the batch size alone): `batch-128` (standardised numbers, batch 128) and `numbers-raw` (auto
batch size, numbers as read).
"""

from __future__ import annotations

import argparse
import csv
import json
import wave
from pathlib import Path

import numpy as np
import torch
from PIL import Image

from latefusion.cli import main
from latefusion.data import build_dataset
from latefusion.data.avdigits import SAMPLE_RATE
from latefusion.resolve import resolve_config

CASES = ("digits-speech", "digits-numbers", "breast-cancer")
SETTINGS = {"defaults": [], "before": ["--set", "data.batch_size=128", "--set", "data.options.standardize_numbers=false"],
            "batch-128": ["--set", "data.batch_size=128"], "numbers-raw": ["--set", "data.options.standardize_numbers=false"]}
NUMBER_CASES = ("digits-numbers", "breast-cancer")  # the cases with number columns, where numbers-raw differs from defaults
SPLIT_SIZES = {"train": 400, "val": 100, "test": 100}


def avdigits_samples(offset: int) -> dict[str, list[tuple[str, np.ndarray, np.ndarray, str]]]:
    """SPLIT_SIZES samples per split of avdigits as its loader degrades them (seed 0), from position
    `offset` of each split on: (id, image (8, 8) in [0, 1], waveform, class name)."""
    bundle = build_dataset(resolve_config(None, ["data.name=avdigits"]).data)
    picked = {}
    for split, size in SPLIT_SIZES.items():
        data = bundle.splits[split]
        rows = range(offset if split == "train" else offset // 4, (offset if split == "train" else offset // 4) + size)
        picked[split] = [(f"{split}{i}", data.inputs["image"][i, 0].numpy(), data.inputs["audio"][i].numpy(),
                          bundle.class_names[int(data.labels[i])]) for i in rows]
    return picked


def write_png(path: Path, image: np.ndarray) -> None:
    Image.fromarray((np.clip(image, 0, 1) * 255).round().astype(np.uint8)).save(path)


def write_wav(path: Path, wave_: np.ndarray) -> None:
    with wave.open(str(path), "wb") as out:
        out.setnchannels(1), out.setsampwidth(2), out.setframerate(SAMPLE_RATE)
        out.writeframes((np.clip(wave_, -1, 1) * 32767).round().astype("<i2").tobytes())


def speech_numbers(wave_: np.ndarray) -> dict[str, float]:
    """What a user might extract from a clip: 16 log band energies, RMS, zero-crossing rate, spectral
    centroid (Hz) and voiced duration (s); frames of 256 samples, hop 128."""
    frames = np.lib.stride_tricks.sliding_window_view(wave_, 256)[::128] * np.hanning(256)
    power = np.abs(np.fft.rfft(frames, axis=1)) ** 2  # (frames, 129)
    bands = np.array_split(np.arange(1, 129), 16)
    features = {f"band{k:02d}": float(np.log(power[:, band].sum(1).mean() + 1e-10)) for k, band in enumerate(bands)}
    energy = power.sum(1)
    frequencies = np.fft.rfftfreq(256, 1 / SAMPLE_RATE)
    features["rms"] = float(np.sqrt(np.mean(wave_ ** 2)))
    features["zcr"] = float(np.mean(np.abs(np.diff(np.sign(wave_))) > 0))
    features["centroid_hz"] = float((power * frequencies).sum() / max(power.sum(), 1e-10))
    features["voiced_s"] = float((energy > 0.1 * energy.max()).sum() * 128 / SAMPLE_RATE)
    return features


def write_manifest(folder: Path, header: list[str], rows: list[list]) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    with (folder / "manifest.csv").open("w", newline="") as handle:
        writer = csv.writer(handle)
        writer.writerow(header)
        writer.writerows(rows)
    return folder


def build_digits_speech(folder: Path) -> Path:
    (folder / "images").mkdir(parents=True, exist_ok=True)
    (folder / "clips").mkdir(parents=True, exist_ok=True)
    rows = []
    for split, samples in avdigits_samples(0).items():
        for sid, image, audio, label in samples:
            write_png(folder / "images" / f"{sid}.png", image)
            write_wav(folder / "clips" / f"{sid}.wav", audio)
            rows.append([sid, label, split, f"images/{sid}.png", f"clips/{sid}.wav"])
    return write_manifest(folder, ["id", "label", "split", "image", "speech"], rows)


def build_digits_numbers(folder: Path) -> Path:
    (folder / "images").mkdir(parents=True, exist_ok=True)
    rows, names = [], None
    for split, samples in avdigits_samples(400).items():
        for sid, image, audio, label in samples:
            write_png(folder / "images" / f"{sid}.png", image)
            numbers = speech_numbers(audio)
            names = names or list(numbers)
            rows.append([sid, label, split, f"images/{sid}.png", *(f"{numbers[n]:.6g}" for n in names)])
    return write_manifest(folder, ["id", "label", "split", "image", *(f"speech.{n}" for n in names)], rows)


def build_breast_cancer(folder: Path, seed: int = 0) -> Path:
    from sklearn.datasets import load_breast_cancer
    data = load_breast_cancer()
    rng = np.random.default_rng(seed)
    split = np.empty(len(data.target), dtype=object)
    for label in np.unique(data.target):  # stratified 60/20/20
        rows = rng.permutation(np.flatnonzero(data.target == label))
        a, b = round(0.6 * len(rows)), round(0.8 * len(rows))
        split[rows[:a]], split[rows[a:b]], split[rows[b:]] = "train", "val", "test"
    names = [n.replace(" ", "_") for n in data.feature_names]
    cell = [i for i, n in enumerate(names) if not n.startswith("worst_")]
    worst = [i for i, n in enumerate(names) if n.startswith("worst_")]
    header = ["id", "label", "split", *(f"cell.{names[i]}" for i in cell), *(f"worst.{names[i].removeprefix('worst_')}" for i in worst)]
    rows = [[f"s{r}", data.target_names[data.target[r]], split[r], *(f"{data.data[r, i]:.6g}" for i in cell + worst)]
            for r in range(len(data.target))]
    return write_manifest(folder, header, rows)


BUILDERS = {"digits-speech": build_digits_speech, "digits-numbers": build_digits_numbers, "breast-cancer": build_breast_cancer}


def chance(folder: Path) -> float:
    with (folder / "manifest.csv").open() as handle:
        labels = [row["label"] for row in csv.DictReader(handle) if row["split"] == "test"]
    return max(labels.count(v) for v in set(labels)) / len(labels)


def rows_of(case: str, setting: str, seed: int, demo: Path, floor: float) -> dict:
    summary = json.loads((demo / "summary.json").read_text())
    modalities = summary["modalities"]
    results = {key: json.loads((demo / key.replace(":", "-") / "result.json").read_text()) for key in summary["methods"]}
    trained = [r for r in results.values() if "batch_size" in r]
    probes = summary["probe"]
    own_probe = {f"unimodal:{m}": probes["unimodal"][m] for m in modalities}
    own_probe["ume"] = max(probes["unimodal"].values())
    for key in ("naive", "umt"):
        if key in probes:
            own_probe[key] = max(probes[key].values())
    flags = [key for key, r in results.items() if r["test_acc"] < floor <= own_probe.get(key, 0)]
    return {"case": case, "setting": setting, "seed": seed, "n_train": trained[0]["n_train"],
            "batch": sorted({r["batch_size"] for r in trained}), "steps": sorted({r["steps_per_epoch"] for r in trained}),
            "test": {key: r["test_acc"] for key, r in results.items()}, "probe": probes, "modalities": modalities, "flags": flags}


def table(rows: list[dict]) -> str:
    lines = ["| case | setting | seed | n_train | batch | steps/epoch | test accuracy % (uni-modal per modality, naive, UME, UMT) | "
             "probe test % (uni-modal / naive / UMT encoder, per modality) | near chance |",
             "|---|---|---|---:|---:|---:|---|---|---|"]
    for row in rows:
        m = row["modalities"]
        test = row["test"]
        accs = ", ".join([*(f"{x}: {100 * test[f'unimodal:{x}']:.1f}" for x in m),
                          *(f"{k}: {100 * test[k]:.1f}" for k in ("naive", "ume", "umt") if k in test)])
        probe = "; ".join(f"{x}: " + " / ".join(f"{100 * row['probe'][k][x]:.1f}" for k in ("unimodal", "naive", "umt") if k in row["probe"])
                          for x in m)
        flags = ", ".join(row["flags"]) or "none"
        lines.append(f"| {row['case']} | {row['setting']} | {row['seed']} | {row['n_train']} | {'/'.join(map(str, row['batch']))} | "
                     f"{'/'.join(map(str, row['steps']))} | {accs} | {probe} | {flags} |")
    return "\n".join(lines)


def main_(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, default=Path("runs/own-data"))
    parser.add_argument("--seeds", type=int, nargs="+", default=[0])
    parser.add_argument("--cases", nargs="+", choices=CASES, default=list(CASES))
    parser.add_argument("--before", action="store_true", help="also run the former defaults (batch 128, numbers as read)")
    parser.add_argument("--ablation", action="store_true", help="also each change alone (batch-128, numbers-raw)")
    args = parser.parse_args(argv)
    torch.set_num_threads(1)
    rows = []
    for case in args.cases:
        folder = args.out / "data" / case
        if not (folder / "manifest.csv").exists():
            BUILDERS[case](folder)
        floor = chance(folder) + 0.2 * (1 - chance(folder))
        # Without number columns, batch-128 is the former defaults already.
        ablation = ["batch-128", "numbers-raw"] if args.ablation and case in NUMBER_CASES else []
        for setting in ["defaults", *(["before"] if args.before else []), *ablation]:
            for seed in args.seeds:
                demo = args.out / setting / case / f"seed-{seed}"
                extra = SETTINGS[setting] + (["--set", f"train.seed={seed}"] if seed else [])
                if not (demo / "summary.json").exists():
                    assert main(["demo", "--data", str(folder), "--out", str(demo), *extra]) == 0, (case, setting, seed)
                rows.append(rows_of(case, setting, seed, demo, floor))
                print(table(rows[-1:]).splitlines()[-1], flush=True)
    print()
    print(table(rows))


if __name__ == "__main__":
    main_()
