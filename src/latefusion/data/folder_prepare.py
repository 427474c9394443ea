"""Your own data in the prepared format, and the `folder` data set that picks the road.

`latefusion prepare folder --src MY_DATA --dst PREPARED` writes a manifest folder (data/folder.py,
docs/data-format.md: arrays, images, audio, number columns, and video clips) into the prepared format
of the paper's data sets (data/prepared.py): sharded, read by rows, parallel, resumable, every file
read and checked once, the samples that cannot be used listed in report.json and left out.

What the recipe stores per modality (the data's layout, settled from the files by `scan` and kept in
index.json):

  number columns, 1-D .npy   float32 (features,)            kind vector (mlp), standardised when read
  2-D / 3-D .npy             float32 as stored              kind image (cnn)
  images                     uint16 (C, H, W), pixel x 65535 kind image (cnn): 8- and 16-bit pixels exact
  audio, VIDEO#audio         float32 (samples,), mono       kind audio (audio-cnn), at one rate and length
  video                      uint8 (frames, size, size, 3)  kind frames (resnet18), frames spread evenly

Shapes come from the files as the folder reader settles them: `image_size` or the most common image
size (RGB when any image is), the most common .npy shape, `sample_rate` or the first train clip's
rate, `audio_seconds` or the longest clip (by its header). A sample of another shape is a
`wrong-shape` problem, as in memory. Validation is carved by the folder reader's rule (carve.py),
classes are numbered by its rule, and each sample's files are read by its `read_cell`: one sample
check for both roads.

The `folder` data set (`--data MY_DATA`) reads a small folder into memory (folder.read_folder) and,
above `data.options.prepare_above` samples or with a video column, through a prepared copy in a cache
(`cached_copy`): it says where and how big before writing, refuses when the disk lacks the room, and
reuses the copy while the data's fingerprint (prepared.source_stamps of every sample, and the
manifest's cells) is unchanged; a change makes prepare run again in the same folder, which rewrites
only the shards whose samples changed. A prepared folder itself (`--data PREPARED`) is read as is.
"""

from __future__ import annotations

import contextlib
import dataclasses
import fcntl
import hashlib
import json
import os
import shutil
import sys
from collections import Counter
from pathlib import Path
from typing import Any

import numpy as np
import torch
from pydantic import Field

from ..config import ConfigError, DataConfig, validate
from ..errors import DataError
from ..storage import read_json, write_json
from .augment import FrameTransform, ImageAugment, Transforms
from .base import DataBundle
from .checks import Problem
from .files import DataFormatError, FileProblem, npy_header, size_text, wav_length
from .folder import (ENCODER_BY_KIND, ContentOptions, FolderOptions, Listing, audio_rate, cell_path, check_sample_rank, column_kind,
                     duplicate_ids, numeric_columns, number_classes, read_cell, read_folder, read_listing, settled_sample, settled_splits)
from .media import MediaError, audio_length, image_header
from .prepared import RECIPES, Prepared, Recipe, Sample, Scan, Stored, open_prepared, prepare, prepared_bundle, source_stamps
from .registry import DATASETS
from .standardize import standardize_stage

IMAGE_SCALE = 65535  # images are stored as uint16: an 8-bit pixel k as k x 257, exactly k / 255 again when read
FRAMES_ENCODER = "resnet18"  # what the paper recipes train frames with (ucf101.py, vggsound.py)


class FolderPrepareOptions(ContentOptions):
    shard_size: int = Field(256, gt=0)

    @property
    def seed(self) -> int:  # the name prepare() reads; the folder data set calls it val_seed
        return self.val_seed


def header_of(path: Path, kind: str, track: bool) -> Any:
    """What a file's header says of its shape (image: (H, W, C); array: shape; audio: (samples, rate)), or
    None when it cannot be read: decoding it later names the problem."""
    try:
        if kind == "image":
            return image_header(path)
        if kind == "array":
            with open(path, "rb") as handle:
                return npy_header(handle)[0] or (1,)
        if kind == "audio":
            return wav_length(path) if path.suffix.lower() == ".wav" and not track else audio_length(path)
    except (FileProblem, MediaError, OSError):
        return None
    return None


def most_common(values: list) -> Any:
    counts = Counter(values)
    return max(counts, key=counts.get) if counts else None


