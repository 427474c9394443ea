"""Bring your own data: a folder (or one .npz file) in a documented format, no Dataset class to write.

Two forms (docs/data-format.md has the details):

* `manifest.csv` in a folder, columns `id,label,split` (other names: `id_column`, `label_column`,
  `split_column`) plus, per modality, either one file column whose cells are paths (inside the
  folder) to `.npy` arrays, audio (`.wav` read here; `.flac`, `.mp3`, `.ogg`... through PyAV;
  resampled to one rate), `.png`/`.jpg` images (resized by `image_size`), video clips (frames; read
  through a prepared copy, data/folder_prepare.py) or a clip's audio track (`CLIP#audio`), or number
  columns `<modality>.<feature>` that form one vector;
* one `.npz` file with an array per modality plus `label` and `split` arrays (optional `id`).

This module reads a folder into memory (`read_folder`) and holds the rules both roads share: the
manifest's listing, each file's reading and problems (`read_cell`), the carved validation split and
the class numbering. The `folder` data set, which picks the road, is data/folder_prepare.py. New data
without labels (no label or split column) are read for `latefusion predict` by the same rules to a
finished run's modalities and shapes (`unlabeled_samples`).

Vector modalities (number columns, 1-D .npy files, .npz arrays of rank 1 or 2) are standardised per
feature with the train split's statistics, in the model's input stage (data/standardize.py), unless
`data.options.standardize_numbers` is false.

Labels may be strings or numbers: they are mapped to indices in sorted order of the train labels
(numbers by value), and the names are stored with every run. `split` is train / val / test; without a
val split, one is carved out of train with a fixed seed (`val_fraction`, `val_seed`). Every sample of
a modality must have the same shape (audio is cropped or zero-padded to `audio_seconds` if given,
else to the longest clip).

What is wrong with the format as a whole (a missing column, a modality the encoders cannot take)
raises DataFormatError. What is wrong with single samples (a missing, truncated or unreadable file, a
file declaring more than the size limits, a file of another shape, a cell of a number column that is
not a number, a path leaving the folder, a duplicate id, a label never seen in train or none at all) is
collected instead: each split's `check()` names every such sample for the data checks, so
`latefusion check-data` lists them all and `--skip-bad` drops them. Until dropped, such a sample
holds zeros; with the data checks off (`data.check=false`) they are refused here instead.
"""

from __future__ import annotations

import csv
import errno
import math
import os
import zipfile
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

import numpy as np
import torch
from pydantic import Field, PositiveInt
from torch import nn

from ..config import MAX_CLIP_SECONDS, ClipSeconds, FrameCount, ImageSide, SampleRate, Section
from .base import SPLITS, DataBundle, DataSpec, Modality, TensorSplit
from .carve import settle_validation
from .checks import Problem
from .files import MAX_ARRAY_BYTES, DataFormatError, FileProblem, read_npy, read_wav, resample
from .standardize import standardize_stage
from .media import (VIDEO_SUFFIXES, ClipTooShort, MediaError, MediaTooLarge, NoAudioTrack, decode_audio, read_clip_audio, read_clip_frames,
                    read_image_scaled, require_pyav)

__all__ = ["DataFormatError", "FolderOptions", "read_folder"]

# .wav is parsed with the standard library; the other audio types, and videos, are decoded by PyAV (the `video` extra).
AUDIO_SUFFIXES = (".wav", ".flac", ".mp3", ".ogg", ".opus", ".m4a")
KIND_BY_SUFFIX = {**dict.fromkeys(AUDIO_SUFFIXES, "audio"), **dict.fromkeys(VIDEO_SUFFIXES, "video"),
                  ".png": "image", ".jpg": "image", ".jpeg": "image", ".npy": "array"}
# A cell `clips/0001.mp4#audio` names the audio track of a video file: the column is an audio modality.
AUDIO_TRACK = "#audio"
ENCODER_BY_KIND = {"vector": "mlp", "image": "cnn", "audio": "audio-cnn"}
# numpy dtype kinds that are real numbers: bool, signed and unsigned integers, floats
REAL_KINDS = "biuf"
# What the system answers for a path a manifest cell names that cannot be looked up or opened: an
# unreadable-file problem of that sample (other errors, EIO..., keep their traceback).
UNREADABLE_ERRNOS = {errno.ENAMETOOLONG, errno.EACCES, errno.EPERM, errno.ELOOP, errno.EISDIR, errno.ENOTDIR, errno.EINVAL}
# The encoders take vectors (1-D), and images as (H, W) or (C, H, W).
MAX_SAMPLE_RANK = 3


class ContentOptions(Section):
    """The options that decide what is read from a folder (not how it is trained on): a prepared copy
    of the folder is made for one set of them."""

    # The manifest's (or .npz's) columns of sample ids, labels and splits.
    id_column: str = "id"
    label_column: str = "label"
    split_column: str = "split"
    val_fraction: float = Field(0.15, gt=0, lt=1)
    val_seed: int = 0
    audio_seconds: ClipSeconds | None = None
    # Manifest paths must stay inside the data folder unless this is set: a shared manifest should not
    # make training read arbitrary files of the machine it runs on.
    allow_outside_paths: bool = False
    # Images of an image modality resized to this size ([height, width], or one int for a square) by
    # `image_fit`: `resize` stretches each whole image, `center-crop` keeps its aspect ratio and cuts the
    # overhang. Without it, every image must already have the same size.
    image_size: ImageSide | tuple[ImageSide, ImageSide] | None = None
    image_fit: Literal["resize", "center-crop"] = "resize"
    # Audio is resampled to this rate; default: the rate of the first train clip read.
    sample_rate: SampleRate | None = None
    # A .npy (or .wav) sample declaring more data than this many MiB is refused before it is read.
    max_array_mb: float = Field(MAX_ARRAY_BYTES / 1024**2, gt=0)
    # A video column's clips become this many frames, spread evenly over each clip, squashed to
    # video_size x video_size (the paper recipes' defaults: ucf101.py, vggsound.py).
    video_frames: FrameCount = 3
    video_size: ImageSide = 224


