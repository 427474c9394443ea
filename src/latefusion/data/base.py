"""The data model: a sample is a mapping modality name -> tensor plus an integer label.

A data set is a `DataBundle`: which modalities it has (in a fixed order), how many classes, and its
train / val / test splits. Model selection uses `val` only; `test` is read once, for the final numbers.
"""

from __future__ import annotations

import dataclasses
import functools
import hashlib
import json
from dataclasses import dataclass, field
from typing import Any, Callable

import numpy as np
import torch
from torch import Tensor
from torch.utils.data import Dataset

from ..errors import DataError

Inputs = dict[str, Tensor]
Batch = tuple[Inputs, Tensor]
SPLITS = ("train", "val", "test")


@dataclass(frozen=True)
class Modality:
    """One input stream. `kind` picks a default encoder (vector -> mlp, image -> cnn, audio -> audio-cnn).
    `shape` is what the encoder takes per sample. `stage`, when set, names the input stage
    (models/input_stage.py) that turns the compact batches the loader yields (uint8 frames, int16
    audio) into that input on the model's device, e.g. {"name": "log-spectrogram", "n_fft": 256, "hop": 128}."""

    name: str
    kind: str
    shape: tuple[int, ...]
    stage: dict[str, Any] | None = None


@dataclass
class DataSpec:
    """What a model needs to know of a data set, without its samples; stored with every run."""

    name: str
    modalities: list[Modality]
    num_classes: int
    class_names: list[str] | None = None
    # Encoder suggested per modality name, e.g. {"image": {"name": "cnn"}}; the config can override it.
    encoders: dict[str, dict[str, Any]] = field(default_factory=dict)

    @property
    def modality_names(self) -> list[str]:
        return [m.name for m in self.modalities]

    def modality(self, name: str) -> Modality:
        for m in self.modalities:
            if m.name == name:
                return m
        raise DataError(f"data set {self.name!r} has no modality {name!r}; it has {self.modality_names}")

    def to_json(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "modalities": [{"name": m.name, "kind": m.kind, "shape": list(m.shape), "stage": m.stage} for m in self.modalities],
            "num_classes": self.num_classes,
            "class_names": self.class_names,
            "encoders": self.encoders,
        }

    @classmethod
    def from_json(cls, raw: dict[str, Any]) -> "DataSpec":
        modalities = [Modality(m["name"], m["kind"], tuple(m["shape"]), m.get("stage")) for m in raw["modalities"]]
        return cls(raw["name"], modalities, raw["num_classes"], raw.get("class_names"), raw.get("encoders", {}))


@dataclass
class DataBundle(DataSpec):
    """A data set's spec plus its train / val / test splits."""

    splits: dict[str, "Split"] = field(default_factory=dict)

    @property
    def spec(self) -> DataSpec:
        return DataSpec(self.name, self.modalities, self.num_classes, self.class_names, self.encoders)

    def __post_init__(self) -> None:
        missing = [s for s in SPLITS if s not in self.splits]
        if missing:
            raise DataError(f"data set {self.name!r} lacks split(s) {missing}; every data set needs {list(SPLITS)}")
        for name, split in self.splits.items():
            if not isinstance(split, Split):
                raise DataError(f"data set {self.name!r}: split {name!r} is a {type(split).__name__}; a split must be a "
                                f"latefusion.data.Split (TensorSplit holds tensors in memory; subclass Split for anything else)")

    @functools.cached_property
    def fingerprint(self) -> str:
        """A hash of the spec and of what training reads from every split (computed once per bundle)."""
        digest = hashlib.sha256(json.dumps(self.spec.to_json(), sort_keys=True).encode())
        for name in SPLITS:
            digest.update(f"|{name}:{self.splits[name].content_hash()}".encode())
        return digest.hexdigest()[:16]


class Split(Dataset):
    """One split as the training loop and the methods see it. Besides the samples (`__len__`,
    `__getitems__` returning a batch), a split declares what the methods need to know of it:

      augments        whether reading a sample twice can give different inputs (random transforms)
      sample_ids()    what each sample comes from (a file, a source video), in order; None if unknown
      check()         problems with its files, found without loading samples (data/checks.py)
      verify()        checks too costly for every start (prepared shards' checksums), run by check-data
      checked_when_prepared  its samples were decoded and checked when written (`latefusion prepare`)
      content_hash()  a hash of what is read (stored arrays or files, labels, the transform's
                      settings), so caches and resumed runs can tell when the data changed
      deterministic() the same samples through the evaluation transform (no augmentation)
      only(modalities) the same samples giving those modalities alone (a prepared split then reads
                      those arrays alone; others give every modality)
      subset(indices) some of the samples, keeping all of the above
      training_order(generator)  the order a training epoch visits the samples in: a random
                      permutation, unless a method's training split arranges its epochs otherwise
    """

    augments: bool = False
    checked_when_prepared: bool = False

    def __len__(self) -> int:
        raise NotImplementedError

    def __getitems__(self, indices: list[int]) -> Batch:
        raise NotImplementedError

    def sample_ids(self) -> list[str] | None:
        return None

    def check(self) -> list:
        return []

    def verify(self) -> list:
        return []

    def content_hash(self) -> str:
        raise NotImplementedError

    def deterministic(self) -> "Split":
        return self

    def only(self, modalities: list[str]) -> "Split":
        return self

    def subset(self, indices: list[int]) -> "Split":
        return SubsetSplit(self, indices)

    def training_order(self, generator: torch.Generator) -> list[int]:
        """The order of one training epoch, drawn from that epoch's generator (a function of the seed
        and the epoch alone, so a resumed run sees the same batches). A method's training split may
        arrange it otherwise: Data Remixing (methods/remix.py) batches each modality's samples apart."""
        return torch.randperm(len(self), generator=generator).tolist()

    def __getitem__(self, index: int) -> tuple[Inputs, int]:
        inputs, labels = self.__getitems__([index])
        return {name: t[0] for name, t in inputs.items()}, int(labels[0])