def file_layout(src: Path, name: str, kind: str, cells: list[str], splits: list[str], options: ContentOptions) -> dict[str, Any]:
    """How a file column is stored: its kind, shape and dtype (and rate for audio), settled from the
    headers of its files by the folder reader's rules."""
    if kind == "video":
        return {"file": kind, "kind": "frames", "shape": [options.video_frames, options.video_size, options.video_size, 3], "dtype": "uint8"}
    headers = {row: header_of(src / cell_path(cell)[0], kind, cell_path(cell)[1]) for row, cell in enumerate(cells) if cell}
    headers = {row: h for row, h in headers.items() if h is not None}
    if kind == "image":
        size = options.image_size or most_common([h[:2] for h in headers.values()]) or (1, 1)
        height, width = (size, size) if isinstance(size, int) else size
        channels = 3 if any(h[2] == 3 for h in headers.values()) else 1
        return {"file": kind, "kind": "image", "shape": [channels, height, width], "dtype": "uint16"}
    if kind == "audio":
        rates = {row: h[1] for row, h in headers.items()}
        rate = audio_rate(rates, splits, options) if rates else (options.sample_rate or 16000)
        length = (max(1, int(options.audio_seconds * rate)) if options.audio_seconds
                  else max((max(1, round(n * rate / r)) for n, r in headers.values()), default=1))
        return {"file": kind, "kind": "audio", "shape": [length], "dtype": "float32", "rate": rate}
    shape = list(most_common([tuple(h) for h in headers.values()]) or (1,))
    check_sample_rank(name, tuple(shape), src / "manifest.csv")
    return {"file": kind, "kind": "vector" if len(shape) == 1 else "image", "shape": shape, "dtype": "float32"}


@dataclasses.dataclass
class Listed:
    """A manifest's samples as prepare plans them, and the problems found before any file is decoded."""

    listing: Listing
    samples: list[Sample]
    rows: list[int]  # the row of each sample
    class_names: list[str]
    kinds: dict[str, str | None]  # file column -> kind of its files
    skipped: list[dict[str, str]]


def list_samples(src: Path, options: ContentOptions) -> Listed:
    """The manifest's samples (files, cells, class index, settled split) and the problems of the rows
    left out: what folder.read_folder finds without reading a file (labels, ids, number cells, empty cells)."""
    listing = read_listing(src, options)
    table, rows, manifest = listing.table, listing.rows, src / "manifest.csv"
    splits = settled_splits(table, options, src)
    class_names, targets, problems = number_classes(table, splits, src)
    problems += duplicate_ids(table, splits)
    kinds = {}
    for name, features in listing.modalities.items():
        if features is not None:
            problems += numeric_columns(name, features, rows, table.where, manifest)[1]
            continue
        cells = [row[name] for row in rows]
        kinds[name] = column_kind(manifest, name, cells, table.where)
        problems += [Problem("missing-modality", f"{table.where[r]}, modality {name!r}: no file given", index=r) for r, cell in enumerate(cells) if not cell]
    bad = {}
    for problem in problems:
        bad.setdefault(problem.index, problem)
    samples, kept, skipped = [], [], []
    for row, cells in enumerate(rows):
        if row in bad:
            skipped.append({"id": table.ids[row], "split": splits[row], "why": bad[row].message, "kind": bad[row].kind})
            continue
        columns = {c: cells[c] for c in cells if c.split(".")[0] in listing.modalities}
        sources = {name: str(src / cell_path(cells[name])[0]) for name in kinds}
        samples.append(Sample(table.ids[row], targets[row], splits[row], table.ids[row], sources, columns))
        kept.append(row)
    return Listed(listing, samples, kept, class_names, kinds, skipped)


@RECIPES.register("folder")
class FolderRecipe(Recipe):
    """Your own data: a folder with manifest.csv (docs/data-format.md), video columns included."""

    name = "folder"
    Options = FolderPrepareOptions

    def scan(self, src: Path, options: FolderPrepareOptions) -> Scan:
        if not (src / "manifest.csv").is_file():
            raise DataFormatError(f"--src {src}: no manifest.csv; expected a folder in the format of docs/data-format.md")
        listed = list_samples(src, options)
        splits = [s.split for s in listed.samples]
        kept_rows = [listed.listing.rows[row] for row in listed.rows]
        columns = {}
        for name, features in listed.listing.modalities.items():
            if features is not None:
                columns[name] = {"kind": "vector", "shape": [len(features)], "dtype": "float32", "features": features}
            elif listed.kinds[name] is not None:
                columns[name] = file_layout(src, name, listed.kinds[name], [row[name] for row in kept_rows], splits, options)
        self.src, self.columns = src, columns
        return Scan(listed.samples, listed.class_names, listed.skipped, layout={"columns": columns})

    def stored(self, options: FolderPrepareOptions) -> list[Stored]:
        return [Stored(name, tuple(column["shape"]), column["dtype"]) for name, column in self.columns.items()]

    def decode(self, sample: Sample, options: FolderPrepareOptions) -> tuple[dict[str, np.ndarray], None]:
        return {name: self.decode_column(sample, name, column, options) for name, column in self.columns.items()}, None

    def decode_column(self, sample: Sample, name: str, column: dict[str, Any], options: FolderPrepareOptions) -> np.ndarray:
        if "features" in column:
            return np.array([float(sample.cells[f"{name}.{feature}"]) for feature in column["features"]], np.float32)
        cell = sample.cells[name]
        try:
            value, rate = read_cell(self.src, cell, column["file"], options)
        except FileProblem as problem:
            raise FileProblem(problem.kind, f"modality {name!r}: {cell} {problem}") from None
        value = settled_sample(value, rate, column["file"], tuple(column["shape"]), column.get("rate"))
        if column["file"] == "image":
            value = np.round(value * IMAGE_SCALE)
        if list(value.shape) != column["shape"]:
            hint = "; set data.options.image_size=[H, W] (and image_fit) to resize every image" if column["file"] == "image" else ""
            raise FileProblem("wrong-shape", f"modality {name!r}: {cell} has shape {tuple(value.shape)}, the other samples "
                                             f"{tuple(column['shape'])}; every sample of a modality needs the same shape{hint}")
        return value.astype(column["dtype"])


