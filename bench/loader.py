"""Loader throughput for VGG-Sound-shaped samples: prepared-shard read + augment, and the input stage.

A sample is what `latefusion prepare vggsound` stores (3 frames of 224 x 224 RGB uint8, 10 s of
16 kHz int16 audio) and what training makes of it: in the loader, a random resized crop + flip of
the frames to 224 (uint8) and a random 5 s audio window (int16); on the model's device, the input
stage (ImageNet normalisation; log spectrogram, n_fft 256, hop 128). The prepared folder is written
by the real `prepare` with a recipe whose "decoding" draws random arrays, so the format and the read
path are the ones training uses.

    OMP_NUM_THREADS=1 python bench/loader.py [--samples 1024] [--batch 64] [--workers 1 2]

Prints samples/s for one process in a loop (read, loader augment, input stage timed apart), and
through a torch DataLoader with N worker processes, for the loader as it is (compact uint8/int16
batches) and as it was (the input stage run in the workers too, shipping float32 batches: the same
numbers the former loader produced, see tests/test_input_stage.py), in the same run. Reads come from
the page cache once the folder has been written (~0.8 MB a sample); see bench/README.md.
"""

from __future__ import annotations

import argparse
import os
import platform
import tempfile
import time
from pathlib import Path

import numpy as np
import torch
from torch.utils.data import DataLoader, RandomSampler

from latefusion.config import DataConfig
from latefusion.data import DATASETS, build_dataset, collate
from latefusion.data.prepared import RECIPES, Recipe, Sample, Scan, open_prepared, prepare
from latefusion.data.vggsound import AudioVisualData, VGGSoundRecipe, audio_visual_bundle
from latefusion.models.input_stage import build_input_stage


@RECIPES.register("bench-vggsound")
class RandomVGGSound(Recipe):
    """VGG-Sound's stored arrays, filled with random values instead of decoded clips."""

    name = "bench-vggsound"
    Options = VGGSoundRecipe.Options

    def scan(self, src: Path, options) -> Scan:
        count = int((src / "count").read_text())
        return Scan([Sample(f"clip{i:06d}", i % 309, "test" if i % 10 == 0 else "train", f"yt{i}") for i in range(count)], [f"class{k}" for k in range(309)])

    stored = VGGSoundRecipe.stored

    def decode(self, sample: Sample, options):
        rng = np.random.default_rng(int(sample.id[4:]))
        return {s.name: rng.integers(0, 255, s.shape).astype(s.dtype) for s in self.stored(options)}, None


@DATASETS.register("bench-vggsound")
def build_bench(config: DataConfig):
    """VGG-Sound's loader with its training defaults (OGM-GE's recipe) over the benchmark's folder."""
    return audio_visual_bundle(open_prepared(config.path, "bench-vggsound"), AudioVisualData())


class StagedOnCPU:
    """A split's loader transform followed by the input stages, in the loader: the former loader's work."""

    def __init__(self, transform, stages: dict) -> None:
        self.transform, self.stages = transform, stages

    def __call__(self, raw):
        with torch.no_grad():
            return {m: self.stages[m](x) for m, x in self.transform(raw).items()}


def per_process(split, stages: dict, batch: int, seconds: float) -> dict[str, float]:
    """One process, one thread: gather batches in a loop, timing read, loader augment and input stage apart."""
    generator = torch.Generator().manual_seed(0)
    times = {"read": 0.0, "augment": 0.0, "stage": 0.0}
    samples = 0
    started = time.perf_counter()
    while time.perf_counter() - started < seconds:
        indices = torch.randint(len(split), (batch,), generator=generator).tolist()
        t0 = time.perf_counter()
        raw = split.raw(indices)
        t1 = time.perf_counter()
        compact = split.transform(raw)
        t2 = time.perf_counter()
        with torch.no_grad():
            for m, x in compact.items():
                stages[m](x)
        t3 = time.perf_counter()
        for part, dt in zip(times, (t1 - t0, t2 - t1, t3 - t2)):
            times[part] += dt
        samples += batch
    return {part: samples / t for part, t in times.items()} | {
        "loader": samples / (times["read"] + times["augment"]), "former": samples / sum(times.values())}


