"""Linear probe: how much of its own modality a trained encoder has learnt.

For each modality, the run's encoder is frozen, its features are computed once for every split,
and a fresh linear classifier is trained on the train features. The classifier's checkpoint is
chosen by validation accuracy; its test accuracy is the probe score. A uni-modal encoder's score is
the reference: a joint encoder that probes below it has stopped learning that modality (modality
laziness). Protocol: the OGM-GE/UMT papers' (frozen encoder + new linear head), with our choices of
optimiser and selection documented in docs/methods.md.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F
from pydantic import Field
from torch import Tensor, nn

import logging

from . import distributed
from .config import RunConfig, Section
from .data import SPLITS, DataBundle, build_dataset
from .engine import encode, resolve_device
from .errors import OutputError
from .methods import load_model
from .runs import RunDir, checkpoint_sha256
from .storage import read_json, write_json

log = logging.getLogger(__name__)


class ProbeConfig(Section):
    steps: int = Field(300, gt=0)
    lr: float = Field(0.05, gt=0)
    weight_decay: float = Field(1e-4, ge=0)
    eval_every: int = Field(10, gt=0)
    seed: int = 0
    # Train features through the evaluation transform (as val and test are), or through the
    # training augmentation (one random draw per sample, fixed for the probe).
    augmented_train: bool = False


def extract_features(encoder: nn.Module, modality: str, bundle: DataBundle, config: RunConfig, device: torch.device,
                     augmented_train: bool = False) -> dict[str, tuple[Tensor, Tensor]]:
    splits = {split: bundle.splits[split] if augmented_train and split == "train" else bundle.splits[split].deterministic() for split in SPLITS}
    return {split: encode(encoder, modality, data, config, device) for split, data in splits.items()}


def fit_linear(features: dict[str, tuple[Tensor, Tensor]], num_classes: int, config: ProbeConfig) -> dict[str, float]:
    """Full-batch AdamW on standardised features; the step with the best validation accuracy wins."""
    torch.manual_seed(config.seed)
    x_train, y_train = features["train"]
    mean, std = x_train.mean(0), x_train.std(0).clamp_min(1e-6)
    scaled = {split: ((x - mean) / std, y) for split, (x, y) in features.items()}
    head = nn.Linear(x_train.shape[1], num_classes)
    optimizer = torch.optim.AdamW(head.parameters(), lr=config.lr, weight_decay=config.weight_decay)

    def accuracy(split: str) -> float:
        x, y = scaled[split]
        with torch.no_grad():
            return (head(x).argmax(1) == y).float().mean().item()

    best = {"val_acc": -1.0}
    for step in range(1, config.steps + 1):
        loss = F.cross_entropy(head(scaled["train"][0]), scaled["train"][1])
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
        if step % config.eval_every == 0 or step == config.steps:
            val_acc = accuracy("val")
            if val_acc > best["val_acc"]:
                best = {"val_acc": val_acc, "test_acc": accuracy("test"), "train_acc": accuracy("train"), "step": step}
    return best


def probe_run(run_dir: str | Path, *, bundle: DataBundle | None = None, config: ProbeConfig | None = None) -> dict[str, dict[str, Any]]:
    """Probe every encoder of a finished run. The results go to `run_dir/probe.json` with what they
    were computed from (probe settings, the model's checkpoint, the data's fingerprint) and are reused
    only while all three are unchanged. A read-only run folder is probed all the same, without saving."""
    run = RunDir(run_dir)
    config = config or ProbeConfig()
    run_config = run.config()
    bundle = bundle or build_dataset(run_config.data)
    key = {"settings": config.model_dump(mode="json"), "checkpoint_sha256": checkpoint_sha256(run), "data": bundle.fingerprint}
    if run.probe_file.is_file():
        stored = read_json(run.probe_file)
        if stored.get("key") == key:
            return stored["results"]
    device = resolve_device(run_config.train.device)
    model = load_model(run, device)
    results = {}
    for modality, encoder in model.encoders.items():
        features = extract_features(encoder, modality, bundle, run_config, device, config.augmented_train)
        results[modality] = fit_linear(features, bundle.num_classes, config)
    if distributed.is_main():
        try:  # a run folder that cannot be written is probed all the same: the results are returned, not saved
            write_json(run.probe_file, {"key": key, "results": results})
        except OutputError as error:
            log.info("probe: results not saved (%s)", error)
    return results
