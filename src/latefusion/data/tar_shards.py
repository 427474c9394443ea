"""Samples streamed from tar shards in the WebDataset layout, shared out across processes and loader
workers (docs/webdataset.md has the plan this is the first part of).

A shard is a tar file, local or at an http(s) URL, read in one sequential pass (tarfile's streaming
mode, the standard library: the `webdataset` package is not needed). A sample is the run of
consecutive members that share a key: a member's name up to the first '.' of its last part
(`train/s0001.image.png` -> key `train/s0001`, field `image.png`), as webdataset's writer and
`tar` of a sorted folder leave them. Fields follow the manifest's conventions (docs/data-format.md):
`<modality>.<ext>` is one file of a file column (`.npy`, `.png`, `.wav`, `.mp4`...; read by
folder.read_cell, so each file is checked as the folder reader checks it), `label.txt` or `cls` the
label. A sample whose file cannot be used is left out and named on stderr.

Sharing out (`assigned_shards`): every process and worker draws the same shard order for an epoch
from (seed, epoch), and global worker g of G (G = processes x loader workers, g = rank x workers +
worker id) reads the shards g, g + G, g + 2G... of it: each sample is read once per epoch, by one
worker, when there are at least G shards.
"""

from __future__ import annotations

import random
import sys
import tarfile
import tempfile
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import torch
from torch.utils.data import IterableDataset, get_worker_info

from .. import distributed
from .files import FileProblem, resample
from .folder import ContentOptions, cell_kind, fit_audio, read_cell

LABEL_FIELDS = ("label.txt", "cls")


def open_shard(shard: str):
    """A shard as a readable stream: a local file, or the body of an http(s) URL."""
    if shard.startswith(("http://", "https://")):
        return urllib.request.urlopen(shard)  # noqa: S310 (the user's own list of shards)
    return open(shard, "rb")


def shard_samples(shard: str) -> Iterator[tuple[str, dict[str, bytes]]]:
    """The samples of one shard in order: (key, {field: bytes})."""
    key, fields = None, {}
    with open_shard(shard) as stream, tarfile.open(fileobj=stream, mode="r|*") as tar:
        for member in tar:
            folder, _, name = member.name.rpartition("/")
            stem, dot, field = name.partition(".")
            if not member.isfile() or not dot:
                continue
            member_key = f"{folder}/{stem}" if folder else stem
            if member_key != key:
                if key is not None:
                    yield key, fields
                key, fields = member_key, {}
            fields[field] = tar.extractfile(member).read()
    if key is not None:
        yield key, fields


def assigned_shards(shards: list[str], epoch: int, seed: int, part: int, parts: int) -> list[str]:
    """The shards global worker `part` of `parts` reads in `epoch`: its share of the epoch's order."""
    order = list(shards)
    random.Random(seed * 100_003 + epoch).shuffle(order)
    return order[part::parts]


class TarShards(IterableDataset):
    """The samples of `shards`, as {"key", "label" (class index), "inputs" {modality: tensor}}, each
    once per epoch across the processes (`rank` of `world`, default: torchrun's) and loader workers.
    `class_names` numbers the labels (a stream is not scanned first); `options` reads the files as the
    folder data set does, audio resampled to `sample_rate` and fitted to `audio_seconds` when set."""

    def __init__(self, shards: list[str | Path], class_names: list[str], options: ContentOptions | None = None, *, epoch: int = 0,
                 seed: int = 0, rank: int | None = None, world: int | None = None) -> None:
        self.shards, self.options = [str(s) for s in shards], options or ContentOptions()
        self.index = {name: i for i, name in enumerate(class_names)}
        self.epoch, self.seed = epoch, seed
        self.rank = distributed.rank() if rank is None else rank
        self.world = distributed.world_size() if world is None else world

    def __iter__(self) -> Iterator[dict[str, Any]]:
        info = get_worker_info()
        workers, worker = (info.num_workers, info.id) if info else (1, 0)
        mine = assigned_shards(self.shards, self.epoch, self.seed, self.rank * workers + worker, self.world * workers)
        with tempfile.TemporaryDirectory(prefix="latefusion-tar-") as scratch:
            for shard in mine:
                for key, fields in shard_samples(shard):
                    try:
                        yield self.decode(key, fields, Path(scratch))
                    except FileProblem as problem:
                        print(f"latefusion: {shard}: sample {key!r} left out: {problem.kind}: {problem}", file=sys.stderr)

    def decode(self, key: str, fields: dict[str, bytes], scratch: Path) -> dict[str, Any]:
        label = next((fields[f].decode("utf-8").strip() for f in LABEL_FIELDS if f in fields), None)
        if label not in self.index:
            raise FileProblem("unseen-label" if label else "missing-label", f"label {label!r} is not one of the class names")
        inputs = {}
        for field, data in fields.items():
            if field in LABEL_FIELDS:
                continue
            modality = field.partition(".")[0]
            kind = cell_kind(field)
            if kind is None:
                raise FileProblem("unreadable-file", f"field {field!r} is of no type a modality reads")
            (scratch / field).write_bytes(data)  # read as the folder reader reads a file: one sample check
            try:
                value, rate = read_cell(scratch, field, kind, self.options)
            except FileProblem as problem:
                raise FileProblem(problem.kind, f"{field} {problem}") from None
            finally:
                (scratch / field).unlink()
            if rate is not None:
                value = resample(value, rate, self.options.sample_rate or rate)
                rate = self.options.sample_rate or rate
                if self.options.audio_seconds:
                    value = fit_audio({0: value}, max(1, int(self.options.audio_seconds * rate)))[0]
            inputs[modality] = torch.from_numpy(value)
        return {"key": key, "label": self.index[label], "inputs": inputs}