class FolderOptions(ContentOptions):
    # Vector modalities (number columns, 1-D .npy files, .npz arrays of rank 1 or 2) standardised per
    # feature with the train split's mean and std (data/standardize.py); false: the numbers as read.
    standardize_numbers: bool = True
    # Read a manifest folder through a prepared copy in a cache (data/folder_prepare.py): `auto` when it
    # lists more than `prepare_above` samples or has a video column, `always`, or `never` (read into memory).
    prepare: Literal["auto", "always", "never"] = "auto"
    prepare_above: PositiveInt = 10_000
    # Where prepared copies go: default $LATEFUSION_CACHE, else $XDG_CACHE_HOME/latefusion, else ~/.cache/latefusion.
    cache_dir: str | None = None


@dataclass
class Table:
    """What a manifest or .npz holds, one entry per sample (row), before splits and classes are settled.
    `where` names each row for messages ("line 5 (id 's3')"); `problems` has `index` = row."""

    arrays: dict[str, np.ndarray]
    kinds: dict[str, str]
    labels: list[str]
    splits: list[str]
    ids: list[str]
    where: list[str]
    encoder_options: dict[str, dict[str, Any]] = field(default_factory=dict)
    problems: list[Problem] = field(default_factory=list)


class FolderSplit(TensorSplit):
    """A split of a folder data set. Samples whose files could not be used hold zeros; `check()` names
    them (the data-check hook), and `sample_ids()` lets the checks find an id in two splits."""

    def __init__(self, inputs: dict[str, torch.Tensor], labels: torch.Tensor, sample_ids: list[str], problems: list[Problem]) -> None:
        super().__init__(inputs, labels, ids=sample_ids)
        self.problems = problems

    def check(self) -> list[Problem]:
        return list(self.problems)


def check_modality_name(name: str, source: object) -> None:
    """A modality's name is a key of the model's nn.ModuleDict, which refuses some names, and part of
    the name of its uni-modal run folder (summary.run_folder: "unimodal-<name>"), where '/' (or '\\' on Windows)
    would make `vec/` name the folder of `vec`, and ':' (written '-') `a:b` that of `a-b`."""
    if (not isinstance(name, str) or not name or "." in name or hasattr(nn.ModuleDict(), name)
            or any(c in name for c in "/\\:")):
        raise DataFormatError(f"{source}: {name!r} cannot name a modality (it must be a non-empty string, without '.', and not an "
                              "attribute of torch modules such as 'training' or 'forward'; nor hold '/', '\\' or ':', which would "
                              "make its run folder another name's); rename it")


def read_image_file(path: Path, size: int | tuple[int, int] | None = None, fit: str = "resize") -> np.ndarray:
    """An image as float32 (C, H, W) in [0, 1] at its bit depth (16-bit greyscale divided by 65535): one
    channel for greyscale images, else three; at `size` (see media.fit_image) when given. A 32-bit
    integer or float image is an unreadable-file naming its mode (media.scaled_pixels)."""
    try:
        array = read_image_scaled(path, size, fit)
    except MediaTooLarge as error:
        raise FileProblem("too-large", str(error).removeprefix(f"{path}: ")) from None  # the caller names the file
    except MediaError as error:
        raise FileProblem("unreadable-file", f"is {str(error).removeprefix(f'{path}: ')}") from None
    return array[None] if array.ndim == 2 else array.transpose(2, 0, 1)


def read_array_file(path: Path, max_bytes: int = MAX_ARRAY_BYTES) -> np.ndarray:
    array = read_npy(path, max_bytes)
    if array.dtype.kind not in REAL_KINDS:
        raise FileProblem("non-numeric", f"holds {array.dtype} values; expected real numbers (bool, integer or float)")
    return array.astype(np.float32).reshape(array.shape or (1,))  # a scalar is a one-feature vector


def read_audio_file(path: Path, max_bytes: int, whole: bool = False) -> tuple[np.ndarray, int]:
    """Mono float32 samples and their rate: a .wav parsed here, any other audio file through PyAV. A
    clip kept `whole` (not cut to audio_seconds) lasts at most MAX_CLIP_SECONDS: every clip is padded
    to the longest, at the modality's rate."""
    if path.suffix.lower() == ".wav":
        samples, rate = read_wav(path, max_bytes)
    else:
        try:
            samples, rate = decode_audio(path)
        except MediaError as error:
            raise FileProblem("unreadable-file", f"is not readable audio ({str(error).removeprefix(f'{path}: ')})") from None
    if whole and len(samples) > MAX_CLIP_SECONDS * rate:
        raise FileProblem("too-large", f"lasts {len(samples) / rate:,.1f} s, over the limit of {MAX_CLIP_SECONDS} s for a clip read whole "
                                       "(latefusion.config.MAX_CLIP_SECONDS; every clip is padded to the longest); set "
                                       "data.options.audio_seconds to cut the clips to one length")
    return samples, rate


