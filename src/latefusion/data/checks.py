"""Data checks: what in a data set would make training crash late or quietly mislead, found before the
first step and reported by name (`latefusion check-data`; `build_dataset` runs them for training).

Each problem has a kind:
  empty-split            a split without samples
  missing-file           \
  unreadable-file         > reported by a file-backed split's own `check()` (the hook below); the
  truncated-file         /  folder data set adds its own kinds there (see data/folder.py, docs/data-format.md)
  unreadable-sample      loading the sample raised an error
  label-not-integer      a label that is not a whole number
  label-out-of-range     a label outside [0, num_classes)
  missing-modality       a sample without one of the data set's modalities
  unexpected-modality    a sample with a modality the data set does not declare
  wrong-shape            a modality's tensor whose shape differs from the declared one (or not a tensor)
  non-finite             NaN or Inf in an input
  leaked-sample          the same input tensors in two splits
  leaked-id              the same sample id (e.g. source video) in two splits
  damaged-shard          a prepared shard's array file that no longer matches its checksum (verify())

What a split declares for these checks (data/base.py `Split`):
  check() -> list[Problem]    problems with its files, one per bad sample, `index` set, `split` left None.
                              These samples are not loaded by the generic checks.
  sample_ids()                what each sample comes from (a file, a source video); an id in two splits
                              is leakage even where augmentation makes the tensors differ.
  verify() -> list[Problem]   a check too costly for every start (the checksums of prepared shards):
                              run by `latefusion check-data` (check_bundle's `thorough`), not by training.
  checked_when_prepared       a split whose samples were decoded and checked when they were written
                              (`latefusion prepare`): only its labels and ids are checked here, since
                              decoding a full-size split at every start would cost a pass over the data.
"""

from __future__ import annotations

import contextlib
import dataclasses
import hashlib
import random
import sys
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, Iterator

import numpy as np
import torch

from ..errors import DataError
from .base import SPLITS, DataBundle, DataSpec, Split

# Enough lines per kind to see the pattern; the rest is counted.
REPORT_LINES_PER_KIND = 10


@dataclass(frozen=True)
class Problem:
    kind: str
    message: str
    split: str | None = None
    index: int | None = None  # the sample's position in its split; None: the split as a whole

    @property
    def where(self) -> str:
        return str(self.split) if self.index is None else f"{self.split}[{self.index}]"


class DataCheckError(DataError):
    """The data checks found problems; the message is the report."""

    def __init__(self, report: str, problems: list[Problem]) -> None:
        super().__init__(report)
        self.problems = problems


def check_sample(inputs: Any, label: Any, spec: DataSpec) -> list[Problem]:
    """Problems of one sample (kind and message; the caller says where)."""
    if not isinstance(inputs, Mapping):
        return [Problem("wrong-shape", f"the sample's inputs are a {type(inputs).__name__}, expected a mapping modality -> tensor")]
    problems = []
    for modality in spec.modalities:
        x = inputs.get(modality.name)
        if x is None:
            problems.append(Problem("missing-modality", f"modality {modality.name!r} is missing (the sample has {sorted(map(str, inputs))})"))
        elif not isinstance(x, torch.Tensor):
            problems.append(Problem("wrong-shape", f"modality {modality.name!r} is a {type(x).__name__}, expected a tensor of shape {modality.shape}"))
        else:
            if tuple(x.shape) != tuple(modality.shape):
                problems.append(Problem("wrong-shape", f"modality {modality.name!r} has shape {tuple(x.shape)}, expected {tuple(modality.shape)}"))
            if (x.is_floating_point() or x.is_complex()) and not bool(torch.isfinite(x).all()):
                nan, inf = int(torch.isnan(x).sum()), int(torch.isinf(x).sum())
                problems.append(Problem("non-finite", f"modality {modality.name!r} holds {nan} NaN and {inf} Inf values"))
    extra = sorted(set(map(str, inputs)) - set(spec.modality_names))
    if extra:
        problems.append(Problem("unexpected-modality", f"modalities {extra} are not among the data set's {spec.modality_names}"))
    return problems + check_label(label, spec.num_classes)


def check_label(label: Any, num_classes: int) -> list[Problem]:
    if isinstance(label, torch.Tensor) and label.numel() == 1:
        label = label.item()
    if isinstance(label, np.generic):
        label = label.item()
    whole = isinstance(label, int) and not isinstance(label, bool) or isinstance(label, float) and label.is_integer()
    if not whole:
        return [Problem("label-not-integer", f"label {label!r} is not a whole number, expected a class index in [0, {num_classes})")]
    if not 0 <= label < num_classes:
        return [Problem("label-out-of-range", f"label {int(label)} is outside [0, {num_classes}) for this data set's {num_classes} classes")]
    return []


def fingerprint(inputs: Mapping[str, torch.Tensor]) -> bytes:
    """A digest of a sample's inputs: equal digests mean identical tensors (name, dtype, shape, values)."""
    digest = hashlib.blake2b(digest_size=16)
    for name in sorted(inputs):
        x = inputs[name].detach().cpu().contiguous()
        digest.update(f"{name}|{x.dtype}|{tuple(x.shape)}|".encode())
        digest.update(x.flatten().view(torch.uint8).numpy().tobytes())
    return digest.digest()


@contextlib.contextmanager
def preserved_rng() -> Iterator[None]:
    """Loading samples may run random transforms; the caller's random streams are left as they were."""
    python, numpy = random.getstate(), np.random.get_state()
    with torch.random.fork_rng(devices=[]):
        yield
    random.setstate(python)
    np.random.set_state(numpy)


