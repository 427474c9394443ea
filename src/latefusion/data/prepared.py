"""The prepared format, and `latefusion prepare` that writes it from a data set's raw download.

A prepared folder:

  prepare.json             the recipe and options it was made with (a rerun with other options is refused)
  shards/<split>-NNNNN/    one `<array>.npy` per stored array, samples along the first axis, fixed shape:
                           frames as uint8 (T, H, W, 3), flow as uint8 (L, H, W, 2), audio as int16 (samples,)
  shards/<split>-NNNNN.json  the shard's manifest: sample ids and labels, the samples left out and why,
                           each array file's size and checksum, and the size and time of each sample's
                           raw files (`sources`) when it was written
  index.json               arrays, classes, splits -> shards, and the digest of each shard's manifest; written
                           last, so its presence means "complete" (a rerun that rewrites a shard removes
                           it first; opening the folder checks each shard against it)
  report.json              what was read, written, reused and skipped, with the reason for each skip

Why this format: decoded, resized, fixed-shape arrays are read row by row at their offsets
(`ShardArray`: one positioned read per run of consecutive samples), with nothing left to decode at
training time (the costly part of reading video); a shard of a few hundred samples is one file per
array, big enough for sequential reads and small enough to redo when interrupted. Positioned reads
rather than a memory map: the pages of a mapped file a process touches count in its resident memory
(whole large folios of a file just written, 2.5 MB per sample read was seen), which then grows with
the data set read; a read copies only the rows a batch needs. Every file is written atomically and a shard's manifest is written
after its arrays, so a shard with a manifest is complete: a rerun skips it (resumable prepare) unless
its arrays no longer match their checksums (a damaged disk, a copy cut short) or the raw files of one
of its samples changed (a broken download replaced): those shards are written again. Opening a
prepared folder compares the sizes of the array files with their manifests (one stat each);
`latefusion check-data` compares their checksums.

A data set is a `Recipe` registered in RECIPES: it lists the samples of a raw folder (`scan`), says
which arrays it stores, and decodes one sample (`decode`); the code here does the rest.
"""

from __future__ import annotations

import bisect
import hashlib
import io
import json
import math
import os
import sys
import threading
import time
from collections import Counter
from collections.abc import Mapping
from concurrent.futures import ProcessPoolExecutor, as_completed
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path
from typing import Any, Callable, ClassVar

import numpy as np
import torch
from pydantic import Field
from tqdm.auto import tqdm

from ..config import Section, validate
from ..registry import Registry
from ..errors import ConfigError, DataError, UserError
from ..storage import atomic_write_bytes, read_json, write_json
from .augment import Transforms
from .base import Batch, DataBundle, Inputs, Modality, Split, hash_parts
from .carve import settle_validation
from .checks import Problem
from .files import DataFormatError, npy_header

FORMAT = "latefusion-prepared/1"


class PrepareOptions(Section):
    """Options every recipe has; each recipe adds its own."""

    # Share of the official train split held out as validation, by group (see carve.carve_validation).
    val_fraction: float = Field(0.1, ge=0, lt=1)
    seed: int = 0
    shard_size: int = Field(256, gt=0)


@dataclass(frozen=True)
class Stored:
    """One array stored per sample."""

    name: str
    shape: tuple[int, ...]
    dtype: str


@dataclass
class Sample:
    id: str
    label: int
    split: str  # train, val or test
    group: str  # samples of one group (source video, object) never straddle train and val
    sources: dict[str, str] = field(default_factory=dict)  # files `decode` reads, by role
    # Values `decode` takes from the listing itself (a manifest's number cells), by role; a shard is
    # written again when they change, as when a source file does.
    cells: dict[str, str] = field(default_factory=dict)


