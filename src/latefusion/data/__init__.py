"""Data sets, by name. A new data set is one module that registers a builder with `@DATASETS.register`."""

from __future__ import annotations

from typing import Callable

from ..config import DataConfig
from ..registry import Registry
from .base import SPLITS, Batch, DataBundle, DataSpec, Inputs, Modality, TensorSplit, collate

DatasetBuilder = Callable[[DataConfig], DataBundle]
DATASETS: Registry[DatasetBuilder] = Registry("data set")


def build_dataset(config: DataConfig) -> DataBundle:
    return DATASETS.get(config.name)(config)


from . import folder, synthetic  # noqa: E402,F401  (register the built-in data sets)

__all__ = ["DATASETS", "SPLITS", "Batch", "DataBundle", "DataSpec", "Inputs", "Modality", "TensorSplit", "build_dataset", "collate"]
