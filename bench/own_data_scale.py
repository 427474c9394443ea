"""Your own data at two sizes: a manifest folder read into memory against its prepared copy.

    OMP_NUM_THREADS=1 python bench/own_data_scale.py [--sizes 1000 5000] [--memory-up-to 5000] [--batch 64] [--workers 2] [--keep DIR]

For each size, a generated folder (per sample a 64x64 RGB PNG, a 1-second 16 kHz WAV and 16 number
columns; two classes, a fifth of the samples in test) is measured in a fresh process per road:

  memory    `data.options.prepare=never`: the folder read and decoded into memory at every start
  prepared  `latefusion prepare folder` once (its time and the disk it takes), then `--data PREPARED`

and for each road, `latefusion train` (naive fusion, the default encoders) run in-process until six
steps have ended: the time its data set build takes (what `check-data` and every start pay: reading,
the data checks, the train statistics of the number columns), the time from the call to the end of
the first step, the peak resident memory of the process (ru_maxrss), the training rate of steps 2 to
6 (samples/s), and afterwards the loader's rate (samples/s of random batches of the train split
through `__getitems__`, in one process: what a DataLoader worker does). Steps are caught by wrapping
latefusion.train.train_step, which then stops the run. The batch size is fixed (`--batch`), since the
automatic one grows with the training split (engine.train_batch_size) and the step's memory with it.
A folder already generated under `--keep` is used again (its prepared copy is written afresh).

    OMP_NUM_THREADS=1 python bench/own_data_scale.py --video 200 [--video-size 64] [--epochs 3]

instead generates that many short clips (16 frames of 64x64 at 8 fps with a 1-second audio track,
two classes: a colour cast and a tone) with a manifest naming each clip twice (`clip` frames and
`clip#audio` sound), and times `latefusion demo --data FOLDER` on it: prepared into a cache, trained
(uni-modal, naive, UME, UMT), probed, guided and reported.
"""

from __future__ import annotations

import argparse
import csv
import json
import os
import platform
import resource
import shutil
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


def make_clips(root: Path, n: int, seed: int = 0) -> Path:
    import av

    rng = np.random.default_rng(seed)
    (root / "clips").mkdir(parents=True)
    rows = []
    for i in range(n):
        label = i % 2
        with av.open(str(root / "clips" / f"{i}.mp4"), "w") as container:
            video = container.add_stream("mpeg4", rate=8)
            video.width = video.height = 64
            video.pix_fmt = "yuv420p"
            audio = container.add_stream("aac", rate=RATE)
            audio.layout = "mono"
            for _ in range(16):
                frame = rng.integers(0, 200, (64, 64, 3), dtype=np.uint8)
                frame[..., label] += 55  # red or green cast: the visual class cue
                for packet in video.encode(av.VideoFrame.from_ndarray(frame, format="rgb24")):
                    container.mux(packet)
            for packet in video.encode():
                container.mux(packet)
            tone = 0.3 * np.sin(2 * np.pi * (300 + 300 * label) * np.arange(RATE) / RATE) + 0.1 * rng.standard_normal(RATE)
            sound = av.AudioFrame.from_ndarray(tone.astype(np.float32)[None], format="flt", layout="mono")
            sound.sample_rate = RATE
            for packet in [*audio.encode(sound), *audio.encode()]:
                container.mux(packet)
        rows.append([f"c{i}", label, "test" if i % 5 == 4 else "train", f"clips/{i}.mp4", f"clips/{i}.mp4#audio"])
    with open(root / "manifest.csv", "w", newline="") as handle:
        csv.writer(handle).writerows([["id", "label", "split", "visual", "sound"], *rows])
    return root


def video_demo(base: Path, n: int, size: int, epochs: int) -> None:
    started = time.perf_counter()
    data = make_clips(base / f"clips-{n}", n)
    made = time.perf_counter() - started
    command = [sys.executable, "-m", "latefusion.cli", "demo", "--data", str(data), "--out", str(base / "demo"),
               "--set", f"data.options.cache_dir={base / 'cache'}", "--set", f"data.options.video_size={size}",
               "--set", f"train.epochs={epochs}", "--set", "train.progress=false"]
    started = time.perf_counter()
    done = subprocess.run(command, capture_output=True, text=True)
    if done.returncode:
        raise SystemExit(done.stderr[-3000:])
    summary = json.loads((base / "demo" / "summary.json").read_text())
    print(f"{n} clips written in {made:.1f} s; `latefusion demo` (prepare into the cache, {epochs} epochs per run, probes, guide, "
          f"report) took {time.perf_counter() - started:.0f} s")
    print("test accuracy:", {k: round(v["test_acc"], 3) for k, v in summary["methods"].items()}, "| guide:", summary["guide"]["choice"])
    print("\n".join(line for line in done.stderr.splitlines() if line.startswith("latefusion:")))


class Stop(Exception):
    pass