@dataclass
class Scan:
    samples: list[Sample]
    class_names: list[str]
    # Samples left out before decoding (unparseable lines, unknown files): {"id", "split", "why"}.
    skipped: list[dict[str, str]] = field(default_factory=list)
    # What the user must know about the data as prepared (a split with overlapping speakers): printed
    # to stderr by `prepare` and kept under "warnings" in the report.
    warnings: list[str] = field(default_factory=list)
    # What the recipe settled from the data itself rather than from its options (a size read from the
    # files, each column's kind): kept in index.json for reading, and in every shard's manifest, so a
    # shard written under another layout is written again. The recipe's `decode` and `stored` see it
    # through the recipe instance, which `scan` may set up and which travels to the worker processes.
    layout: dict[str, Any] = field(default_factory=dict)


class Recipe:
    name: ClassVar[str]
    Options: ClassVar[type[PrepareOptions]] = PrepareOptions
    # Record the groups (speakers, source videos) of each split in the report, for data sets whose
    # splits are drawn by group by the recipe itself (a few hundred groups at most).
    record_groups: ClassVar[bool] = False

    def scan(self, src: Path, options: Any) -> Scan:
        raise NotImplementedError

    def stored(self, options: Any) -> list[Stored]:
        raise NotImplementedError

    def decode(self, sample: Sample, options: Any) -> tuple[dict[str, np.ndarray], str | None]:
        """The sample's arrays, and a note when a documented rule filled something in (else None)."""
        raise NotImplementedError


RECIPES: Registry[type[Recipe]] = Registry("prepare recipe")


def plan_shards(samples: list[Sample], shard_size: int) -> dict[str, list[Sample]]:
    shards = {}
    for split in ("train", "val", "test"):
        members = sorted((s for s in samples if s.split == split), key=lambda s: s.id)
        for k, start in enumerate(range(0, len(members), shard_size)):
            shards[f"{split}-{k:05d}"] = members[start : start + shard_size]
    return shards


def npy_bytes(array: np.ndarray) -> bytes:
    buffer = io.BytesIO()
    np.save(buffer, array)
    return buffer.getvalue()


def write_shard(recipe: Recipe, options: Any, stored: list[Stored], folder: Path, samples: list[Sample], layout: dict[str, Any]) -> dict:
    """Decode the samples of one shard and write it; runs in a worker process."""

    arrays = {s.name: np.zeros((len(samples), *s.shape), dtype=s.dtype) for s in stored}
    ids, labels, skipped, notes = [], [], [], []
    for sample in samples:
        try:
            decoded, note = recipe.decode(sample, options)
            for s in stored:
                got = decoded[s.name]
                if got.shape != s.shape or got.dtype != np.dtype(s.dtype):
                    raise DataError(f"decoded {s.name} has shape {got.shape} {got.dtype}, expected {s.shape} {s.dtype}")
        except Exception as error:  # one bad file must not stop a day-long prepare: it is reported instead
            skipped.append({"id": sample.id, "split": sample.split, "why": str(error) or type(error).__name__,
                            **({"kind": error.kind} if isinstance(getattr(error, "kind", None), str) else {})})
            continue
        for s in stored:
            arrays[s.name][len(ids)] = decoded[s.name]
        if note:
            notes.append({"id": sample.id, "split": sample.split, "note": note})
        ids.append(sample.id)
        labels.append(sample.label)
    files = {}
    for s in stored:
        data = npy_bytes(arrays[s.name][: len(ids)])
        atomic_write_bytes(folder / f"{s.name}.npy", data)
        files[s.name] = {"bytes": len(data), "blake2b": hashlib.blake2b(data).hexdigest()}
    manifest = {"planned": [s.id for s in samples], "ids": ids, "labels": labels, "skipped": skipped, "notes": notes,
                "files": files, "sources": source_stamps(samples), **({"layout": layout} if layout else {})}
    write_json(folder.with_suffix(".json"), manifest)
    return manifest


def source_stamps(samples: list[Sample]) -> dict[str, dict[str, list[int] | None]]:
    """Size and modification time of each sample's raw files (None: missing), to notice a changed one,
    and the listing's cells of a sample that has any. The one fingerprint of raw data: prepare's reuse
    of a shard and the folder data set's prepared cache (data/folder_prepare.py) both rest on it."""
    stamps = {}
    for sample in samples:
        stamps[sample.id] = {role: file_stamp(Path(source)) for role, source in sample.sources.items()}
        if sample.cells:
            stamps[sample.id]["cells"] = sample.cells
    return stamps