def read_video_file(path: Path, options: ContentOptions, audio: bool) -> tuple[np.ndarray, int | None]:
    """A clip's frames (uint8, see media.read_clip_frames), or with `audio` its audio track as mono
    float32 and its rate."""
    try:
        if audio:
            return read_clip_audio(path)
        return read_clip_frames(path, options.video_frames, options.video_size), None
    except NoAudioTrack:
        raise FileProblem("no-audio-track", "has no audio track") from None
    except ClipTooShort as error:
        raise FileProblem("too-short", str(error).removeprefix(f"{path}: ")) from None
    except MediaError as error:
        raise FileProblem("unreadable-file", f"is not a readable video ({str(error).removeprefix(f'{path}: ')})") from None


def cell_path(cell: str) -> tuple[str, bool]:
    """The file a manifest cell names, and whether it asks for that video's audio track."""
    return (cell.removesuffix(AUDIO_TRACK), True) if cell.endswith(AUDIO_TRACK) else (cell, False)


def cell_kind(cell: str) -> str | None:
    """What a cell's file holds (audio, image, array, video), from its name; None: unsupported."""
    path, track = cell_path(cell)
    suffix = Path(path).suffix.lower()
    if track:
        return "audio" if suffix in VIDEO_SUFFIXES else None
    return KIND_BY_SUFFIX.get(suffix)


def column_kind(manifest: Path, name: str, cells: list[str], where: list[str]) -> str | None:
    """The kind of a file column's files (None: every cell is empty); a DataFormatError for a file of
    an unsupported type, a column mixing kinds, or a type PyAV decodes when it is not installed."""
    kind = None
    for row, cell in enumerate(cells):
        if not cell:
            continue
        found = cell_kind(cell)
        if found is None:
            raise DataFormatError(f"{manifest}, {where[row]}: {cell!r} has an unsupported type {Path(cell_path(cell)[0]).suffix.lower()!r}; "
                                  f"expected one of {sorted(KIND_BY_SUFFIX)}, or a video's audio track as VIDEO{AUDIO_TRACK}")
        if kind not in (None, found):
            raise DataFormatError(f"{manifest}, {where[row]}: modality {name!r} mixes file types ({cell!r} is not {kind})")
        suffix = Path(cell_path(cell)[0]).suffix.lower()
        if found in ("audio", "video") and suffix != ".wav":
            try:
                require_pyav()
            except MediaError:
                what = "video" if suffix in VIDEO_SUFFIXES else "audio"
                raise DataFormatError(f"{manifest}, {where[row]}: modality {name!r}: {cell} is {suffix} {what}, which is decoded by PyAV, "
                                      "not installed: pip install 'latefusion[video]' (or convert the clips to .wav)") from None
        kind = found
    return kind


def read_cell(folder: Path, cell: str, kind: str, options: ContentOptions) -> tuple[np.ndarray, int | None]:
    """The file a manifest cell names, as its column's `kind` reads it, with the rate of audio (else
    None). What is wrong with it is a FileProblem whose message follows the cell's text. The one
    sample check of the folder reader and of `prepare folder`."""
    path_text, track = cell_path(cell)
    max_bytes = int(options.max_array_mb * 1024**2)
    try:
        outside = None if options.allow_outside_paths else outside_reason(folder, path_text)
        if outside:
            raise FileProblem("outside-folder", f"{outside}; set data.options.allow_outside_paths=true to read it anyway")
        path = folder / path_text
        if not path.is_file():
            raise FileProblem("missing-file", "does not exist")
        if track or kind == "video":
            return read_video_file(path, options, audio=track)
        if kind == "audio":
            return read_audio_file(path, max_bytes, whole=options.audio_seconds is None)
        if kind == "image":
            return read_image_file(path, options.image_size, options.image_fit), None
        return read_array_file(path, max_bytes), None
    except OSError as error:
        if error.errno not in UNREADABLE_ERRNOS:
            raise  # a failing disk (EIO...) is not a problem of one sample
        raise FileProblem("unreadable-file", f"cannot be read: {os.strerror(error.errno)} ({errno.errorcode[error.errno]})") from None


def outside_reason(folder: Path, cell: str) -> str | None:
    """Why the manifest path `cell` leaves the data folder (through `..` or a symlink), or None."""
    if Path(cell).is_absolute():
        return "is an absolute path"
    target = (folder / cell).resolve()
    return None if target.is_relative_to(folder.resolve()) else f"leads outside the data folder (to {target})"


def most_common_shape(values: dict[int, np.ndarray]) -> tuple[int, ...]:
    """The shape most samples have (the first seen on a tie); (1,) when no sample could be read."""
    counts = Counter(v.shape for v in values.values())
    return max(counts, key=counts.get) if counts else (1,)


def fit_audio(clips: dict[int, np.ndarray], length: int | None) -> dict[int, np.ndarray]:
    length = length or max((len(c) for c in clips.values()), default=1)
    return {row: np.pad(c[:length], (0, max(0, length - len(c)))) for row, c in clips.items()}


def settled_sample(value: np.ndarray, rate: int | None, kind: str, shape: tuple[int, ...], sample_rate: int | None) -> np.ndarray:
    """One file's sample (as `read_cell` gives it) in the form its modality was settled to, as
    read_column brings a whole column: audio resampled to `sample_rate` and cut or zero-padded to
    `shape[0]` samples, a greyscale image repeated to RGB in a modality of RGB images."""
    if kind == "audio":
        return fit_audio({0: resample(value, rate, sample_rate or rate)}, shape[0])[0]
    if kind == "image" and shape[0] == 3:
        return as_rgb(value)
    return value


