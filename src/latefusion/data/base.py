"""The data model: a sample is a mapping modality name -> tensor plus an integer label.

A data set is a `DataBundle`: which modalities it has (in a fixed order), how many classes, and its
train / val / test splits. Model selection uses `val` only; `test` is read once, for the final numbers.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Callable

import torch
from torch import Tensor
from torch.utils.data import Dataset

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
        raise KeyError(f"data set {self.name!r} has no modality {name!r}; it has {self.modality_names}")

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

    splits: dict[str, Dataset] = field(default_factory=dict)

    @property
    def spec(self) -> DataSpec:
        return DataSpec(self.name, self.modalities, self.num_classes, self.class_names, self.encoders)

    def __post_init__(self) -> None:
        missing = [s for s in SPLITS if s not in self.splits]
        if missing:
            raise ValueError(f"data set {self.name!r} lacks split(s) {missing}; every data set needs {list(SPLITS)}")


class TensorSplit(Dataset):
    """A split held in memory as one tensor per modality. Batches are gathered with one index op per
    modality (`__getitems__`) rather than sample by sample, which keeps small models from being
    bound by Python overhead."""

    def __init__(self, inputs: Inputs, labels: Tensor, transform: Callable[[Inputs], Inputs] | None = None) -> None:
        sizes = {name: len(t) for name, t in inputs.items()}
        if any(size != len(labels) for size in sizes.values()):
            raise ValueError(f"modalities and labels differ in length: {sizes}, labels {len(labels)}")
        self.inputs = inputs
        self.labels = labels.long()
        self.transform = transform

    def __len__(self) -> int:
        return len(self.labels)

    def __getitem__(self, index: int) -> tuple[Inputs, int]:
        inputs, labels = self.__getitems__([index])
        return {name: t[0] for name, t in inputs.items()}, int(labels[0])

    def __getitems__(self, indices: list[int]) -> Batch:
        index = torch.as_tensor(indices)
        inputs = {name: t[index] for name, t in self.inputs.items()}
        if self.transform is not None:
            inputs = self.transform(inputs)
        return inputs, self.labels[index]


def collate(items: Batch | list[tuple[Inputs, int]]) -> Batch:
    """Stack samples into a batch; a batch already gathered by `__getitems__` passes through."""
    if isinstance(items, tuple):
        return items
    names = items[0][0].keys()
    inputs = {name: torch.stack([sample[name] for sample, _ in items]) for name in names}
    return inputs, torch.tensor([label for _, label in items], dtype=torch.long)