def file_stamp(path: Path) -> list[int] | None:
    try:
        status = path.stat()
    except OSError:  # missing, or not reachable: decode names why
        return None
    return [status.st_size, status.st_mtime_ns]


def file_digest(path: Path) -> str:
    digest = hashlib.blake2b()
    with open(path, "rb") as handle:
        for chunk in iter(lambda: handle.read(1 << 20), b""):
            digest.update(chunk)
    return digest.hexdigest()


def damaged_files(folder: Path, files: dict[str, dict], *, checksums: bool) -> dict[str, str]:
    """The array files of the shard in `folder` that differ from its manifest's record, and how;
    sizes only (one stat each) unless `checksums`. Shards written before sizes were recorded pass."""
    damaged = {}
    for name, record in files.items():
        path = folder / f"{name}.npy"
        size = path.stat().st_size if path.is_file() else None
        if size != record["bytes"]:
            damaged[name] = "is missing" if size is None else f"holds {size} bytes, prepare wrote {record['bytes']}"
        elif checksums and file_digest(path) != record["blake2b"]:
            damaged[name] = "differs from what prepare wrote (checksum)"
    return damaged


def read_shard_manifest(path: Path, samples: list[Sample], layout: dict[str, Any]) -> dict | None:
    """A finished shard's manifest, or None when the shard must be (re)written: never finished, planned
    with other samples or another layout, labelled otherwise (a label edited, a class added), damaged
    since, or one of its samples' raw files changed since."""

    if not path.is_file():
        return None
    try:
        manifest = read_json(path)
    except UserError:  # not valid JSON: a shard cut short, to be written again
        return None
    label_of = {s.id: s.label for s in samples}
    if (manifest.get("planned") != [s.id for s in samples] or manifest.get("layout", {}) != layout
            or manifest.get("labels") != [label_of.get(i) for i in manifest.get("ids", [])]):
        return None
    if damaged_files(path.with_suffix(""), manifest.get("files", {}), checksums=True):
        return None
    stamps = source_stamps(samples)
    return manifest if manifest.get("sources", stamps) == stamps else None  # shards written before stamps were recorded pass


def manifest_digest(manifest: dict) -> str:
    """What index.json records of a shard's manifest: a digest of its contents."""
    return hashlib.blake2b(json.dumps(manifest, sort_keys=True).encode()).hexdigest()


def refuse_empty_splits(what: str, verb: str, counts: Mapping[str, int], options: PrepareOptions, hint: str) -> None:
    """DataFormatError naming each split without a sample: a model needs samples to train on, to choose
    its epoch on and to be tested on (val may stay empty when val_fraction=0 asks for none)."""
    needed = ("train", "val", "test") if options.val_fraction > 0 else ("train", "test")
    empty = [split for split in needed if not counts.get(split)]
    if empty:
        sizes = ", ".join(f"{split} {counts.get(split, 0)}" for split in ("train", "val", "test"))
        raise DataFormatError(f"{what}: the {' and '.join(empty)} split {verb} no sample ({sizes}): {hint}")


def start_worker() -> None:
    """A decoding worker: one torch thread (a worker per core already fills the machine, and torch's own
    threads, for flow computed during prepare, would oversubscribe it), and a watch that ends it when the
    process that started it is gone: a `prepare` killed outright (SIGKILL) cannot stop its pool."""
    torch.set_num_threads(1)
    threading.Thread(target=exit_when_orphaned, args=(os.getppid(),), daemon=True).start()


# How often a decoding worker checks that its parent is alive: the longest an orphan outlives it.
PARENT_CHECK_SECONDS = 0.5


def exit_when_orphaned(parent: int) -> None:
    while os.getppid() == parent:  # a process whose parent dies is handed to another (init)
        time.sleep(PARENT_CHECK_SECONDS)
    os._exit(1)


