"""Data already in memory, from Python: arrays per split, or a data frame, as a DataBundle.

    bundle = from_arrays(train={"image": x_img, "audio": x_aud, "label": y},
                         val={...}, test={...}, name="my-data")
    bundle = from_dataframe(df, label="label", split="split",
                            modalities={"tabular": ["age", "height"], "image": "pixels"})

    config = resolve_config(None, ["data.name=in-memory", "method.name=naive"])
    train(config, "runs/mine", bundle=bundle)        # or run_pipeline(config, "runs/mine-demo", bundle=bundle)

The rules are those of the folder data set (data/folder.py, docs/data-format.md): labels may be
numbers or strings and become class indices in sorted order of the train labels; without a val
split one is carved out of train with a fixed seed; every sample of a modality has one shape. A
sample of shape (D,) is a vector (mlp encoder), (H, W) or (C, H, W) an image (cnn encoder); `kinds`
and `encoders` override that per modality. The data checks run on the bundle (`check=False` skips
them), so NaNs, labels never seen in train or one sample in two splits are found before training.

The `in-memory` data set name marks such a run's config: it cannot be rebuilt from the config, so
whatever needs the data again (`probe_run`, `guide_from_runs`) is given the bundle too.
"""

from __future__ import annotations

import math
import sys
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np
import torch

from ..config import DataConfig
from ..errors import ConfigError
from .base import SPLITS, DataBundle, Modality, TensorSplit
from .carve import carve_validation
from .checks import checked
from .files import DataFormatError
from .folder import ENCODER_BY_KIND, MAX_SAMPLE_RANK, REAL_KINDS, check_modality_name, class_labels, class_order
from .registry import DATASETS
from .standardize import fit_standardization, standardize_stage

IN_MEMORY = "in-memory"
KINDS = tuple(ENCODER_BY_KIND)


@DATASETS.register(IN_MEMORY)
def build(config: DataConfig) -> DataBundle:
    raise ConfigError(f"data set {IN_MEMORY!r} is built in Python (latefusion.data.from_arrays or from_dataframe) and cannot be "
                      "rebuilt from a config: pass the bundle, e.g. train(config, out, bundle=bundle) or probe_run(run, bundle=bundle)")


def as_array(value: Any, where: str) -> np.ndarray:
    if isinstance(value, torch.Tensor):
        value = value.detach().cpu().numpy()
    try:
        array = np.asarray(value)
    except (ValueError, TypeError) as error:  # ragged lists
        raise DataFormatError(f"{where}: cannot be read as one array ({error}); every sample needs the same shape") from None
    return array


def is_missing(value: Any) -> bool:
    """No label: None, NaN (Python or numpy), pandas' NA or NaT (recognised without importing pandas),
    or an empty or blank string."""
    if value is None or type(value).__name__ in ("NAType", "NaTType"):
        return True
    if isinstance(value, str):
        return not value.strip()
    return isinstance(value, (float, np.floating)) and math.isnan(value)


def label_strings(value: Any, where: str) -> tuple[list[str], list[int]]:
    """Each label as text, and the positions of the missing ones (see is_missing)."""
    array = as_array(value, where)
    if array.ndim != 1:
        raise DataFormatError(f"{where}: labels must be one value per sample (1-D), got shape {array.shape}")
    if array.dtype.kind not in REAL_KINDS + "UO":
        raise DataFormatError(f"{where}: labels must be numbers or strings, got dtype {array.dtype}")
    values = array.tolist()
    infinite = next((i for i, v in enumerate(values) if isinstance(v, float) and math.isinf(v)), None)
    if infinite is not None:
        raise DataFormatError(f"{where}: labels hold Inf at sample {infinite}; expected numbers or strings")
    return [str(v).strip() for v in values], [i for i, v in enumerate(values) if is_missing(v)]