def child(path: str, options: list[str], batch: int, steps: int = 6) -> None:
    """One measurement in this process: `latefusion train` until `steps` steps have ended, timing its
    data set build (a wrapper around latefusion.train.build_dataset) and its steps; then the loader's
    rate on the train split it built."""
    import importlib

    from latefusion.resolve import resolve_config

    config = resolve_config(None, ["data.name=folder", f"data.path={path}", "method.name=naive", "train.progress=false",
                                   f"data.batch_size={batch}", *options])
    training = importlib.import_module("latefusion.train")  # the module (the package exports the function as latefusion.train)
    build, step, built, ends = training.build_dataset, training.train_step, {}, []

    def timed_build(data_config):
        started = time.perf_counter()
        built["bundle"] = build(data_config)
        built["data_s"] = time.perf_counter() - started
        return built["bundle"]

    def counted_step(*args, **kwargs):
        yield from step(*args, **kwargs)
        ends.append(time.perf_counter())
        if len(ends) == steps:
            raise Stop

    training.build_dataset, training.train_step = timed_build, counted_step
    started = time.perf_counter()
    with tempfile.TemporaryDirectory() as out:
        try:
            training.train(config, Path(out) / "run")
        except Stop:
            pass
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # KiB on Linux
    train_split, draw = built["bundle"].splits["train"], np.random.default_rng(0)
    reading = time.perf_counter()
    for _ in range(20):
        train_split.__getitems__(draw.choice(len(train_split), batch, replace=False).tolist())
    loader = 20 * batch / (time.perf_counter() - reading)
    print(json.dumps({"data_s": built["data_s"], "first_step_s": ends[0] - started, "peak_mb": peak, "loader_per_s": loader,
                      "steps_per_s": (steps - 1) * batch / (ends[-1] - ends[0])}))


def measure(path: Path, batch: int, *options: str) -> dict:
    done = subprocess.run([sys.executable, __file__, "--child", str(path), "--batch", str(batch), *options], capture_output=True, text=True)
    if done.returncode:
        raise SystemExit(done.stderr)
    return json.loads(done.stdout.strip().splitlines()[-1])


def folder_bytes(root: Path) -> int:
    return sum(f.stat().st_size for f in root.rglob("*") if f.is_file())


def cells(m: dict) -> str:
    return f"{m['data_s']:.1f} | {m['first_step_s']:.1f} | {m['peak_mb']:.0f} | {m['loader_per_s']:.0f} | {m['steps_per_s']:.0f}"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--sizes", type=int, nargs="+", default=[1000, 5000])
    parser.add_argument("--workers", type=int, default=2, help="prepare's processes")
    parser.add_argument("--batch", type=int, default=64, help="data.batch_size of the training step")
    parser.add_argument("--memory-up-to", type=int, default=5000, help="measure the in-memory road up to this size only (it needs "
                        "about 0.1 MB of RAM a sample here)")
    parser.add_argument("--keep", type=Path, help="generate the folders here (default: a temporary folder)")
    parser.add_argument("--video", type=int, metavar="N", help="time `latefusion demo` on N generated clips instead")
    parser.add_argument("--video-size", type=int, default=64, help="data.options.video_size of --video")
    parser.add_argument("--epochs", type=int, default=3, help="train.epochs of --video")
    parser.add_argument("--child", help=argparse.SUPPRESS)
    args, rest = parser.parse_known_args()
    if args.child:
        return child(args.child, rest, args.batch)
    if args.video:
        print(f"{platform.node()}: {os.cpu_count()} cores, load average {os.getloadavg()[0]:.1f} at the start")
        with tempfile.TemporaryDirectory() as scratch:
            video_demo(args.keep or Path(scratch), args.video, args.video_size, args.epochs)
        print(f"load average {os.getloadavg()[0]:.1f} at the end")
        return None

    from latefusion.data.prepared import prepare

    print(f"{platform.node()}: {os.cpu_count()} cores, load average {os.getloadavg()[0]:.1f} at the start")
    rows = []
    with tempfile.TemporaryDirectory() as scratch:
        base = args.keep or Path(scratch)
        for n in args.sizes:
            data = base / f"data-{n}"
            if not (data / "manifest.csv").is_file():
                make_folder(data, n)
            shutil.rmtree(base / f"prepared-{n}", ignore_errors=True)
            memory = measure(data, args.batch, "data.options.prepare=never") if n <= args.memory_up_to else None
            started = time.perf_counter()
            prepare("folder", data, base / f"prepared-{n}", workers=args.workers, progress=False)
            prepare_s = time.perf_counter() - started
            prepared = measure(base / f"prepared-{n}", args.batch)
            rows.append((n, folder_bytes(data), memory, prepare_s, folder_bytes(base / f"prepared-{n}"), prepared))
    print(f"\nload average {os.getloadavg()[0]:.1f} at the end\n")
    print("| samples | road | build_dataset s | first step s | peak RSS MB | loader samples/s | step samples/s | prepare s | disk MB |")
    print("|---:|---|---:|---:|---:|---:|---:|---:|---:|")
    for n, raw, memory, prepare_s, disk, prepared in rows:
        if memory is not None:
            print(f"| {n:,} | memory | {cells(memory)} | - | {raw / 2**20:.0f} (raw) |")
        print(f"| {n:,} | prepared | {cells(prepared)} | {prepare_s:.1f} | {disk / 2**20:.0f} |")


if __name__ == "__main__":
    main()