def prepare(name: str, src: str | Path, dst: str | Path, options: dict[str, Any] | None = None, *,
            workers: int | None = None, progress: bool = True, before_writing: Callable[[int], None] | None = None) -> dict[str, Any]:
    """Prepare raw data set `name` from `src` into `dst`; returns the report (also in dst/report.json).
    `before_writing(bytes)`, when given, hears how many bytes of arrays are about to be written (and
    may refuse by raising) before the first shard is touched."""

    recipe = RECIPES.get(name)()
    opts = validate(recipe.Options, options or {}, f"prepare options of {name}")
    src, dst = Path(src), Path(dst)
    if not src.is_dir():
        raise DataError(f"--src {src} is not a folder; expected the raw {name} download")
    settings = {"format": FORMAT, "dataset": name, "options": opts.model_dump(mode="json")}
    settings_file = dst / "prepare.json"
    if settings_file.is_file():
        previous = read_json(settings_file)
        if previous != settings:
            raise DataError(f"{dst} was prepared with other settings ({previous}); use another --dst, or delete it to start over")
    else:
        write_json(settings_file, settings)

    scan = recipe.scan(src, opts)
    for warning in scan.warnings:
        print(f"warning: prepare {name}: {warning}", file=sys.stderr)
    carved = settle_validation([s.split for s in scan.samples], opts.val_fraction, opts.seed, groups=[s.group for s in scan.samples])
    samples = [replace(s, split=split) for s, split in zip(scan.samples, carved)]
    refuse_empty_splits(f"prepare {name}: {src}", "would hold", Counter(s.split for s in samples), opts,
                        f"{len(samples)} samples of {len({s.group for s in samples})} groups (speakers, source videos, objects: a "
                        "group never straddles two splits); add data, or change the split options (val_fraction, test_fraction...)")
    stored = recipe.stored(opts)
    shards = plan_shards(samples, opts.shard_size)
    manifests = {k: read_shard_manifest(dst / "shards" / f"{k}.json", v, scan.layout) for k, v in shards.items()}
    pending = [k for k, m in manifests.items() if m is None]
    workers = workers or os.cpu_count() or 1
    if pending and before_writing is not None:
        per_sample = sum(math.prod(s.shape) * np.dtype(s.dtype).itemsize for s in stored)
        before_writing(per_sample * sum(len(shards[k]) for k in pending))
    if pending and (dst / "index.json").exists():
        # The old index describes the shards as they were: remove it before the first one is touched, so
        # that a rerun stopped half-way leaves a folder that reads as unfinished, never a stale index.
        (dst / "index.json").unlink()

    bar = tqdm(total=sum(len(shards[k]) for k in pending), desc=f"prepare {name}", unit="sample", disable=not progress, dynamic_ncols=True)
    jobs = (recipe, opts, stored)
    if workers == 1:
        for k in pending:
            manifests[k] = write_shard(*jobs, dst / "shards" / k, shards[k], scan.layout)
            bar.update(len(shards[k]))
    else:
        with ProcessPoolExecutor(workers, initializer=start_worker) as pool:
            futures = {pool.submit(write_shard, *jobs, dst / "shards" / k, shards[k], scan.layout): k for k in pending}
            for future in as_completed(futures):
                manifests[futures[future]] = future.result()
                bar.update(len(shards[futures[future]]))
    bar.close()

    splits = {split: [{"shard": k, "count": len(m["ids"])} for k, m in manifests.items() if k.startswith(split + "-")] for split in ("train", "val", "test")}
    report = {
        "dataset": name, "src": str(src), "dst": str(dst),
        "listed": len(scan.samples) + len(scan.skipped),
        "written": {split: sum(e["count"] for e in entries) for split, entries in splits.items()},
        "shards": {"total": len(shards), "written": len(pending), "reused": len(shards) - len(pending)},
        "skipped": scan.skipped + [x for m in manifests.values() for x in m["skipped"]],
        "filled": [x for m in manifests.values() for x in m["notes"]],
        "warnings": scan.warnings,
    }
    if recipe.record_groups:
        report["groups"] = {split: sorted({s.group for s in samples if s.split == split}) for split in ("train", "val", "test")}
    write_json(dst / "report.json", report)
    if not sum(report["written"].values()):
        raise DataFormatError(f"prepare {name}: no sample of {src} could be prepared ({len(report['skipped'])} left out); "
                              f"{dst / 'report.json'} says why for each")
    refuse_empty_splits(f"prepare {name}: {src}", "holds", report["written"], opts,
                        f"{len(report['skipped'])} samples were left out; {dst / 'report.json'} says why for each")
    write_json(dst / "index.json", {
        "format": FORMAT, "dataset": name, "class_names": scan.class_names,
        "stored": [asdict(s) for s in stored], "splits": splits, **({"layout": scan.layout} if scan.layout else {}),
        "manifests": {k: manifest_digest(read_json(dst / "shards" / f"{k}.json")) for k in shards},
    })
    return report