class ArrayTransform:
    """A stored array as float32, divided by `scale` (images stored as uint16), for every split alike."""

    train = False

    def __init__(self, scale: float, stage: dict[str, Any] | None) -> None:
        self.scale, self.stage = scale, stage

    def __repr__(self) -> str:  # the settings, for data fingerprints (data/base.py)
        return f"{type(self).__name__}({self.scale})"

    def __call__(self, x: torch.Tensor) -> torch.Tensor:
        x = x.to(torch.float32)
        return x / self.scale if self.scale != 1 else x

    def shape(self, stored: tuple[int, ...]) -> tuple[int, ...]:
        return stored


def column_transform(column: dict[str, Any], options: FolderOptions, train: bool):
    if column["kind"] == "frames":
        return FrameTransform(ImageAugment(crop=column["shape"][1]), train)
    stage = standardize_stage() if column["kind"] == "vector" and options.standardize_numbers else None
    return ArrayTransform(IMAGE_SCALE if column["dtype"] == "uint16" else 1, stage)


def prepared_folder_bundle(prepared: Prepared, options: FolderOptions, name: str) -> DataBundle:
    """The folder data set read from a prepared folder (its shards read a batch at a time)."""
    columns = prepared.layout["columns"]

    def transforms(train: bool) -> Transforms:
        return Transforms({m: (m, column_transform(column, options, train)) for m, column in columns.items()})

    kinds = {m: column["kind"] for m, column in columns.items()}
    encoders = {m: {"name": FRAMES_ENCODER if column["kind"] == "frames" else ENCODER_BY_KIND[column["kind"]],
                    "options": {"sample_rate": column["rate"]} if column["kind"] == "audio" else {}} for m, column in columns.items()}
    return dataclasses.replace(prepared_bundle(prepared, transforms, kinds, encoders), name=name)


def cache_root(options: FolderOptions) -> Path:
    if options.cache_dir:
        return Path(options.cache_dir).expanduser()
    if os.environ.get("LATEFUSION_CACHE"):
        return Path(os.environ["LATEFUSION_CACHE"]).expanduser()
    return Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache") / "latefusion"


def prepare_options(options: FolderOptions) -> dict[str, Any]:
    """The folder options that decide the prepared copy's content (ContentOptions), as prepare takes them."""
    return options.model_dump(mode="json", include=set(ContentOptions.model_fields))


def fingerprint(src: Path, options: FolderOptions) -> str:
    """The data's fingerprint: the manifest's cells and each sample's files (size, modification time),
    as prepare's shards record them (prepared.source_stamps), and the options that decide the content."""
    listed = list_samples(src, options)
    digest = hashlib.blake2b(digest_size=16)
    digest.update(json.dumps([prepare_options(options), source_stamps(listed.samples), listed.skipped], sort_keys=True).encode())
    return digest.hexdigest()


