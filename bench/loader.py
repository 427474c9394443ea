"""Loader throughput for VGG-Sound-shaped samples: prepared-shard read + decode + augment.

A sample is what `latefusion prepare vggsound` stores (3 frames of 224 x 224 RGB uint8, 10 s of
16 kHz int16 audio) and what training makes of it (random resized crop + flip of the frames to
224, ImageNet normalisation; a random 5 s audio window -> log spectrogram, n_fft 256, hop 128).
The prepared folder is written by the real `prepare` with a recipe whose "decoding" draws random
arrays, so the format and the read path are the ones training uses.

    OMP_NUM_THREADS=1 python bench/loader.py [--samples 1024] [--batch 64] [--workers 1 2]

Prints samples/s for one process reading in a loop (split into read and decode + augment), and
through a torch DataLoader with N worker processes. Reads come from the page cache once the folder
has been written (the folder is ~0.8 MB a sample); see bench/README.md for what that means.
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


def per_process(split, batch: int, seconds: float) -> dict[str, float]:
    """One process, one thread: gather batches in a loop, timing read and decode + augment apart."""
    generator = torch.Generator().manual_seed(0)
    read_time = transform_time = 0.0
    samples = 0
    started = time.perf_counter()
    while time.perf_counter() - started < seconds:
        indices = torch.randint(len(split), (batch,), generator=generator).tolist()
        t0 = time.perf_counter()
        raw = split.raw(indices)
        t1 = time.perf_counter()
        split.transform(raw)
        t2 = time.perf_counter()
        read_time, transform_time, samples = read_time + t1 - t0, transform_time + t2 - t1, samples + batch
    return {"read": samples / read_time, "transform": samples / transform_time, "total": samples / (read_time + transform_time)}


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
        split = build_dataset(DataConfig(name="bench-vggsound", path=str(prepared))).splits["train"]
        one = per_process(split, args.batch, args.seconds)
        print(f"\nmachine: {platform.processor() or platform.machine()}, {os.cpu_count()} cores; torch {torch.__version__}; batch {args.batch}\n")
        print("| loader | samples/s |\n|---|---:|")
        print(f"| 1 process: read (memory-mapped shards, fancy index) | {one['read']:.0f} |")
        print(f"| 1 process: decode + augment (crop/flip 3 frames, 5 s log spectrogram) | {one['transform']:.0f} |")
        print(f"| 1 process: read + decode + augment | {one['total']:.0f} |")
        for workers in args.workers:
            print(f"| DataLoader, {workers} worker{'s' if workers > 1 else ''} | {with_workers(split, args.batch, workers, args.seconds):.0f} |")


if __name__ == "__main__":
    main()