def audio_rate(rates: dict[int, int], splits: list[str], options: ContentOptions) -> int:
    """The rate every clip of a modality is resampled to: data.options.sample_rate, else the rate of
    the first train clip read (the first clip read when train has none)."""
    return options.sample_rate or rates[next((r for r in rates if splits[r] == "train"), next(iter(rates)))]


def read_column(folder: Path, name: str, cells: list[str], where: list[str], splits: list[str], options: FolderOptions) -> tuple[np.ndarray, str, dict[str, Any], list[Problem]]:
    """One modality of a manifest: its stacked samples, kind, encoder options and per-row problems."""
    manifest = folder / "manifest.csv"
    values, problems, rates = {}, [], {}

    def bad(row: int, problem_kind: str, what: str) -> None:
        problems.append(Problem(problem_kind, f"{where[row]}, modality {name!r}: {what}", index=row))

    kind = column_kind(manifest, name, cells, where)
    if kind == "video":
        raise DataFormatError(f"{manifest}: modality {name!r} holds video clips, which are read through a prepared copy "
                              "(data.options.prepare=auto or always), not into memory")
    for row, cell in enumerate(cells):
        if not cell:
            bad(row, "missing-modality", "no file given")
            continue
        try:
            values[row], rate = read_cell(folder, cell, kind, options)
        except FileProblem as problem:
            bad(row, problem.kind, f"{cell} {problem}")
            continue
        if rate is not None:
            rates[row] = rate

    encoder_options = {}
    if kind == "audio" and rates:
        rate = audio_rate(rates, splits, options)
        values = {row: resample(clip, rates[row], rate) for row, clip in values.items()}
        seconds = options.audio_seconds
        values = fit_audio(values, max(1, int(seconds * rate)) if seconds else None)
        encoder_options = {"sample_rate": rate}
    hint = ""
    if kind == "image":
        values = same_channels(values)
        if options.image_size is None:
            hint = "; set data.options.image_size=[H, W] (and image_fit) to resize every image"
    array = stack_samples(name, values, len(cells), lambda row, what: bad(row, "wrong-shape", f"{cells[row]} {what}{hint}"), manifest)
    return array, kind, encoder_options, problems


def same_channels(images: dict[int, np.ndarray]) -> dict[int, np.ndarray]:
    """Greyscale images as RGB (the grey repeated) in a modality that holds any RGB image."""
    if not any(image.shape[0] == 3 for image in images.values()):
        return images
    return {row: as_rgb(image) for row, image in images.items()}


def as_rgb(image: np.ndarray) -> np.ndarray:
    return np.repeat(image, 3, axis=0) if image.shape[0] == 1 else image


def numeric_columns(name: str, features: list[str], rows: list[dict[str, str]], where: list[str], manifest: Path) -> tuple[np.ndarray, list[Problem]]:
    """A tabular modality: the number columns `name.feature` side by side, one vector per row. A cell that
    is empty or not a number is a problem of its row (the row holds zeros until dropped)."""
    array = np.zeros((len(rows), len(features)), np.float32)
    problems, numbers = [], Counter()
    for position, feature in enumerate(features):
        column = f"{name}.{feature}"
        for row, cells in enumerate(rows):
            cell = cells[column]
            try:
                array[row, position] = float(cell)
                numbers[column] += 1
            except ValueError:
                kind, what = ("missing-modality", "is empty") if not cell else ("non-numeric", f"holds {cell!r}, not a number")
                problems.append(Problem(kind, f"{where[row]}, modality {name!r}: column {column!r} {what}", index=row))
        if not numbers[column]:
            first = next(cells[column] for cells in rows)
            raise DataFormatError(f"{manifest}: column {column!r} holds no numbers (first cell {first!r}); a column named <modality>.<feature> "
                                  "is a number column of a tabular modality, and a file column's name cannot contain '.': rename it")
    return array, problems


def check_sample_rank(name: str, shape: tuple[int, ...], source: object) -> None:
    if len(shape) > MAX_SAMPLE_RANK:
        raise DataFormatError(f"{source}: modality {name!r} has samples of shape {shape}; the encoders take vectors, (H, W) or "
                              f"(C, H, W) images, at most {MAX_SAMPLE_RANK} dimensions: reshape or split it")


def stack_samples(name: str, values: dict[int, np.ndarray], rows: int, wrong_shape, source: object) -> np.ndarray:
    """The samples of one modality as one array, rows without a usable value left as zeros; a value of
    another shape than most is reported through `wrong_shape(row, what)` and left as zeros too."""
    shape = most_common_shape(values)
    check_sample_rank(name, shape, source)
    array = np.zeros((rows, *shape), np.float32)
    for row, value in values.items():
        if value.shape == shape:
            array[row] = value
        else:
            wrong_shape(row, f"has shape {value.shape}, the other samples {shape}; every sample of a modality needs the same shape")
    return array


QUOTE_HINT = "a cell that starts with '\"' is quoted up to the next '\"', line breaks and commas included"


def line_break_error(manifest: Path, header: list[str] | None, start: int, end: int, cells: list[str]) -> DataFormatError:
    """The error for a record that holds a line break, naming its first line and the cell."""
    broken = next((k for k, cell in enumerate(cells) if "\n" in cell or "\r" in cell), len(cells) - 1)
    name = f"column {header[broken]!r}" if header and broken < len(header) else f"column {broken + 1}"
    return DataFormatError(f"{manifest}, line {start}: the cell of {name} holds a line break: lines {start} to {max(end, start + 1)} were "
                           f"read as one row ({QUOTE_HINT}); a manifest cell cannot span lines: remove the stray '\"' (or close the "
                           "quote on its line)")