def without_missing(texts: list[str], missing: list[int], where: str, noun: str, skip_bad: bool, caller: str) -> list[int]:
    """The positions of the labelled samples; a missing label is a DataFormatError naming where it is,
    unless `skip_bad` (then the sample is dropped, and stderr says so)."""
    if missing:
        listed = f"{missing[:10]}{' and more' if len(missing) > 10 else ''}"
        if not skip_bad:
            raise DataFormatError(f"{where}: {len(missing)} missing label(s) (None, NaN, pd.NA or empty) at {noun}(s) {listed}; "
                                  f"fill them in, or pass skip_bad=True to drop those {noun}s")
        print(f"{caller}: skip_bad: dropped {len(missing)} {noun}(s) of {where} without a label ({noun}s {listed})", file=sys.stderr)
    dropped = set(missing)
    return [i for i in range(len(texts)) if i not in dropped]


def split_parts(split: str, value: Any, label: str) -> tuple[dict[str, Any], Any]:
    """A split given as {modality: array, ..., label: labels} or as ({modality: array}, labels)."""
    if isinstance(value, tuple) and len(value) == 2 and isinstance(value[0], Mapping):
        return dict(value[0]), value[1]
    if isinstance(value, Mapping):
        inputs = dict(value)
        if label not in inputs:
            raise DataFormatError(f"split {split!r} has no {label!r} entry; give the labels under {label!r} (the `label` argument names "
                                  f"the key), or the split as a pair (inputs, labels). It has {sorted(inputs)}")
        labels = inputs.pop(label)
        return inputs, labels
    raise DataFormatError(f"split {split!r} is a {type(value).__name__}; expected a dict of modality name -> array plus the labels "
                          f"under {label!r}, or a pair (dict of arrays, labels)")


def from_arrays(train: Any, val: Any = None, test: Any = None, *, label: str = "label", name: str = IN_MEMORY,
                kinds: Mapping[str, str] | None = None, encoders: Mapping[str, dict[str, Any]] | None = None,
                val_fraction: float = 0.15, val_seed: int = 0, check: bool = True, skip_bad: bool = False,
                standardize_numbers: bool = True) -> DataBundle:
    """A DataBundle of TensorSplits from arrays (numpy, torch or nested lists) per split and modality.

    Each split is `{modality: array, ..., label: labels}` or `({modality: array}, labels)`; arrays hold
    one row per sample. `val=None` carves `val_fraction` of train out as val (seed `val_seed`). `kinds`
    ({modality: "vector" | "image" | "audio"}) and `encoders` ({modality: {"name": ..., "options": ...}})
    override what the shapes suggest. Vector modalities are standardised per feature with the train
    split's statistics (data/standardize.py) unless `standardize_numbers=False`. Raises DataFormatError
    (a latefusion.UserError) for bad input, naming the split and the modality, and DataCheckError when
    the data checks fail. A missing label (None, NaN, pd.NA, an empty string) is refused by position;
    `skip_bad=True` drops such samples, and those the data checks find (as `--skip-bad` does), saying so on stderr."""
    if test is None:
        raise DataFormatError("from_arrays needs a test split (test=...); val may be left out (it is then carved out of train)")
    given = {"train": train, "val": val, "test": test}
    parts = {split: split_parts(split, value, label) for split, value in given.items() if value is not None}

    modality_names = list(parts["train"][0])
    if not modality_names:
        raise DataFormatError("split 'train' holds no modality: give at least one array besides the labels")
    for modality in modality_names:
        check_modality_name(modality, "from_arrays")  # as the folder reader does: a key of the model's nn.ModuleDict
    rows: dict[str, list[np.ndarray]] = {m: [] for m in modality_names}
    labels: list[str] = []
    splits: list[str] = []
    for split, (inputs, split_labels) in parts.items():
        if set(inputs) != set(modality_names):
            raise DataFormatError(f"split {split!r} has modalities {sorted(inputs, key=str)}, split 'train' has {sorted(modality_names)}; "
                                  "every split needs the same ones")
        texts, missing = label_strings(split_labels, f"split {split!r}, {label!r}")
        keep = without_missing(texts, missing, f"split {split!r}, {label!r}", "sample", skip_bad, "from_arrays")
        if not texts:
            raise DataFormatError(f"split {split!r} holds no samples")
        for modality, value in inputs.items():
            array = as_array(value, f"split {split!r}, modality {modality!r}")
            where = f"split {split!r}, modality {modality!r}"
            if array.dtype.kind not in REAL_KINDS:
                raise DataFormatError(f"{where}: dtype {array.dtype} is not numeric")
            if array.ndim < 2 or array.ndim > MAX_SAMPLE_RANK + 1:
                raise DataFormatError(f"{where}: shape {array.shape}; expected (samples, D) vectors, (samples, H, W) or "
                                      "(samples, C, H, W) images")
            if len(array) != len(texts):
                raise DataFormatError(f"{where}: {len(array)} samples, but {len(texts)} labels")
            if rows[modality] and array.shape[1:] != rows[modality][0].shape[1:]:
                raise DataFormatError(f"{where}: samples of shape {array.shape[1:]}, split 'train' has {rows[modality][0].shape[1:]}; "
                                      "every sample of a modality needs the same shape")
            rows[modality].append(array[keep] if missing else array)
        labels += [texts[i] for i in keep]
        splits += [split] * len(keep)
    if "val" not in parts:
        if not 0 < val_fraction < 1:
            raise DataFormatError(f"val_fraction {val_fraction}: expected a fraction between 0 and 1")
        splits = carve_validation(splits, val_fraction, val_seed)
    return make_bundle({m: np.concatenate(r) for m, r in rows.items()}, labels, splits, name=name, kinds=kinds, encoders=encoders,
                       check=check, skip_bad=skip_bad, standardize_numbers=standardize_numbers)