class SubsetSplit(Split):
    """Some samples of a split (what `data.skip_bad` keeps), declaring what its parent declares."""

    def __init__(self, parent: Split, indices: list[int]) -> None:
        self.parent, self.indices = parent, list(indices)
        self.augments, self.checked_when_prepared = parent.augments, parent.checked_when_prepared

    def __len__(self) -> int:
        return len(self.indices)

    def __getitems__(self, indices: list[int]) -> Batch:
        return self.parent.__getitems__([self.indices[i] for i in indices])

    def sample_ids(self) -> list[str] | None:
        ids = self.parent.sample_ids()
        return None if ids is None else [ids[i] for i in self.indices]

    def check(self) -> list:
        position = {index: i for i, index in enumerate(self.indices)}
        return [dataclasses.replace(p, index=position[p.index]) for p in self.parent.check() if p.index in position]

    @property
    def labels(self) -> Tensor:
        return self.parent.labels[torch.as_tensor(self.indices, dtype=torch.long)]

    def content_hash(self) -> str:
        return hash_parts(self.parent.content_hash(), np.asarray(self.indices, dtype=np.int64))

    def deterministic(self) -> Split:
        return SubsetSplit(self.parent.deterministic(), self.indices)

    def only(self, modalities: list[str]) -> Split:
        return SubsetSplit(self.parent.only(modalities), self.indices)


def hash_parts(*parts: Any) -> str:
    """sha256 of strings, arrays and tensors (their dtype, shape and bytes), in order."""
    digest = hashlib.sha256()
    for part in parts:
        if isinstance(part, Tensor):
            part = part.detach().cpu().contiguous().numpy()
        if isinstance(part, np.ndarray):
            digest.update(f"{part.dtype}{part.shape}".encode())
            digest.update(np.ascontiguousarray(part).data)
        else:
            digest.update(str(part).encode())
        digest.update(b"\0")
    return digest.hexdigest()[:16]


def describe_transform(transform: Any) -> str:
    """A transform's class and settings, for content hashes: dataclass and pydantic settings print
    themselves; anything else is named by its class alone."""
    if transform is None:
        return "none"
    name = f"{type(transform).__module__}.{type(transform).__qualname__}"
    return f"{name}:{transform!r}" if type(transform).__repr__ is not object.__repr__ else name


class TensorSplit(Split):
    """A split held in memory as one tensor per modality. Batches are gathered with one index op per
    modality (`__getitems__`) rather than sample by sample, which keeps small models from being
    bound by Python overhead. `transform`, when given, augments each batch (training only)."""

    def __init__(self, inputs: Inputs, labels: Tensor, transform: Callable[[Inputs], Inputs] | None = None,
                 ids: list[str] | None = None) -> None:
        sizes = {name: len(t) for name, t in inputs.items()}
        if any(size != len(labels) for size in sizes.values()):
            raise DataError(f"modalities and labels differ in length: {sizes}, labels {len(labels)}")
        if ids is not None and len(ids) != len(labels):
            raise DataError(f"{len(ids)} sample ids for {len(labels)} samples")
        self.inputs = inputs
        self.labels = labels.long()
        self.transform = transform
        self.augments = transform is not None
        self.ids = ids
        self._hash: str | None = None

    def __len__(self) -> int:
        return len(self.labels)

    def __getitems__(self, indices: list[int]) -> Batch:
        index = torch.as_tensor(indices)
        inputs = {name: t[index] for name, t in self.inputs.items()}
        if self.transform is not None:
            inputs = self.transform(inputs)
        return inputs, self.labels[index]

    def sample_ids(self) -> list[str] | None:
        return self.ids

    def content_hash(self) -> str:
        if self._hash is None:  # hashing every array once per split is enough: the tensors never change
            self._hash = hash_parts(*(part for name in sorted(self.inputs) for part in (name, self.inputs[name])), self.labels,
                                    describe_transform(self.transform))
        return self._hash

    def deterministic(self) -> Split:
        return self if self.transform is None else TensorSplit(self.inputs, self.labels, None, self.ids)


def collate(items: Batch | list[tuple[Inputs, int]]) -> Batch:
    """Stack samples into a batch; a batch already gathered by `__getitems__` passes through."""
    if isinstance(items, tuple):
        return items
    names = items[0][0].keys()
    inputs = {name: torch.stack([sample[name] for sample, _ in items]) for name in names}
    return inputs, torch.tensor([label for _, label in items], dtype=torch.long)
