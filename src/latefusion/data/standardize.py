"""Number features standardised with the statistics of the training split.

A data set asks for it by giving a vector modality the input stage `{"name": "standardize"}` (the
folder data set and `from_arrays`/`from_dataframe` do, unless switched off). `fit_standardization`
then fills in that stage's per-feature "mean" and "std" from the train split alone, never val or
test: `build_dataset` calls it after the data checks, so samples that `--skip-bad` dropped are not
counted, and `from_arrays` after its own. The stage (models/input_stage.py `StandardizeInput`)
computes (x - mean) / std on the model's device, in front of whatever encoder the modality gets.

The statistics are stored, not only recomputed: they are part of the data spec, which every run
writes to its `data.json` (and which the data fingerprint hashes). A finished run's model
(`load_model`, built from `data.json`) therefore standardises new data with the statistics of its
own training data; reading the same data again computes the same statistics (the same fingerprint).
"""

from __future__ import annotations

import dataclasses
from typing import Any

import torch

from .base import DataBundle, Modality, Split

STANDARDIZE = "standardize"
CHUNK = 4096  # samples read at once


def standardize_stage() -> dict[str, Any]:
    """The stage a data set gives a modality to standardise; its statistics come later (`fit_standardization`)."""
    return {"name": STANDARDIZE}


def wants_statistics(modality: Modality) -> bool:
    return bool(modality.stage) and modality.stage.get("name") == STANDARDIZE and "mean" not in modality.stage


def _chunks(split: Split, modality: str):
    dataset = split.deterministic().only([modality])  # a prepared split then reads that array alone, not its frames
    for start in range(0, len(dataset), CHUNK):
        inputs, _ = dataset.__getitems__(list(range(start, min(start + CHUNK, len(dataset)))))
        yield inputs[modality].to(torch.float64)


def train_statistics(split: Split, modality: str) -> tuple[torch.Tensor, torch.Tensor]:
    """Per-feature mean and standard deviation (population, float64) of `modality` over the samples of
    `split`, from their finite values only (two passes). A feature whose finite values are all equal
    (or that has none) gets std 1 and its value as the mean: it is only centred, never divided by 0."""
    count = total = low = high = None
    for x in _chunks(split, modality):
        finite = torch.isfinite(x)
        part = (finite.sum(0), torch.where(finite, x, 0).sum(0),
                torch.where(finite, x, torch.inf).amin(0), torch.where(finite, x, -torch.inf).amax(0))
        if count is None:
            count, total, low, high = part
        else:
            count, total, low, high = count + part[0], total + part[1], torch.minimum(low, part[2]), torch.maximum(high, part[3])
    if count is None:
        raise ValueError(f"no samples to compute the statistics of modality {modality!r} from")
    mean = total / count.clamp_min(1)
    squares = torch.zeros_like(mean)
    for x in _chunks(split, modality):
        finite = torch.isfinite(x)
        squares += torch.where(finite, x - mean, 0).square().sum(0)
    std = (squares / count.clamp_min(1)).sqrt()
    constant = (count == 0) | (high <= low)
    mean = torch.where(count == 0, 0.0, torch.where(constant, low, mean))
    return mean, torch.where(constant, 1.0, std)


def fit_standardization(bundle: DataBundle) -> DataBundle:
    """The bundle with every stage that asks for statistics filled from its train split (the bundle
    itself when none asks)."""
    if not any(wants_statistics(m) for m in bundle.modalities):
        return bundle
    modalities = []
    for modality in bundle.modalities:
        if wants_statistics(modality):
            mean, std = train_statistics(bundle.splits["train"], modality.name)
            stage = {**modality.stage, "mean": mean.float().tolist(), "std": std.float().tolist()}
            modality = dataclasses.replace(modality, stage=stage)
        modalities.append(modality)
    return dataclasses.replace(bundle, modalities=modalities)