def make_bundle(arrays: dict[str, np.ndarray], labels: list[str], splits: list[str], *, name: str, kinds: Mapping[str, str] | None,
                encoders: Mapping[str, dict[str, Any]] | None, check: bool, skip_bad: bool = False,
                standardize_numbers: bool = True) -> DataBundle:
    """Arrays over all samples, each sample's label (as text) and split, as a checked DataBundle, its
    vector modalities standardised with the statistics of the train split (unless `standardize_numbers` is off)."""
    unknown = sorted(set(kinds or {}) - set(arrays)) + sorted(set(encoders or {}) - set(arrays))
    if unknown:
        raise DataFormatError(f"kinds or encoders name modalities {unknown} that the data lacks; it has {sorted(arrays)}")
    class_of = class_labels(labels)
    class_names = sorted({c for c, s in zip(class_of, splits) if s == "train"}, key=class_order)
    if len(class_names) < 2:
        raise DataFormatError(f"the train split holds {len(class_names)} class(es) {class_names}; a classifier needs at least two")
    index = {c: i for i, c in enumerate(class_names)}
    unseen = sorted({c for c, s in zip(class_of, splits) if c not in index})
    if unseen:
        raise DataFormatError(f"label(s) {unseen} appear in val or test but never in train; a classifier cannot learn them")
    targets = torch.tensor([index[c] for c in class_of], dtype=torch.long)

    modalities, suggested = [], {}
    for modality, array in arrays.items():
        kind = (kinds or {}).get(modality) or ("vector" if array.ndim == 2 else "image")
        if kind not in KINDS:
            raise DataFormatError(f"kinds[{modality!r}] = {kind!r}; expected one of {list(KINDS)}")
        stage = standardize_stage() if kind == "vector" and standardize_numbers else None
        modalities.append(Modality(modality, kind, tuple(array.shape[1:]), stage))
        suggested[modality] = dict((encoders or {}).get(modality) or {"name": ENCODER_BY_KIND[kind]})
    tensors = {m: torch.from_numpy(np.ascontiguousarray(a, dtype=np.float32)) for m, a in arrays.items()}
    split_tensors = {}
    for split in SPLITS:
        rows = torch.tensor([i for i, s in enumerate(splits) if s == split], dtype=torch.long)
        split_tensors[split] = TensorSplit({m: t[rows] for m, t in tensors.items()}, targets[rows])
    bundle = DataBundle(name=name, modalities=modalities, num_classes=len(class_names), class_names=class_names, encoders=suggested,
                        splits=split_tensors)
    return fit_standardization(checked(bundle, skip_bad=skip_bad) if check else bundle)


