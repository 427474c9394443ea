"""Data sets by name: a new data set is one module that registers a builder `DataConfig -> DataBundle`."""

from __future__ import annotations

from typing import Callable

from ..config import DataConfig
from ..registry import Registry
from .base import DataBundle

DatasetBuilder = Callable[[DataConfig], DataBundle]
DATASETS: Registry[DatasetBuilder] = Registry("data set")