def check_split(dataset: Split, split: str, spec: DataSpec, thorough: bool = True) -> tuple[list[Problem], dict[bytes, list[int]]]:
    """The split's problems, and the fingerprint -> indices of its good samples (for leakage)."""
    if len(dataset) == 0:
        return [Problem("empty-split", f"split {split!r} has no samples", split)], {}
    found = dataset.check() + (dataset.verify() if thorough else [])
    problems = [dataclasses.replace(p, split=split) for p in found]
    if dataset.checked_when_prepared:
        labels = dataset.labels.tolist()
        return problems + [dataclasses.replace(p, split=split, index=i) for i, y in enumerate(labels) for p in check_label(y, spec.num_classes)], {}
    unloadable = {p.index for p in problems}
    fingerprints: dict[bytes, list[int]] = {}
    for index in range(len(dataset)):
        if index in unloadable:
            continue
        try:
            inputs, label = dataset[index]
        except Exception as error:  # whatever a data set raises, the report names the sample instead of crashing
            problems.append(Problem("unreadable-sample", f"loading it raised {type(error).__name__}: {error}", split, index))
            continue
        found = check_sample(inputs, label, spec)
        problems += [dataclasses.replace(p, split=split, index=index) for p in found]
        if not found:
            fingerprints.setdefault(fingerprint(inputs), []).append(index)
    return problems, fingerprints


def leaks(keys: dict[str, dict[Any, list[int]]], kind: str, what: str) -> list[Problem]:
    """Keys (fingerprints, ids) found in two splits. The copies in the earlier split (train before val
    before test) are the ones reported, and the ones `skip_bad` drops, so evaluation splits stay whole."""
    problems = []
    for i, early in enumerate(SPLITS):
        for late in SPLITS[i + 1:]:
            for key, indices in keys[early].items():
                if key in keys[late]:
                    problems += [Problem(kind, f"{what} as {late}[{keys[late][key][0]}]", early, index) for index in indices]
    return problems


def sample_ids(dataset: Split) -> dict[str, list[int]]:
    by_id: dict[str, list[int]] = {}
    for index, sample_id in enumerate(dataset.sample_ids() or []):
        by_id.setdefault(str(sample_id), []).append(index)
    return by_id


def check_bundle(bundle: DataBundle, thorough: bool = True) -> list[Problem]:
    """Every problem of every split, in split order; `thorough` adds the splits' costly `verify()`."""
    problems: list[Problem] = []
    fingerprints: dict[str, dict[bytes, int]] = {}
    with preserved_rng():
        for split in SPLITS:
            found, fingerprints[split] = check_split(bundle.splits[split], split, bundle.spec, thorough)
            problems += found
    ids = {split: sample_ids(bundle.splits[split]) for split in SPLITS}
    problems += leaks(fingerprints, "leaked-sample", "same input tensors")
    problems += leaks(ids, "leaked-id", "same sample id")
    return problems


def format_report(bundle: DataBundle, problems: list[Problem]) -> str:
    sizes = ", ".join(f"{split} {len(bundle.splits[split])}" for split in SPLITS)
    if not problems:
        return f"data set {bundle.name!r} ({sizes} samples): no problems found"
    bad = len({(p.split, p.index) for p in problems})
    lines = [f"data set {bundle.name!r} ({sizes} samples): {len(problems)} problems in {bad} places"]
    for kind in dict.fromkeys(p.kind for p in problems):  # in order of first appearance
        of_kind = [p for p in problems if p.kind == kind]
        lines.append(f"  {kind} ({len(of_kind)}):")
        lines += [f"    {p.where}: {p.message}" for p in of_kind[:REPORT_LINES_PER_KIND]]
        if len(of_kind) > REPORT_LINES_PER_KIND:
            lines.append(f"    ... and {len(of_kind) - REPORT_LINES_PER_KIND} more")
    return "\n".join(lines)


def drop_bad_samples(bundle: DataBundle, problems: list[Problem]) -> tuple[DataBundle, dict[str, int]]:
    """The bundle without the samples `problems` name, and how many were dropped per split."""
    whole = [p for p in problems if p.index is None]
    if whole:
        raise DataCheckError(format_report(bundle, whole) + "\nthese concern whole splits; skip_bad cannot drop them", whole)
    bad = {split: {p.index for p in problems if p.split == split} for split in SPLITS}
    splits = {}
    for split in SPLITS:
        dataset = bundle.splits[split]
        keep = [i for i in range(len(dataset)) if i not in bad[split]]
        if not keep:
            raise DataCheckError(f"data set {bundle.name!r}: every sample of split {split!r} is bad; skip_bad would leave it empty\n"
                                 + format_report(bundle, problems), problems)
        splits[split] = dataset.subset(keep) if bad[split] else dataset
    return dataclasses.replace(bundle, splits=splits), {split: len(indices) for split, indices in bad.items() if indices}


def checked(bundle: DataBundle, *, skip_bad: bool) -> DataBundle:
    """The bundle if it passes every check; otherwise DataCheckError with the report, or, with
    `skip_bad`, the bundle without its bad samples (the report and the count go to stderr)."""
    problems = check_bundle(bundle, thorough=False)  # at every start: the cheap checks only
    if not problems:
        return bundle
    report = format_report(bundle, problems)
    if not skip_bad:
        raise DataCheckError(f"{report}\nfix the data, or pass --skip-bad (data.skip_bad=true) to drop the bad samples", problems)
    kept, dropped = drop_bad_samples(bundle, problems)
    counts = ", ".join(f"{split} {n}" for split, n in dropped.items())
    print(f"{report}\nskip_bad: dropped {sum(dropped.values())} bad samples ({counts})", file=sys.stderr)
    return kept
