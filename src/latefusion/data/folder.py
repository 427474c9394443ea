"""Bring your own data: a folder (or one .npz file) in a documented format, no Dataset class to write.

Two forms (docs/data-format.md has the details):

* `manifest.csv` in a folder, columns `id,label,split` plus one column per modality whose cells are
  paths (relative to the folder) to `.npy` arrays, `.wav` audio (PCM) or `.png`/`.jpg` images;
* one `.npz` file with an array per modality plus `label` and `split` arrays (optional `id`).

Labels may be strings: they are mapped to indices in sorted order of the train labels, and the names
are stored with every run. `split` is train / val / test; without a val split, one is carved out of
train with a fixed seed (`val_fraction`, `val_seed`). Every sample of a modality must have the same
shape (audio is cropped or zero-padded to `audio_seconds` if given, else to the longest clip).
"""

from __future__ import annotations

import csv
from pathlib import Path
from typing import Any

import numpy as np
import torch
from pydantic import Field

from ..config import ConfigError, DataConfig, Section, validate
from . import DATASETS
from .base import SPLITS, DataBundle, Modality, TensorSplit
from .carve import carve_validation
from .files import FileProblem, read_npy, read_wav
from .media import MediaError, read_image

RESERVED_COLUMNS = ("id", "label", "split")
KIND_BY_SUFFIX = {".wav": "audio", ".png": "image", ".jpg": "image", ".jpeg": "image", ".npy": "array"}
ENCODER_BY_KIND = {"vector": "mlp", "image": "cnn", "audio": "audio-cnn"}


class DataFormatError(ValueError):
    """A user data set that does not follow the documented format; the message says where and how."""


class FolderOptions(Section):
    val_fraction: float = Field(0.15, gt=0, lt=1)
    val_seed: int = 0
    audio_seconds: float | None = Field(None, gt=0)


def read_image_file(path: Path) -> np.ndarray:
    """An image as float32 (C, H, W) in [0, 1]: one channel for greyscale images, else three."""
    try:
        pixels = read_image(path, mode=None)
    except MediaError as error:
        raise DataFormatError(str(error)) from None
    array = pixels.astype(np.float32) / 255.0
    return array[None] if array.ndim == 2 else array.transpose(2, 0, 1)


def stack_modality(name: str, arrays: list[np.ndarray], ids: list[str], source: str) -> np.ndarray:
    shapes = {a.shape for a in arrays}
    if len(shapes) > 1:
        first = arrays[0].shape
        odd = next(i for i, a in enumerate(arrays) if a.shape != first)
        raise DataFormatError(f"{source}: modality {name!r} has samples of different shapes: {ids[0]!r} is {first}, {ids[odd]!r} is {arrays[odd].shape}; every sample of a modality needs the same shape")
    return np.stack(arrays)


def fit_audio(clips: list[np.ndarray], length: int | None) -> list[np.ndarray]:
    length = length or max(len(c) for c in clips)
    return [np.pad(c[:length], (0, max(0, length - len(c)))) for c in clips]


def read_manifest_folder(folder: Path, options: FolderOptions) -> tuple[dict[str, np.ndarray], dict[str, str], list[str], list[str], list[str], dict[str, Any]]:
    manifest = folder / "manifest.csv"
    with manifest.open(newline="") as handle:
        reader = csv.DictReader(handle)
        columns = reader.fieldnames or []
        rows = list(reader)
    missing = [c for c in RESERVED_COLUMNS if c not in columns]
    if missing:
        raise DataFormatError(f"{manifest}: missing column(s) {missing}; expected columns id,label,split and one per modality")
    modalities = [c for c in columns if c not in RESERVED_COLUMNS]
    if not modalities:
        raise DataFormatError(f"{manifest}: no modality columns; add one column per modality whose cells are file paths")
    if not rows:
        raise DataFormatError(f"{manifest}: no samples")
    ids = [row["id"] for row in rows]
    arrays, kinds, encoder_options = {}, {}, {}
    for name in modalities:
        values, kind = [], None
        for line, row in enumerate(rows, start=2):
            cell = (row[name] or "").strip()
            if not cell:
                raise DataFormatError(f"{manifest}, line {line} (id {row['id']!r}): no file for modality {name!r}")
            path = folder / cell
            suffix = path.suffix.lower()
            if suffix not in KIND_BY_SUFFIX:
                raise DataFormatError(f"{manifest}, line {line}: {cell!r} has an unsupported type {suffix!r}; expected one of {sorted(KIND_BY_SUFFIX)}")
            if kind not in (None, KIND_BY_SUFFIX[suffix]):
                raise DataFormatError(f"{manifest}, line {line}: modality {name!r} mixes file types ({cell!r} is not {kind})")
            kind = KIND_BY_SUFFIX[suffix]
            if not path.is_file():
                raise DataFormatError(f"{manifest}, line {line} (id {row['id']!r}): file {path} for modality {name!r} does not exist")
            try:
                if kind == "audio":
                    samples, rate = read_wav(path)
                    if encoder_options.setdefault(name, {"sample_rate": rate})["sample_rate"] != rate:
                        raise DataFormatError(f"{path}: sample rate {rate} Hz differs from the {encoder_options[name]['sample_rate']} Hz of the first clip of {name!r}")
                    values.append(samples)
                elif kind == "image":
                    values.append(read_image_file(path))
                else:
                    values.append(read_npy(path).astype(np.float32))
            except FileProblem as problem:
                raise DataFormatError(f"{manifest}, line {line} (id {row['id']!r}): {path} {problem} ({problem.kind})") from None
        if kind == "audio":
            seconds = options.audio_seconds
            values = fit_audio(values, int(seconds * encoder_options[name]["sample_rate"]) if seconds else None)
        arrays[name] = stack_modality(name, values, ids, str(manifest))
        kinds[name] = kind
    return arrays, kinds, [r["label"] for r in rows], [r["split"] for r in rows], ids, encoder_options