def column_values(frame: Any, column: str) -> np.ndarray:
    if column not in list(frame.columns):
        raise DataFormatError(f"the data frame has no column {column!r}; it has {list(frame.columns)}")
    return np.asarray(frame[column].to_numpy())


def from_dataframe(frame: Any, *, label: str = "label", split: str = "split", modalities: Mapping[str, str | Sequence[str]],
                   name: str = IN_MEMORY, kinds: Mapping[str, str] | None = None, encoders: Mapping[str, dict[str, Any]] | None = None,
                   val_fraction: float = 0.15, val_seed: int = 0, check: bool = True, skip_bad: bool = False,
                   standardize_numbers: bool = True) -> DataBundle:
    """A DataBundle from a data frame with one row per sample: `label` and `split` (train / val / test)
    name columns, and `modalities` maps each modality to its columns, a list (their values side by side
    make a vector) or one column whose cells are arrays (an image, a vector). Any table with
    `.columns` and `frame[column].to_numpy()` works (pandas, polars); pandas is not needed otherwise.
    Without val rows, `val_fraction` of train is carved out as val. Vector modalities are standardised
    as in from_arrays (`standardize_numbers`). Errors as from_arrays."""
    if not (hasattr(frame, "columns") and hasattr(frame, "__getitem__")):
        raise DataFormatError(f"from_dataframe takes a data frame (pandas, polars, or any table with .columns and "
                              f"frame[column].to_numpy()); got a {type(frame).__name__}")
    if not isinstance(modalities, Mapping) or not modalities:
        raise DataFormatError("from_dataframe needs modalities={name: [columns]} (or {name: column} for a column of arrays)")
    for modality in modalities:
        check_modality_name(modality, "from_dataframe")
    clash = [m for m, cols in modalities.items() for c in ([cols] if isinstance(cols, str) else cols) if c in (label, split)]
    if clash:
        raise DataFormatError(f"modalities {clash} use the label or split column as an input")
    split_values = [str(v).strip() for v in column_values(frame, split).tolist()]
    bad = sorted(set(split_values) - set(SPLITS))
    if bad:
        raise DataFormatError(f"column {split!r}: unknown split value(s) {bad}; expected train, val or test")
    for needed in ("train", "test"):
        if needed not in split_values:
            raise DataFormatError(f"column {split!r} has no {needed!r} rows; train and test are needed (val is carved out of train if absent)")
    labels, missing = label_strings(column_values(frame, label), f"column {label!r}")
    keep = without_missing(labels, missing, f"column {label!r}", "row", skip_bad, "from_dataframe")
    arrays = {}
    for modality, columns in modalities.items():
        if isinstance(columns, str):
            cells = column_values(frame, columns)
            try:
                array = np.stack([np.asarray(c) for c in cells]) if cells.dtype == object else cells[:, None]
            except ValueError as error:
                raise DataFormatError(f"modality {modality!r}, column {columns!r}: its cells differ in shape ({error})") from None
        else:
            if not columns:
                raise DataFormatError(f"modality {modality!r} names no columns")
            array = np.stack([column_values(frame, c) for c in columns], axis=1)
        if array.dtype.kind not in REAL_KINDS:
            raise DataFormatError(f"modality {modality!r}: its columns hold {array.dtype} values, not numbers")
        if array.ndim > MAX_SAMPLE_RANK + 1:
            raise DataFormatError(f"modality {modality!r}: samples of shape {array.shape[1:]}; at most {MAX_SAMPLE_RANK} dimensions")
        arrays[modality] = array[keep] if missing else array
    if missing:
        labels, split_values = [labels[i] for i in keep], [split_values[i] for i in keep]
    if "val" not in split_values:
        if not 0 < val_fraction < 1:
            raise DataFormatError(f"val_fraction {val_fraction}: expected a fraction between 0 and 1")
        split_values = carve_validation(split_values, val_fraction, val_seed)
    return make_bundle(arrays, labels, split_values, name=name, kinds=kinds, encoders=encoders, check=check, skip_bad=skip_bad,
                       standardize_numbers=standardize_numbers)