class ShardArray:
    """One stored array of a shard (a .npy file, C order), read by rows with positioned reads into the
    batch's own buffer. Holds the file open: `ShardFiles` bounds how many are."""

    def __init__(self, path: Path) -> None:
        with open(path, "rb") as handle:
            shape, self.dtype = npy_header(handle)
            self.offset = handle.tell()
        self.path, self.shape = path, shape
        self.row_bytes = math.prod(shape[1:]) * self.dtype.itemsize
        self.fd = os.open(path, os.O_RDONLY)

    def close(self) -> None:
        os.close(self.fd)

    def rows(self, local: np.ndarray) -> np.ndarray:
        """The rows at the ascending indices `local`."""
        out = np.empty((len(local), *self.shape[1:]), self.dtype)
        buffer = memoryview(out.reshape(-1).view(np.uint8)) if out.size else memoryview(b"")
        breaks = np.flatnonzero(np.diff(local) != 1) + 1  # runs of consecutive rows: one read each
        for start, end in zip([0, *breaks.tolist()], [*breaks.tolist(), len(local)]):
            want = (end - start) * self.row_bytes
            got = os.preadv(self.fd, [buffer[start * self.row_bytes : end * self.row_bytes]], self.offset + int(local[start]) * self.row_bytes)
            if got != want:
                raise DataFormatError(f"{self.path}: rows {local[start]}..{local[end - 1]} lie past its end (the file was cut short); "
                                      "rerun the same `latefusion prepare` command to repair it")
        return out


class ShardFiles:
    """The open ShardArrays of a process, the least recently used closed beyond `limit` (a data set of
    thousands of shards would otherwise exhaust the process's file descriptors)."""

    def __init__(self, limit: int = 256) -> None:
        self.limit, self.open = limit, {}

    def get(self, path: Path) -> ShardArray:
        array = self.open.pop(path, None) or ShardArray(path)
        self.open[path] = array  # now the most recent
        if len(self.open) > self.limit:
            self.open.pop(next(iter(self.open))).close()
        return array

    def __del__(self) -> None:
        for array in self.open.values():
            array.close()