@contextlib.contextmanager
def locked(path: Path):
    """One process at a time (the processes of torchrun build the data set together)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "w") as handle:
        fcntl.flock(handle, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(handle, fcntl.LOCK_UN)


def folder_bytes(root: Path) -> int:
    return sum(f.stat().st_size for f in root.rglob("*") if f.is_file())


def cached_copy(src: Path, options: FolderOptions, why: str) -> Path:
    """The prepared copy of the manifest folder `src` in the cache, made or brought up to date first."""
    src = src.resolve()
    root = cache_root(options).resolve()
    if root.is_relative_to(src):
        raise ConfigError(f"the cache {root} lies inside the data folder {src}; a prepared copy never goes there: set "
                          "data.options.cache_dir (or $LATEFUSION_CACHE) to a folder outside it")
    key = hashlib.blake2b(json.dumps([str(src), prepare_options(options)]).encode(), digest_size=8).hexdigest()
    copy = root / "prepared" / f"{src.name}-{key}"
    with locked(root / "prepared" / f"{copy.name}.lock"):
        stamp = copy / "source.json"
        current = fingerprint(src, options)
        if (copy / "index.json").is_file() and stamp.is_file() and read_json(stamp).get("fingerprint") == current:
            print(f"latefusion: reading {src} through its prepared copy {copy} ({size_text(folder_bytes(copy))}; the data are "
                  "unchanged since it was made)", file=sys.stderr)
            return copy
        stamp.unlink(missing_ok=True)  # the copy no longer describes the data until prepare has brought it up to date

        def room(needed: int) -> None:
            free = shutil.disk_usage(next(p for p in (copy, *copy.parents) if p.exists())).free
            print(f"latefusion: {src} ({why}) is read through a prepared copy: writing about {size_text(needed)} into {copy} "
                  f"({size_text(free)} free there); it is reused while the data are unchanged, delete it to free the space",
                  file=sys.stderr)
            if needed > free:
                raise DataError(f"preparing {src} needs about {size_text(needed)} in {copy}, which has {size_text(free)} free; set "
                                "data.options.cache_dir (or $LATEFUSION_CACHE) to a disk with room")

        prepare("folder", src, copy, prepare_options(options), progress=sys.stderr.isatty(), before_writing=room)
        write_json(stamp, {"fingerprint": current, "src": str(src)})
    return copy


def left_out(copy: Path, src: Path, skip_bad: bool) -> None:
    """The samples prepare left out of the cached copy refuse the data set, as bad samples in memory do,
    unless `skip_bad` (then stderr says how many)."""
    skipped = read_json(copy / "report.json")["skipped"]
    if not skipped:
        return
    listed = "\n  ".join(f"{s['split']} {s['id']!r}: {s.get('kind', 'unreadable-sample')}: {s['why']}" for s in skipped[:20])
    more = f"\n  ... and {len(skipped) - 20} more" if len(skipped) > 20 else ""
    if not skip_bad:
        raise DataFormatError(f"{src}: {len(skipped)} sample(s) could not be used (all in {copy / 'report.json'}):\n  {listed}{more}\n"
                              "fix them, or pass --skip-bad (data.skip_bad=true) to train without them")
    print(f"skip_bad: {len(skipped)} sample(s) of {src} left out (all in {copy / 'report.json'}):\n  {listed}{more}", file=sys.stderr)


def prepare_reason(src: Path, options: FolderOptions) -> str | None:
    """Why the manifest folder `src` is read through a prepared copy, or None to read it into memory."""
    if options.prepare == "never":
        return None
    if options.prepare == "always":
        return "data.options.prepare=always"
    listing = read_listing(src, options)
    videos = [m for m, features in listing.modalities.items() if features is None
              and column_kind(src / "manifest.csv", m, [row[m] for row in listing.rows], listing.table.where) == "video"]
    if videos:
        return f"video column(s) {videos}"
    if len(listing.rows) > options.prepare_above:
        return f"{len(listing.rows):,} samples, over data.options.prepare_above={options.prepare_above:,}"
    return None


@DATASETS.register("folder", options=FolderOptions)
def build(config: DataConfig) -> DataBundle:
    if config.path is None:
        raise ConfigError("data.name=folder needs data.path: a folder with manifest.csv, an .npz file, or a prepared folder")
    options = validate(FolderOptions, config.options, "data.options of the folder data set")
    path = Path(config.path)
    if path.is_dir() and ((path / "index.json").is_file() or (path / "prepare.json").is_file()):
        return prepared_folder_bundle(open_prepared(str(path), "folder"), options, f"folder:{path.resolve()}")
    if path.is_dir() and (path / "manifest.csv").is_file():
        why = prepare_reason(path, options)
        if why is None:
            return read_folder(path, options, config.check)
        copy = cached_copy(path, options, why)
        left_out(copy, path, config.skip_bad)
        return prepared_folder_bundle(open_prepared(str(copy), "folder"), options, f"folder:{path.resolve()}")
    if path.is_file() and path.suffix == ".npz":
        return read_folder(path, options, config.check)
    raise DataFormatError(f"{path}: expected a folder holding manifest.csv, an .npz file, or a folder made by `latefusion prepare folder`")
