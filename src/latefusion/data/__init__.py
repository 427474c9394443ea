"""Data sets, by name. A new data set is one module that registers a builder with `@DATASETS.register`."""

from __future__ import annotations

from ..config import DataConfig
from .base import SPLITS, Batch, DataBundle, DataSpec, Inputs, Modality, Split, SubsetSplit, TensorSplit, collate, hash_parts
from .checks import checked
from .registry import DATASETS
from .standardize import fit_standardization


def build_dataset(config: DataConfig) -> DataBundle:
    """The data set `config` names, after its data checks (see checks.py) unless `config.check` is off,
    with the statistics of the modalities it standardises taken from what is left of its train split
    (see standardize.py)."""
    bundle = DATASETS.get(config.name)(config)
    return fit_standardization(checked(bundle, skip_bad=config.skip_bad) if config.check else bundle)


from . import ave, avdigits, cremad, folder, folder_prepare, kinetics, kinetics_sounds, modelnet40, synthetic, ucf101, vggsound  # noqa: E402,F401  (register the built-in data sets)
from .frames import IN_MEMORY, from_arrays, from_dataframe  # noqa: E402  (in-memory data, from Python)

__all__ = ["DATASETS", "SPLITS", "Batch", "DataBundle", "DataSpec", "Inputs", "Modality", "Split", "SubsetSplit", "TensorSplit", "hash_parts",
           "build_dataset", "collate", "IN_MEMORY", "from_arrays", "from_dataframe"]