def read_npz(path: Path) -> tuple[dict[str, np.ndarray], dict[str, str], list[str], list[str], list[str], dict[str, Any]]:
    with np.load(path, allow_pickle=False) as archive:
        contents = {key: archive[key] for key in archive.files}
    missing = [c for c in ("label", "split") if c not in contents]
    if missing:
        raise DataFormatError(f"{path}: missing array(s) {missing}; expected `label`, `split` and one array per modality")
    n = len(contents["label"])
    ids = [str(i) for i in contents.pop("id", np.arange(n))]
    labels, splits = [str(v) for v in contents.pop("label")], [str(v) for v in contents.pop("split")]
    if not contents:
        raise DataFormatError(f"{path}: no modality arrays besides label and split")
    for name, array in contents.items():
        if len(array) != n:
            raise DataFormatError(f"{path}: array {name!r} has {len(array)} samples, `label` has {n}")
    return {k: v.astype(np.float32) for k, v in contents.items()}, {k: "array" for k in contents}, labels, splits, ids, {}


@DATASETS.register("folder")
def build(config: DataConfig) -> DataBundle:
    if config.path is None:
        raise ConfigError("data.name=folder needs data.path: a folder with manifest.csv, or an .npz file")
    options = validate(FolderOptions, config.options, "data.options of the folder data set")
    path = Path(config.path)
    if path.is_dir() and (path / "manifest.csv").is_file():
        arrays, kinds, labels, splits, ids, encoder_options = read_manifest_folder(path, options)
    elif path.is_file() and path.suffix == ".npz":
        arrays, kinds, labels, splits, ids, encoder_options = read_npz(path)
    else:
        raise DataFormatError(f"{path}: expected a folder holding manifest.csv, or an .npz file")

    splits = np.array(splits)
    unknown = sorted(str(s) for s in set(splits) - set(SPLITS))
    if unknown:
        line = int(np.flatnonzero(np.isin(splits, unknown))[0])
        raise DataFormatError(f"{path}: unknown split value(s) {unknown} (first at sample {ids[line]!r}); expected train, val or test")
    if "val" not in set(splits):
        splits = np.array(carve_validation(splits, options.val_fraction, options.val_seed))
    labels = np.array(labels)
    class_names = sorted({str(v) for v in labels[splits == "train"]}, key=lambda v: (len(v), v) if v.lstrip("-").isdigit() else (0, v))
    unseen = sorted(str(v) for v in set(labels) - set(class_names))
    if unseen:
        raise DataFormatError(f"{path}: label(s) {unseen} appear in val/test but never in train; a classifier cannot learn them")
    index = {name: i for i, name in enumerate(class_names)}
    targets = torch.tensor([index[v] for v in labels])

    modalities, encoders = [], {}
    for name, array in arrays.items():
        kind = kinds[name] if kinds[name] != "array" else ("vector" if array.ndim == 2 else "image")
        modalities.append(Modality(name, kind, tuple(array.shape[1:])))
        encoders[name] = {"name": ENCODER_BY_KIND[kind], "options": encoder_options.get(name, {})}
    tensors = {name: torch.from_numpy(array) for name, array in arrays.items()}
    split_sets = {}
    for split in SPLITS:
        rows = torch.from_numpy(np.flatnonzero(splits == split))
        split_sets[split] = TensorSplit({m: t[rows] for m, t in tensors.items()}, targets[rows])
    return DataBundle(name=f"folder:{path.resolve()}", modalities=modalities, num_classes=len(class_names),
                      class_names=class_names, encoders=encoders, splits=split_sets)