def manifest_records(manifest: Path) -> list[tuple[int, list[str]]]:
    """Each record of a manifest with its line number, the header first: exactly one record per line of
    the file, blank lines and rows of empty cells skipped. A record that spans lines (a quote opened
    and not closed on its line joins the lines after it into one cell), a NUL character, or a cell over
    the csv module's field limit is a DataFormatError naming the line."""
    records, end = [], 0
    with manifest.open(newline="", encoding="utf-8-sig") as handle:
        reader = csv.reader(handle)
        while True:
            start = end + 1
            try:
                cells = next(reader, None)
            except csv.Error as error:
                if "field larger than field limit" in str(error):
                    raise DataFormatError(f"{manifest}, line {start}: a cell holds more than {csv.field_size_limit():,} characters, where "
                                          "an id, a label, a split, a path or a number was expected; a '\"' never closed? "
                                          f"({QUOTE_HINT})") from None
                raise DataFormatError(f"{manifest}, line {reader.line_num}: not readable as CSV ({error})") from None
            if cells is None:
                return records
            end = reader.line_num
            if end > start or any("\n" in cell or "\r" in cell for cell in cells):
                raise line_break_error(manifest, records[0][1] if records else None, start, end, cells)
            if any("\0" in cell for cell in cells):
                raise DataFormatError(f"{manifest}, line {start}: holds a NUL character (byte 0x00), which no manifest text holds; "
                                      "save it as UTF-8 CSV")
            if any(cell.strip() for cell in cells):
                records.append((start, cells))


def read_manifest_rows(manifest: Path) -> tuple[list[str], list[dict[str, str]], list[int]]:
    """The columns, the rows (cells stripped) and each row's line number of a manifest; a UTF-8 byte
    order mark is accepted. Every line of the file is the header, a blank line or exactly one row."""
    try:
        records = manifest_records(manifest)
    except UnicodeDecodeError as error:
        raise DataFormatError(f"{manifest}: not UTF-8 text (byte {error.object[error.start]:#04x} at offset {error.start}); save it as UTF-8") from None
    columns = records[0][1] if records else []
    for line, cells in records:
        separator = next((name for sign, name in ((";", "';'"), ("\t", "a tab")) if sign in cells[0]), None)
        if len(cells) == 1 and separator and (line == records[0][0] or len(columns) > 1):
            raise DataFormatError(f"{manifest}, line {line}: one cell {cells[0][:60]!r}, separated by {separator}? A manifest's cells are separated "
                                  "by ',' (save it as CSV with commas)")
    for line, cells in records[1:]:
        if [cell.strip() for cell in cells] == [c.strip() for c in columns]:
            raise DataFormatError(f"{manifest}, line {line}: repeats the header (line {records[0][0]}); two manifests joined? Remove it")
        extra = cells[len(columns):]
        if any(cell.strip() for cell in extra):
            raise DataFormatError(f"{manifest}, line {line}: {len(cells)} cells, the header has {len(columns)} columns; the cell(s) {extra} "
                                  "belong to no column (a ',' inside a cell? quote that cell: \"a,b\")")
    rows = [{c: (cells[k] if k < len(cells) else "").strip() for k, c in enumerate(columns)} for _, cells in records[1:]]
    repeated = sorted(c for c, n in Counter(columns).items() if n > 1)
    if repeated:
        raise DataFormatError(f"{manifest}: column(s) {repeated} appear more than once; every column needs its own name")
    return columns, rows, [line for line, _ in records[1:]]


def reserved_columns(options: ContentOptions) -> tuple[str, str, str]:
    """The columns (or .npz arrays) of ids, labels and splits."""
    return options.id_column, options.label_column, options.split_column


def manifest_modalities(columns: list[str], manifest: Path, reserved: tuple[str, ...]) -> dict[str, list[str] | None]:
    """Each modality in the order of its first column: None for a file column, else the features of its
    number columns `modality.feature` (in column order)."""
    modalities: dict[str, list[str] | None] = {}
    for column in columns:
        if column in reserved:
            continue
        name, dot, feature = column.partition(".")
        check_modality_name(name, manifest)
        if dot and not feature:
            raise DataFormatError(f"{manifest}: column {column!r} names no feature after the '.'; write <modality>.<feature>")
        if name in modalities and (modalities[name] is None or not dot):
            raise DataFormatError(f"{manifest}: modality {name!r} is both a file column and number columns ({name}.<feature>); rename one")
        if dot:
            modalities.setdefault(name, []).append(feature)
        else:
            modalities[name] = None
    return modalities


@dataclass
class Listing:
    """A manifest's samples before any file is read: `table` without arrays, the rows by column, and
    each modality (None: a file column; else the features of its number columns)."""

    table: Table
    rows: list[dict[str, str]]
    modalities: dict[str, list[str] | None]


