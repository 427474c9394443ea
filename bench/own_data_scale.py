"""Your own data at two sizes: a manifest folder read into memory against its prepared copy.

    OMP_NUM_THREADS=1 python bench/own_data_scale.py [--sizes 1000 5000] [--memory-up-to 5000] [--batch 64] [--workers 2] [--keep DIR]

For each size, a generated folder (per sample a 64x64 RGB PNG, a 1-second 16 kHz WAV and 16 number
columns; two classes, a fifth of the samples in test) is measured in a fresh process per road:

  memory    `data.options.prepare=never`: the folder read and decoded into memory at every start
  prepared  `latefusion prepare folder` once (its time and the disk it takes), then `--data PREPARED`

and for each road: the time `build_dataset` takes (what `check-data` and every start pay: reading,
the data checks, the train statistics of the number columns), the time from the start to the end of
the first training step of naive fusion with the default encoders, and the peak resident memory of
the process (ru_maxrss). The first step is caught by wrapping latefusion.train.train_step, which then
stops the run: nothing else of training is timed. The batch size is fixed (`--batch`), since the
automatic one grows with the training split (engine.train_batch_size) and the step's memory with it.
"""

from __future__ import annotations

import argparse
import csv
import json
import os
import platform
import resource
import subprocess
import sys
import tempfile
import time
import wave
from pathlib import Path

import numpy as np

RATE = 16000


def make_folder(root: Path, n: int, seed: int = 0) -> Path:
    from PIL import Image

    rng = np.random.default_rng(seed)
    (root / "files").mkdir(parents=True)
    with open(root / "manifest.csv", "w", newline="") as handle:
        writer = csv.writer(handle)
        writer.writerow(["id", "label", "split", "image", "sound", *(f"numbers.f{k}" for k in range(16))])
        for i in range(n):
            label = i % 2
            image = rng.integers(0, 256, (64, 64, 3), dtype=np.uint8)
            image[:, 16 * label : 16 * label + 16] = 255  # a class cue
            Image.fromarray(image).save(root / "files" / f"{i}.png")
            tone = 0.3 * np.sin(2 * np.pi * (300 + 300 * label) * np.arange(RATE) / RATE) + 0.05 * rng.standard_normal(RATE)
            with wave.open(str(root / "files" / f"{i}.wav"), "wb") as out:
                out.setnchannels(1), out.setsampwidth(2), out.setframerate(RATE)
                out.writeframes((tone * 32767).astype("<i2").tobytes())
            numbers = rng.standard_normal(16) + label
            writer.writerow([f"s{i}", label, "test" if i % 5 == 4 else "train", f"files/{i}.png", f"files/{i}.wav", *(f"{x:.5f}" for x in numbers)])
    return root


class FirstStep(Exception):
    pass


def child(path: str, options: list[str]) -> None:
    """One measurement in this process: build the data set, then train until the first step ends."""
    import importlib

    from latefusion.data import build_dataset
    from latefusion.resolve import resolve_config

    started = time.perf_counter()
    config = resolve_config(None, ["data.name=folder", f"data.path={path}", "method.name=naive", "train.progress=false", *options])
    build_dataset(config.data)
    data_s = time.perf_counter() - started

    training = importlib.import_module("latefusion.train")  # the module (the package exports the function as latefusion.train)
    step = training.train_step

    def first_step(*args, **kwargs):
        yield from step(*args, **kwargs)
        raise FirstStep

    training.train_step = first_step
    with tempfile.TemporaryDirectory() as out:
        try:
            training.train(config, Path(out) / "run")
        except FirstStep:
            pass
    first_s = time.perf_counter() - started
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # KiB on Linux
    print(json.dumps({"data_s": data_s, "first_step_s": first_s, "peak_mb": peak}))


def measure(path: Path, *options: str) -> dict:
    done = subprocess.run([sys.executable, __file__, "--child", str(path), *options], capture_output=True, text=True)
    if done.returncode:
        raise SystemExit(done.stderr)
    return json.loads(done.stdout.strip().splitlines()[-1])


def folder_bytes(root: Path) -> int:
    return sum(f.stat().st_size for f in root.rglob("*") if f.is_file())


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--sizes", type=int, nargs="+", default=[1000, 5000])
    parser.add_argument("--workers", type=int, default=2, help="prepare's processes")
    parser.add_argument("--batch", type=int, default=64, help="data.batch_size of the training step")
    parser.add_argument("--memory-up-to", type=int, default=5000, help="measure the in-memory road up to this size only (it needs "
                        "about 0.4 MB of RAM a sample here)")
    parser.add_argument("--keep", type=Path, help="generate the folders here (default: a temporary folder)")
    parser.add_argument("--child", help=argparse.SUPPRESS)
    args, rest = parser.parse_known_args()
    if args.child:
        return child(args.child, rest)

    from latefusion.data.prepared import prepare

    print(f"{platform.node()}: {os.cpu_count()} cores, load average {os.getloadavg()[0]:.1f} at the start")
    rows = []
    with tempfile.TemporaryDirectory() as scratch:
        base = args.keep or Path(scratch)
        for n in args.sizes:
            data = make_folder(base / f"data-{n}", n)
            memory = measure(data, "data.options.prepare=never", f"data.batch_size={args.batch}") if n <= args.memory_up_to else None
            started = time.perf_counter()
            prepare("folder", data, base / f"prepared-{n}", workers=args.workers, progress=False)
            prepare_s = time.perf_counter() - started
            prepared = measure(base / f"prepared-{n}", f"data.batch_size={args.batch}")
            rows.append((n, folder_bytes(data), memory, prepare_s, folder_bytes(base / f"prepared-{n}"), prepared))
    print(f"\nload average {os.getloadavg()[0]:.1f} at the end\n")
    print("| samples | road | build_dataset s | first step s | peak RSS MB | prepare s | disk MB |")
    print("|---:|---|---:|---:|---:|---:|---:|")
    for n, raw, memory, prepare_s, disk, prepared in rows:
        if memory is not None:
            print(f"| {n:,} | memory | {memory['data_s']:.1f} | {memory['first_step_s']:.1f} | {memory['peak_mb']:.0f} | - | {raw / 2**20:.0f} (raw) |")
        print(f"| {n:,} | prepared | {prepared['data_s']:.1f} | {prepared['first_step_s']:.1f} | {prepared['peak_mb']:.0f} | "
              f"{prepare_s:.1f} | {disk / 2**20:.0f} |")


if __name__ == "__main__":
    main()