def with_workers(split, batch: int, workers: int, seconds: float) -> float:
    loader = DataLoader(split, batch_size=batch, sampler=RandomSampler(split, replacement=True, num_samples=10**7), num_workers=workers,
                        collate_fn=collate, persistent_workers=False, prefetch_factor=2 if workers else None)
    samples, started = 0, None
    for k, (inputs, _) in enumerate(loader):
        if k == workers * 2:  # after the workers' first batches (start-up) the clock starts
            started, samples = time.perf_counter(), 0
        samples += len(inputs["audio"])
        if started and time.perf_counter() - started > seconds:
            break
    return samples / (time.perf_counter() - started)


def megabytes_a_sample(split) -> float:
    inputs, _ = split.__getitems__([0])
    return sum(x.numel() * x.element_size() for x in inputs.values()) / 1e6


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--samples", type=int, default=1024, help="samples in the prepared folder")
    parser.add_argument("--batch", type=int, default=64)
    parser.add_argument("--workers", type=int, nargs="+", default=[1, 2])
    parser.add_argument("--seconds", type=float, default=10.0, help="measuring time per row")
    parser.add_argument("--dir", type=Path, help="where to write the prepared folder (default: a temporary folder)")
    args = parser.parse_args()
    torch.set_num_threads(1)

    with tempfile.TemporaryDirectory(dir=args.dir) as tmp:
        raw, prepared = Path(tmp) / "raw", Path(tmp) / "prepared"
        raw.mkdir()
        (raw / "count").write_text(str(args.samples))
        t0 = time.perf_counter()
        prepare("bench-vggsound", raw, prepared, {}, progress=False)
        print(f"wrote {args.samples} VGG-Sound-shaped samples in {time.perf_counter() - t0:.1f} s "
              f"({sum(f.stat().st_size for f in prepared.rglob('*.npy')) / args.samples / 1e6:.2f} MB a sample)")
        bundle = build_dataset(DataConfig(name="bench-vggsound", path=str(prepared)))
        split = bundle.splits["train"]
        stages = {m.name: build_input_stage(m.stage) for m in bundle.modalities}
        one = per_process(split, stages, args.batch, args.seconds)
        transforms = {"uint8/int16 batches (now)": split.transform, "float32 batches (former)": StagedOnCPU(split.transform, stages)}
        sizes = {}
        for label, transform in transforms.items():
            split.transform = transform
            sizes[label] = megabytes_a_sample(split)
        print(f"\nmachine: {platform.processor() or platform.machine()}, {os.cpu_count()} cores; torch {torch.__version__}; batch {args.batch}")
        print("a batch crosses processes as " + ", ".join(f"{mb:.2f} MB a sample with {label}" for label, mb in sizes.items()) + "\n")
        print("| loader | samples/s |\n|---|---:|")
        print(f"| 1 process: read (positioned reads of the shards' rows) | {one['read']:.0f} |")
        print(f"| 1 process: augment in the loader (crop/flip 3 frames in uint8, 5 s int16 window) | {one['augment']:.0f} |")
        print(f"| 1 process: input stage on the CPU (float + ImageNet normalisation, 5 s log spectrogram) | {one['stage']:.0f} |")
        print(f"| 1 process: read + augment (the loader now) | {one['loader']:.0f} |")
        print(f"| 1 process: read + augment + input stage (the former loader's work) | {one['former']:.0f} |")
        for workers in args.workers:
            for label, transform in transforms.items():
                split.transform = transform
                print(f"| DataLoader, {workers} worker{'s' if workers > 1 else ''}: {label} | {with_workers(split, args.batch, workers, args.seconds):.0f} |")


if __name__ == "__main__":
    main()