class PreparedSplit(Split):
    """One split of a prepared folder. Array files are opened on first use in each process (a
    DataLoader worker opens its own); a batch is gathered shard by shard with positioned reads of its
    rows (ShardArray), then `transform` augments them into compact batches (uint8 frames, int16 audio)
    that the model's input stages turn into float inputs on its device."""

    # Prepare decoded and checked every sample as it wrote it; the data checks read only ids and labels
    # instead of decoding the whole split again at every start.
    checked_when_prepared = True

    def __init__(self, root: Path, shards: list[dict], labels: list[int], ids: list[str], arrays: list[str], transform: Transforms,
                 evaluation: Transforms, digests: list[str], files: dict[str, dict]) -> None:
        self.root = root
        # Each shard's manifest_digest, not the manifests: those hold every sample's source stamps and
        # cells, which would make a split's memory grow with the data set.
        self.entries, self.digests, self.evaluation = shards, digests, evaluation
        self.sample_ids_ = ids
        self.shards = [entry["shard"] for entry in shards]
        self.files = files  # shard -> its manifest's record of array files (size, checksum)
        self.starts = np.cumsum([0] + [entry["count"] for entry in shards]).tolist()
        self.labels = torch.as_tensor(labels, dtype=torch.long)
        self.arrays = arrays
        self.transform = transform
        self.augments = transform.augments
        self._files = ShardFiles()

    def __getstate__(self) -> dict:
        return {**self.__dict__, "_files": None}  # files are opened again in each process, not pickled

    def __setstate__(self, state: dict) -> None:
        self.__dict__.update(state, _files=ShardFiles())

    def __len__(self) -> int:
        return len(self.labels)

    def verify(self) -> list[Problem]:
        """Shards whose array files no longer match their checksums (the data checks' thorough hook)."""
        problems = []
        for shard in self.shards:
            for name, how in damaged_files(self.root / "shards" / shard, self.files.get(shard, {}), checksums=True).items():
                problems.append(Problem("damaged-shard", f"shards/{shard}/{name}.npy {how}; rerun the same `latefusion prepare` command to repair it"))
        return problems

    def _array(self, shard: str, array: str) -> ShardArray:
        return self._files.get(self.root / "shards" / shard / f"{array}.npy")

    def raw(self, indices: list[int]) -> dict[str, torch.Tensor]:
        """The stored arrays of `indices`, in that order."""
        order = np.argsort(indices, kind="stable")
        sorted_indices = np.asarray(indices)[order]
        parts: dict[str, list[np.ndarray]] = {a: [] for a in self.arrays}
        position = 0
        while position < len(sorted_indices):
            shard = bisect.bisect_right(self.starts, sorted_indices[position]) - 1
            end = int(np.searchsorted(sorted_indices, self.starts[shard + 1]))
            local = sorted_indices[position:end] - self.starts[shard]
            for a in self.arrays:
                parts[a].append(self._array(self.shards[shard], a).rows(local))
            position = end
        inverse = np.empty_like(order)
        inverse[order] = np.arange(len(order))
        return {a: torch.from_numpy(np.concatenate(chunks)[inverse]) for a, chunks in parts.items()}

    def __getitems__(self, indices: list[int]) -> Batch:
        return self.transform(self.raw(indices)), self.labels[torch.as_tensor(indices)]

    def sample_ids(self) -> list[str]:
        return self.sample_ids_

    def content_hash(self) -> str:
        # What prepare recorded of each shard (its samples, and the sizes and checksums of its arrays
        # where recorded) and the transform: cheap, and it changes whenever prepare rewrites a shard.
        return hash_parts(json.dumps([self.entries, self.digests], sort_keys=True), self.arrays, repr(self.transform))

    def deterministic(self) -> Split:
        if not self.augments:
            return self
        return PreparedSplit(self.root, self.entries, self.labels.tolist(), self.sample_ids_, self.arrays, self.evaluation,
                             self.evaluation, self.digests, self.files)

    def only(self, modalities: list[str]) -> Split:
        transform, evaluation = (Transforms({m: t.plan[m] for m in modalities}) for t in (self.transform, self.evaluation))
        return PreparedSplit(self.root, self.entries, self.labels.tolist(), self.sample_ids_, evaluation.arrays, transform, evaluation,
                             self.digests, self.files)