def read_listing(folder: Path, options: ContentOptions, labeled: bool = True) -> Listing:
    """A manifest.csv's columns and rows, checked as a whole (DataFormatError naming what is wrong).
    Not `labeled` (data a finished run predicts on), only the id column is needed: a missing label or
    split column reads as empty cells."""
    manifest = folder / "manifest.csv"
    columns, rows, lines = read_manifest_rows(manifest)
    reserved = reserved_columns(options)
    required = reserved if labeled else reserved[:1]
    missing = [c for c in required if c not in columns]
    if missing:
        hint = "" if reserved == ("id", "label", "split") else " (data.options.id_column, label_column, split_column)"
        raise DataFormatError(f"{manifest}: missing column(s) {missing}; expected columns {','.join(required)}{hint} and one per modality")
    modalities = manifest_modalities(columns, manifest, reserved)
    if not modalities:
        raise DataFormatError(f"{manifest}: no modality columns; add one column per modality whose cells are file paths, "
                              "or number columns named <modality>.<feature>")
    if not rows:
        raise DataFormatError(f"{manifest}: no samples")
    id_column, label_column, split_column = reserved
    ids = [row[id_column] for row in rows]
    table = Table({}, {}, [r.get(label_column, "") for r in rows], [r.get(split_column, "") for r in rows], ids,
                  [f"line {line} (id {sample_id!r})" for line, sample_id in zip(lines, ids)])
    return Listing(table, rows, modalities)


def read_manifest_folder(folder: Path, options: ContentOptions) -> Table:
    """A manifest.csv and the files it names, read into memory."""
    manifest = folder / "manifest.csv"
    listing = read_listing(folder, options)
    table, rows = listing.table, listing.rows
    for name, features in listing.modalities.items():
        if features is None:
            array, kind, encoder_options, problems = read_column(folder, name, [r[name] for r in rows], table.where, table.splits, options)
        else:
            (array, problems), kind, encoder_options = numeric_columns(name, features, rows, table.where, manifest), "vector", {}
        table.arrays[name], table.kinds[name] = array, kind
        table.problems += problems
        if encoder_options:
            table.encoder_options[name] = encoder_options
    return table


def text_values(path: Path, name: str, array: np.ndarray) -> list[str]:
    """A per-sample array of labels, splits or ids as text; numbers keep their value (1.0 -> "1.0")."""
    if array.ndim != 1:
        raise DataFormatError(f"{path}: `{name}` has shape {array.shape}; expected one value per sample (a 1-D array)")
    if array.dtype.kind == "S":
        return [v.decode("utf-8", "replace").strip() for v in array]
    if array.dtype.kind not in REAL_KINDS + "U":
        raise DataFormatError(f"{path}: `{name}` holds {array.dtype} values; expected strings or real numbers")
    return ["" if isinstance(v, float) and math.isnan(v) else str(v).strip() for v in array.tolist()]  # NaN: no label


def modality_array(path: Path, name: str, array: np.ndarray) -> np.ndarray:
    check_modality_name(name, path)
    if array.dtype.kind not in REAL_KINDS:
        raise DataFormatError(f"{path}: array {name!r} holds {array.dtype} values; a modality needs real numbers (bool, integer or float)")
    if array.ndim == 0:
        raise DataFormatError(f"{path}: array {name!r} is a single value; expected samples along the first axis")
    return array.astype(np.float32).reshape(len(array), -1) if array.ndim == 1 else array.astype(np.float32)  # one value per sample: one feature


def load_npz(path: Path) -> dict[str, np.ndarray]:
    try:
        archive = np.load(path, allow_pickle=False)
    except (OSError, ValueError, zipfile.BadZipFile) as error:
        raise DataFormatError(f"{path}: not a readable .npz file ({error})") from None
    contents = {}
    with archive:
        for key in archive.files:
            try:
                contents[key] = archive[key]
            except ValueError:  # numpy refuses object arrays without pickle
                raise DataFormatError(f"{path}: array {key!r} holds Python objects; save numbers or strings") from None
            except (OSError, zipfile.BadZipFile, EOFError) as error:
                raise DataFormatError(f"{path}: array {key!r} is damaged ({error})") from None
    return contents


def read_npz(path: Path, options: ContentOptions, labeled: bool = True) -> Table:
    """An .npz file's arrays. Not `labeled` (data a finished run predicts on), a missing label or split
    array reads as empty values, as in read_listing."""
    contents = load_npz(path)
    id_key, label_key, split_key = reserved_columns(options)
    missing = [c for c in (label_key, split_key) if c not in contents] if labeled else []
    if missing:
        raise DataFormatError(f"{path}: missing array(s) {missing}; expected `{label_key}`, `{split_key}` and one array per modality")
    given = {key: text_values(path, key, contents.pop(key)) for key in (label_key, split_key, id_key) if key in contents}
    if not contents:
        raise DataFormatError(f"{path}: no modality arrays besides {label_key} and {split_key}")
    arrays = {name: modality_array(path, name, array) for name, array in contents.items()}
    reference, first = next(iter({**given, **arrays}.items()))
    n = len(first)
    for name, values in {**given, **arrays}.items():
        if len(values) != n:
            raise DataFormatError(f"{path}: array {name!r} has {len(values)} samples, `{reference}` has {n}")
    for name, array in arrays.items():
        check_sample_rank(name, array.shape[1:], path)
    ids = given.get(id_key, [str(i) for i in range(n)])
    return Table(arrays, {k: "array" for k in arrays}, given.get(label_key, [""] * n), given.get(split_key, [""] * n), ids,
                 [f"sample {i} (id {v!r})" for i, v in enumerate(ids)])


def settled_splits(table: Table, options: ContentOptions, source: Path) -> list[str]:
    unknown = sorted(set(table.splits) - set(SPLITS))
    if unknown:
        first = next(i for i, s in enumerate(table.splits) if s in unknown)
        raise DataFormatError(f"{source}: unknown split value(s) {unknown} (first at sample {table.ids[first]!r}); expected train, val or test")
    return settle_validation(table.splits, options.val_fraction, options.val_seed)


