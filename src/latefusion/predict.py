"""`latefusion predict RUN --data DATA`: a finished run's model applied to data, one row per sample.

Labeled data are read the way the run's own data were (its config's data section, with `--data` and
`--set` applied on top), and must have the run's modalities, shapes and classes; every sample of the
chosen splits gets a row: split, id, label, predicted class and the probability of each class
(softmax of the method's scores: for UME, its members' mean probability). New data without labels (a
manifest folder or .npz file of the folder data set with no label column, or only empty labels) are
read by the folder reader's rules to the run's modalities and shapes (data/folder.py
`unlabeled_samples`), and every sample, in order, gets a row without split and label. Written
atomically as CSV.
"""

from __future__ import annotations

import csv
import io
from pathlib import Path
from typing import Any

import torch

from .config import RunConfig, validate
from .data import DataSpec, Split, build_dataset
from .data.folder import FolderOptions, unlabeled_samples
from .engine import autocast, make_loader, resolve_device, to_device
from .errors import DataError
from .methods import build_method, load_model
from .runs import RunDir
from .storage import atomic_write_text


def spec_differences(trained: DataSpec, given: DataSpec) -> list[str]:
    """How the data to predict on differ from the data the run was trained on, in what the model reads."""
    differences = []
    shapes = {m.name: tuple(m.shape) for m in trained.modalities}
    found = {m.name: tuple(m.shape) for m in given.modalities}
    if shapes.keys() != found.keys():
        differences.append(f"modalities {sorted(found)} where the run was trained on {sorted(shapes)}")
    differences += [f"modality {m!r} has shape {found[m]}, the run's has {shapes[m]}" for m in shapes if m in found and found[m] != shapes[m]]
    if trained.num_classes != given.num_classes or trained.class_names != given.class_names:
        differences.append(f"classes {given.class_names or given.num_classes} where the run has {trained.class_names or trained.num_classes}")
    return differences


def data_to_predict(run: RunDir, config: RunConfig, splits: list[str] | None) -> list[tuple[str | None, Split]]:
    """What to predict: (split, samples) for each chosen split (default: test) of labeled data, or
    (None, every sample) of a folder data set's unlabeled data."""
    spec = run.spec()
    if config.data.name == "folder" and config.data.path is not None:
        options = validate(FolderOptions, config.data.options, "data.options of the folder data set")
        unlabeled = unlabeled_samples(Path(config.data.path), options, spec)
        if unlabeled is not None:
            if splits:
                raise DataError(f"--split {' '.join(splits)}: {config.data.path} labels no sample, so it has no splits; every sample is "
                                "predicted (leave out --split)")
            return [(None, unlabeled)]
    bundle = build_dataset(config.data)
    if differences := spec_differences(spec, bundle.spec):
        raise DataError(f"cannot predict with {run.path} on data set {bundle.name!r}: " + "; ".join(differences))
    return [(split, bundle.splits[split]) for split in splits or ["test"]]


@torch.no_grad()
def predict_rows(run: RunDir, config: RunConfig, splits: list[str] | None = None) -> list[dict[str, Any]]:
    """One row per sample to predict (`data_to_predict`), by the run's best model: split, id and label
    where the data give them, the predicted class and each class's probability."""
    parts = data_to_predict(run, config, splits)
    spec = run.spec()
    device = resolve_device(config.train.device)
    method = build_method(run.config(), spec).to(device)
    model = load_model(run, device)
    names = spec.class_names or [str(k) for k in range(spec.num_classes)]
    rows = []
    for split, dataset in parts:
        ids = dataset.sample_ids() or [f"{split}-{i}" for i in range(len(dataset))]
        probabilities, labels = [], []
        for inputs, y in make_loader(dataset, config, train=False):
            inputs, y = to_device(inputs, y, device)
            with autocast(device, config.train.precision):
                probabilities.append(method.predict(model, inputs).float().softmax(-1).cpu())
            labels.append(y.cpu())
        for sample, p, label in zip(ids, torch.cat(probabilities).tolist(), torch.cat(labels).tolist()):
            best = max(range(len(p)), key=p.__getitem__)
            given = {"split": split, "id": sample, "label": names[label]} if split else {"id": sample}
            rows.append({**given, "predicted": names[best], **{f"p_{name}": f"{value:.6f}" for name, value in zip(names, p)}})
    return rows


def write_predictions(rows: list[dict[str, Any]], out: str | Path) -> None:
    if not rows:
        raise DataError("nothing to predict: the data (or the chosen splits) hold no samples")
    text = io.StringIO()
    writer = csv.DictWriter(text, fieldnames=list(rows[0]), lineterminator="\n")
    writer.writeheader()
    writer.writerows(rows)
    atomic_write_text(out, text.getvalue())