@dataclass
class Prepared:
    """A prepared folder's index, opened for reading."""

    root: Path
    dataset: str
    options: dict[str, Any]  # the prepare options (sample rate, sizes)
    class_names: list[str]
    stored: dict[str, Stored]
    splits: dict[str, list[dict]]
    manifest_digests: dict[str, str] = field(default_factory=dict)  # shard -> manifest_digest; {} in older indexes
    layout: dict[str, Any] = field(default_factory=dict)  # what the recipe settled from the data (Scan.layout)

    def split(self, split: str, arrays: list[str], transform: Transforms, evaluation: Transforms) -> PreparedSplit:
        labels, ids, digests, files = [], [], [], {}
        for entry in self.splits[split]:
            shard = entry["shard"]
            manifest = read_json(self.root / "shards" / f"{shard}.json")
            stale = stale_entry(entry, manifest, self.manifest_digests.get(shard))
            if stale:
                raise DataFormatError(f"{self.root / 'index.json'} does not describe shards/{shard}: {stale} (a `prepare` rerun stopped before "
                                      f"it wrote its index?); rerun the same `latefusion prepare {self.dataset}` command to write both again")
            damaged = damaged_files(self.root / "shards" / shard, manifest.get("files", {}), checksums=False)
            if damaged:
                hows = "; ".join(f"{name}.npy {how}" for name, how in damaged.items())
                raise DataFormatError(f"{self.root / 'shards' / shard}: {hows}; rerun the same `latefusion prepare {self.dataset}` command to repair it")
            labels += manifest["labels"]
            ids += manifest["ids"]
            digests.append(manifest_digest(manifest))
            files[shard] = manifest.get("files", {})
        return PreparedSplit(self.root, self.splits[split], labels, ids, arrays, transform, evaluation, digests, files)


def stale_entry(entry: dict, manifest: dict, digest: str | None) -> str | None:
    """How the index's `entry` of a shard disagrees with the shard's manifest, or None."""
    count, ids, labels = entry.get("count"), manifest.get("ids", []), manifest.get("labels", [])
    if count != len(ids) or len(labels) != len(ids):
        return f"it lists {count} samples, shards/{entry['shard']}.json holds {len(ids)} ids and {len(labels)} labels"
    if digest is not None and manifest_digest(manifest) != digest:
        return f"shards/{entry['shard']}.json was written after the index (its digest differs)"
    return None


def open_prepared(path: str | None, dataset: str) -> Prepared:

    if path is None:
        raise ConfigError(f"data.path is not set: data set {dataset!r} reads a prepared folder; make one with `latefusion prepare {dataset} --src RAW --dst PREPARED` and set data.path=PREPARED")
    root = Path(path)
    index_file = root / "index.json"
    if not index_file.is_file():
        hint = "prepare stopped before it finished; rerun the same prepare command to complete it" if (root / "prepare.json").is_file() else f"run `latefusion prepare {dataset} --src RAW --dst {root}` first"
        raise DataError(f"data.path {root} holds no index.json: {hint}")
    index = read_json(index_file)
    if index.get("format") != FORMAT or index.get("dataset") != dataset:
        raise DataError(f"{index_file} is a {index.get('dataset')!r} folder in format {index.get('format')!r}; data.name {dataset!r} expects {FORMAT!r} of {dataset!r}")
    stored = {s["name"]: Stored(s["name"], tuple(s["shape"]), s["dtype"]) for s in index["stored"]}
    return Prepared(root, dataset, read_json(root / "prepare.json")["options"], index["class_names"], stored, index["splits"],
                    index.get("manifests", {}), index.get("layout", {}))


def prepared_bundle(prepared: Prepared, transforms: Callable[[bool], Any], kinds: dict[str, str], encoders: dict[str, dict]) -> DataBundle:
    """A DataBundle over a prepared folder. `transforms(train)` gives the `augment.Transforms` of a
    split (augmenting for train only); `kinds` is each modality's kind (frames, flow, audio, image).
    Each modality's shape is what its encoder takes, after the input stage its transform names."""
    evaluation = transforms(False)
    modalities = [Modality(m, kinds[m], transform.shape(prepared.stored[array].shape), transform.stage) for m, (array, transform) in evaluation.plan.items()]
    splits = {split: prepared.split(split, evaluation.arrays, transforms(split == "train"), evaluation) for split in ("train", "val", "test")}
    return DataBundle(prepared.dataset, modalities, len(prepared.class_names), prepared.class_names, encoders, splits)