def as_number(label: str) -> float | None:
    try:
        value = float(label)
    except ValueError:
        return None
    return value if math.isfinite(value) else None


def class_labels(labels: list[str]) -> list[str]:
    """Each label as its class name: numbers by value (`1`, `1.0` and ` 1` are class "1"), when every
    label is a number; otherwise the labels as text (already stripped)."""
    numbers = [as_number(v) for v in labels]
    if any(v is None for v in numbers):
        return labels
    return [str(int(v)) if v.is_integer() else repr(v) for v in numbers]


def class_order(name: str) -> tuple:
    """Numeric class names by value, before any text name (then in text order)."""
    number = as_number(name)
    return (0, number, name) if number is not None else (1, 0.0, name)


def number_classes(table: Table, splits: list[str], source: Path) -> tuple[list[str], list[int], list[Problem]]:
    """The class names, each row's class index, and a problem for each row whose label train lacks or
    that has none (an empty cell, NaN in an .npz: never a class of its own)."""
    present = [row for row, v in enumerate(table.labels) if v]
    named = dict(zip(present, class_labels([table.labels[row] for row in present])))
    labels = [named.get(row) for row in range(len(table.labels))]
    class_names = sorted({v for v, s in zip(labels, splits) if s == "train" and v is not None}, key=class_order)
    if len(class_names) < 2:
        raise DataFormatError(f"{source}: the train split holds {len(class_names)} class(es) {class_names}; a classifier needs at least two")
    index = {name: i for i, name in enumerate(class_names)}
    unseen = [Problem("unseen-label", f"{table.where[row]}: label {v!r} appears in {splits[row]} but never in train; a classifier cannot learn it", index=row)
              if v is not None else
              Problem("missing-label", f"{table.where[row]}: no label (an empty cell, or NaN in an .npz); fill it in, or pass --skip-bad to "
                                       "drop the sample", index=row)
              for row, v in enumerate(labels) if v not in index]
    return class_names, [index.get(v, 0) for v in labels], unseen


def duplicate_ids(table: Table, splits: list[str]) -> list[Problem]:
    """A row repeating the id of an earlier row of its split (an id in two splits is a leaked-id)."""
    first: dict[tuple[str, str], int] = {}
    problems = []
    for row, (sample_id, split) in enumerate(zip(table.ids, splits)):
        earlier = first.setdefault((split, sample_id), row)
        if earlier != row:
            problems.append(Problem("duplicate-id", f"{table.where[row]}: the same id as {table.where[earlier]} in split {split!r}", index=row))
    return problems


def folder_splits(table: Table, splits: list[str], targets: list[int], problems: list[Problem]) -> dict[str, FolderSplit]:
    """The rows of each split, with each row's problems renumbered to its position in the split."""
    tensors = {name: torch.from_numpy(array) for name, array in table.arrays.items()}
    targets_tensor = torch.tensor(targets)
    result = {}
    for split in SPLITS:
        rows = [row for row, s in enumerate(splits) if s == split]
        position = {row: i for i, row in enumerate(rows)}
        index = torch.tensor(rows, dtype=torch.long)
        found = [Problem(p.kind, p.message, index=position[p.index]) for p in problems if p.index in position]
        result[split] = FolderSplit({m: t[index] for m, t in tensors.items()}, targets_tensor[index], [table.ids[r] for r in rows], found)
    return result


def listed(problems: list[Problem]) -> str:
    """The problems' messages in sample order, one a line."""
    return "\n  ".join(p.message for p in sorted(problems, key=lambda p: p.index))


def read_folder(path: Path, options: FolderOptions, check: bool) -> DataBundle:
    """A manifest folder or an .npz file read into memory (the folder data set below its prepare
    threshold, data/folder_prepare.py). With the data checks off (`check` false), bad samples are refused."""
    table = read_manifest_folder(path, options) if path.is_dir() else read_npz(path, options)
    splits = settled_splits(table, options, path)
    class_names, targets, unseen = number_classes(table, splits, path)
    problems = table.problems + unseen + duplicate_ids(table, splits)
    if problems and not check:
        raise DataFormatError(f"{path}: {len(problems)} problem(s) with single samples:\n  {listed(problems)}\n"
                              "fix them, or turn the data checks on (data.check=true) and pass --skip-bad to drop these samples")

    modalities, encoders = [], {}
    for name, array in table.arrays.items():
        kind = table.kinds[name] if table.kinds[name] != "array" else ("vector" if array.ndim == 2 else "image")
        # The statistics come from the train split once the data checks ran (build_dataset).
        stage = standardize_stage() if kind == "vector" and options.standardize_numbers else None
        modalities.append(Modality(name, kind, tuple(array.shape[1:]), stage))
        encoders[name] = {"name": ENCODER_BY_KIND[kind], "options": table.encoder_options.get(name, {})}
    return DataBundle(name=f"folder:{path.resolve()}", modalities=modalities, num_classes=len(class_names),
                      class_names=class_names, encoders=encoders, splits=folder_splits(table, splits, targets, problems))


# The modality kinds a run can have trained on each kind of file (a .npy array: a vector or an image).
TRAINED_KINDS = {"audio": ("audio",), "image": ("image",), "array": ("vector", "image")}


def unlabeled_samples(path: Path, options: ContentOptions, spec: DataSpec) -> FolderSplit | None:
    """Every sample of a manifest folder or an .npz file that labels none (no label column or array,
    or only empty labels; the split column is not needed either), in order, in the modalities and
    shapes of `spec`, a finished run's: new data for `latefusion predict`. None when the data label
    their samples: they are then the folder data set, read by the run's rules.

    Files are read as for training (read_cell, with the run's image size and fit), audio resampled
    to the rate the run's audio encoder was built for and cut or padded to its length, greyscale
    images repeated to RGB where the run's are. A modality the run was not trained on, or none for one
    of the run's, is a DataFormatError, and so, listing each, is every sample with a missing,
    unreadable or other-shaped file or number, or with NaN or Inf in it."""
    if path.is_dir() and (path / "manifest.csv").is_file():
        listing = read_listing(path, options, labeled=False)
        table = listing.table
        if any(table.labels):
            return None
        same_modalities(path / "manifest.csv", list(listing.modalities), spec, "column")
        problems = [problem for modality in spec.modalities for problem in read_trained_modality(path, listing, modality, spec, options)]
    elif path.is_file() and path.suffix == ".npz":
        table = read_npz(path, options, labeled=False)
        if any(table.labels):
            return None
        same_modalities(path, list(table.arrays), spec, "array")
        for modality in spec.modalities:
            if table.arrays[modality.name].shape[1:] != tuple(modality.shape):
                raise DataFormatError(f"{path}: array {modality.name!r} holds samples of shape {table.arrays[modality.name].shape[1:]}; "
                                      f"the run's model takes {tuple(modality.shape)}")
        problems = []
    else:
        return None
    problems += non_finite(table, spec.modality_names)
    if problems:
        raise DataFormatError(f"{path}: {len(problems)} problem(s) with single samples:\n  {listed(problems)}\nfix them, or leave those "
                              "samples out")
    inputs = {m.name: torch.from_numpy(table.arrays[m.name]) for m in spec.modalities}
    return FolderSplit(inputs, torch.zeros(len(table.ids), dtype=torch.long), table.ids, [])


def non_finite(table: Table, modalities: list[str]) -> list[Problem]:
    """A problem for each row holding NaN or Inf in one of `modalities` (the data checks refuse them in
    training data; a model's scores of them are NaN)."""
    n = len(table.ids)
    return [Problem("non-finite", f"{table.where[row]}, modality {name!r}: holds NaN or Inf values", index=int(row))
            for name in modalities for row in np.flatnonzero(~np.isfinite(table.arrays[name].reshape(n, -1)).all(1))]


def same_modalities(source: Path, found: list[str], spec: DataSpec, what: str) -> None:
    """A DataFormatError naming the modalities of unlabeled data (`what`: their columns or arrays) that
    the run lacks, or that lack the run's."""
    differences = []
    if missing := [m for m in spec.modality_names if m not in found]:
        differences.append(f"no {what} for the run's modality(ies) {missing}")
    if extra := [m for m in found if m not in spec.modality_names]:
        differences.append(f"{what}(s) of modality(ies) {extra}, which the run was not trained on")
    if differences:
        raise DataFormatError(f"{source}: {'; '.join(differences)}; the run's modalities are {spec.modality_names}")


def read_trained_modality(folder: Path, listing: Listing, modality: Modality, spec: DataSpec, options: ContentOptions) -> list[Problem]:
    """One modality of an unlabeled manifest read into `listing.table.arrays` at the shape the run's
    model takes; returns the problems of its rows."""
    manifest, table, rows = folder / "manifest.csv", listing.table, listing.rows
    name, shape, features = modality.name, tuple(modality.shape), listing.modalities[modality.name]
    if features is not None:
        if modality.kind != "vector" or (len(features),) != shape:
            raise DataFormatError(f"{manifest}: modality {name!r} has {len(features)} number column(s) {name}.<feature>; the run's "
                                  f"model takes {modality.kind} samples of shape {shape}")
        table.arrays[name], problems = numeric_columns(name, features, rows, table.where, manifest)
        return problems
    cells = [row[name] for row in rows]
    kind = column_kind(manifest, name, cells, table.where)
    if kind == "video":
        raise DataFormatError(f"{manifest}: modality {name!r} holds video clips, which `latefusion predict` reads only with labels (through "
                              "the folder data set's prepared copy): add a label column (any class of the run) and a split column (test)")
    if kind is not None and modality.kind not in TRAINED_KINDS[kind]:
        raise DataFormatError(f"{manifest}: modality {name!r} holds {kind} files; the run's model takes {modality.kind} samples of shape {shape}")
    sample_rate = spec.encoders.get(name, {}).get("options", {}).get("sample_rate") or options.sample_rate
    hint = "; set data.options.image_size=[H, W] (and image_fit) to resize every image" if kind == "image" else ""
    array, problems = np.zeros((len(rows), *shape), np.float32), []

    def bad(row: int, problem_kind: str, what: str) -> None:
        problems.append(Problem(problem_kind, f"{table.where[row]}, modality {name!r}: {what}", index=row))

    for row, cell in enumerate(cells):
        if not cell:
            bad(row, "missing-modality", "no file given")
            continue
        try:
            value, rate = read_cell(folder, cell, kind, options)
        except FileProblem as problem:
            bad(row, problem.kind, f"{cell} {problem}")
            continue
        value = settled_sample(value, rate, kind, shape, sample_rate)
        if value.shape != shape:
            bad(row, "wrong-shape", f"{cell} has shape {value.shape}, the run's model takes {shape}{hint}")
            continue
        array[row] = value
    table.arrays[name] = array
    return problems
