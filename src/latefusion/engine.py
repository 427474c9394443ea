"""The engine under the training loop: device and precision, data loaders, encoding and evaluation,
optimiser and schedule, random-number state. The loop (train.py), the probe, the methods' set-up and
the benchmarks share these; none of them is specific to a method.
"""

from __future__ import annotations

import contextlib
import platform
import random
import sys
from typing import Any

import numpy as np
import torch
from torch import nn
from torch.utils.data import DataLoader, Dataset

from . import distributed
from .config import AUTO, RunConfig
from .data import collate
from .errors import ConfigError
from .version import __version__


def seed_everything(seed: int) -> None:
    random.seed(seed)
    np.random.seed(seed % 2**32)
    torch.manual_seed(seed)


def resolve_device(name: str) -> torch.device:
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if name == "cuda" and not torch.cuda.is_available():
        raise ConfigError("train.device=cuda but no CUDA device is available; use train.device=auto or cpu")
    return torch.device(name)


def setup_device(config: RunConfig) -> torch.device:
    """This process's device (one GPU per process under torchrun), with cuDNN's autotuner as configured."""
    device = distributed.setup(resolve_device(config.train.device))
    if device.type == "cuda":
        # Times the convolution algorithms for each new input shape once, then uses the fastest.
        torch.backends.cudnn.benchmark = config.train.cudnn_benchmark
    return device


def place(module: nn.Module, device: torch.device, config: RunConfig) -> nn.Module:
    """Move to `device`; on CUDA, convolution weights in channels_last (NHWC), the layout of cuDNN's
    fastest bf16 kernels; a convolution's output takes its weight's layout, so activations follow."""
    if device.type == "cuda" and config.train.channels_last:
        return module.to(device, memory_format=torch.channels_last)
    return module.to(device)


def autocast(device: torch.device, precision: str):
    """bf16 autocast on GPUs that support it (precision auto or bf16); full fp32 elsewhere."""
    use_bf16 = device.type == "cuda" and precision in ("auto", "bf16") and torch.cuda.is_bf16_supported()
    if precision == "bf16" and not use_bf16:
        raise ConfigError(f"train.precision=bf16 is not supported on {device}; use precision=auto or fp32")
    return torch.autocast("cuda", dtype=torch.bfloat16) if use_bf16 else contextlib.nullcontext()


def to_device(inputs: dict[str, torch.Tensor], labels: torch.Tensor, device: torch.device):
    return {m: x.to(device, non_blocking=True) for m, x in inputs.items()}, labels.to(device, non_blocking=True)


# data.batch_size=auto: the largest power of two <= (training samples) / AUTO_STEPS, clamped to
# [AUTO_BATCH_MIN, AUTO_BATCH_MAX]. Data of 1,280 training samples or more keeps 128 (the synthetic
# presets' 2,000 among them); smaller data gets about AUTO_STEPS optimiser steps per epoch or more.
AUTO_BATCH_MIN, AUTO_BATCH_MAX, AUTO_STEPS = 8, 128, 10


def train_batch_size(config: RunConfig, n_train: int) -> int:
    """The global training batch size of a run whose training split holds `n_train` samples: the one
    place that reads `data.batch_size` for training (the loader, steps per epoch, the checks of
    train.py and G-Blending's copies all ask here).

    A number is used as given. "auto" is the largest power of two <= n_train / 10, clamped to
    [8, 128] (600 samples: 32, 19 steps per epoch; 1,280 and more: 128; under 160: 8), then rounded
    up to a multiple of the number of processes, so that every process gets an equal share of each
    batch (a power of two already is one for 1, 2, 4 or 8 processes)."""
    size = config.data.batch_size
    if size != AUTO:
        return size
    target = max(n_train // AUTO_STEPS, 1)
    size = min(max(1 << (target.bit_length() - 1), AUTO_BATCH_MIN), AUTO_BATCH_MAX)
    world = distributed.world_size()
    return -(-size // world) * world


def make_loader(dataset: Dataset, config: RunConfig, *, train: bool, epoch: int = 0, start_step: int = 0,
                n_train: int | None = None) -> DataLoader:
    """Training batches of `epoch` from batch `start_step` on (a run resumed inside an epoch), or evaluation batches.
    `n_train`: the size of the run's training split, from which `train_batch_size` resolves an "auto"
    batch size (default: the size of `dataset`); G-Blending trains on part of the split with the
    batch size of the whole."""
    # The order of each epoch is a function of (seed, epoch) alone, so a resumed run sees the same batches
    # (the training split draws it: `Split.training_order`).
    # The loader gets its own generator too: otherwise it draws its workers' seed from the global RNG.
    # Several processes share out each batch of that one order (distributed.shard).
    generator = torch.Generator().manual_seed(config.train.seed * 100_003 + epoch)
    batch_size = train_batch_size(config, len(dataset) if n_train is None else n_train) if train else config.data.eval_batch_size
    order = dataset.training_order(generator)[start_step * batch_size:] if train else None
    return DataLoader(
        dataset,
        batch_size=distributed.local_batch_size(batch_size) if train else batch_size,
        sampler=distributed.shard(order, batch_size) if train else None,
        generator=generator,
        num_workers=config.data.num_workers,
        collate_fn=collate,
        pin_memory=torch.cuda.is_available(),
        drop_last=False,
    )


@torch.no_grad()
def encode(encoder: nn.Module, modality: str, dataset: Dataset, config: RunConfig, device: torch.device) -> tuple[torch.Tensor, torch.Tensor]:
    """One encoder's features of every sample of `dataset`, in order, on the CPU in float32, with the labels."""
    encoder.eval()
    features, labels = [], []
    for inputs, y in make_loader(dataset, config, train=False):
        features.append(encoder(inputs[modality].to(device, non_blocking=True)).float().cpu())
        labels.append(y)
    return torch.cat(features), torch.cat(labels)


@torch.no_grad()
def evaluate(method, model: nn.Module, dataset: Dataset, config: RunConfig, device: torch.device, num_classes: int,
             *, per_sample: bool = False) -> dict[str, Any]:
    """Accuracy, macro-F1, mean cross-entropy and the confusion matrix (rows: true class) of the
    method's predictions on `dataset`, over every process's share; one host sync at the end. With
    several modalities, also "acc_by_modality": the accuracy of each modality's own share of the
    model's scores (`method.modality_scores`), how laziness shows while a joint model trains.

    `per_sample=True` adds "predicted" and "labels": int64 tensors (CPU), one entry per sample of
    `dataset` in its order, gathered from every process's share. Paired tests need them (the guide's
    McNemar test)."""
    model.eval()
    confusion = torch.zeros(num_classes, num_classes, dtype=torch.float64, device=device)
    loss_sum = torch.zeros((), dtype=torch.float64, device=device)
    by_modality: dict[str, torch.Tensor] = {}
    predictions, targets = [], []
    for inputs, labels in make_loader(distributed.part(dataset), config, train=False):
        inputs, labels = to_device(inputs, labels, device)
        with autocast(device, config.train.precision):
            if len(method.modalities()) > 1:
                scores, shares = method.scores(model, inputs)
            else:
                scores, shares = method.predict(model, inputs), {}
            scores = scores.float()
        loss_sum += torch.nn.functional.cross_entropy(scores, labels, reduction="sum")
        predicted = scores.argmax(1)
        confusion += torch.bincount(labels * num_classes + predicted, minlength=num_classes**2).view(num_classes, num_classes)
        for m, share in shares.items():
            by_modality[m] = by_modality.get(m, 0) + (share.argmax(1) == labels).sum()
        if per_sample:
            predictions.append(predicted)
            targets.append(labels)
    confusion, loss_sum = distributed.sum_tensor(confusion), distributed.sum_tensor(loss_sum)
    by_modality = {m: distributed.sum_tensor(hits) for m, hits in by_modality.items()}
    total = max(confusion.sum().item(), 1)
    result = {**classification_metrics(confusion.cpu()), "loss": loss_sum.item() / total}
    if by_modality:
        result["acc_by_modality"] = {m: hits.item() / total for m, hits in by_modality.items()}
    if per_sample:
        empty = torch.zeros(0, dtype=torch.long, device=device)
        for key, parts in (("predicted", predictions), ("labels", targets)):
            result[key] = distributed.gather_parts(torch.cat(parts) if parts else empty, len(dataset)).cpu()
    return result


def classification_metrics(confusion: torch.Tensor) -> dict[str, Any]:
    """acc, macro-F1 (the mean over classes present in the labels or the predictions), n and the matrix."""
    true, predicted, hits = confusion.sum(1), confusion.sum(0), confusion.diagonal()
    present = (true + predicted) > 0
    f1 = 2 * hits / (true + predicted).clamp_min(1)
    total = confusion.sum().item()
    return {"acc": hits.sum().item() / max(total, 1), "macro_f1": f1[present].mean().item() if present.any() else 0.0,
            "n": int(total), "confusion": confusion.long().tolist()}


def build_optimizer(params: list[nn.Parameter], config: RunConfig) -> torch.optim.Optimizer:
    o = config.optim
    if o.name == "sgd":
        return torch.optim.SGD(params, lr=o.lr, momentum=o.momentum, weight_decay=o.weight_decay)
    return torch.optim.AdamW(params, lr=o.lr, weight_decay=o.weight_decay)


def build_scheduler(optimizer: torch.optim.Optimizer, config: RunConfig):
    o, epochs = config.optim, max(config.train.epochs, 1)
    if o.schedule == "cosine":
        return torch.optim.lr_scheduler.CosineAnnealingLR(optimizer, T_max=epochs)
    if o.schedule == "step":
        return torch.optim.lr_scheduler.StepLR(optimizer, step_size=o.step_size, gamma=o.gamma)
    return torch.optim.lr_scheduler.LambdaLR(optimizer, lambda _: 1.0)


def rng_state() -> dict[str, Any]:
    return {
        "python": random.getstate(),
        "numpy": torch.from_numpy(np.random.get_state()[1].astype(np.int64)),
        "numpy_pos": int(np.random.get_state()[2]),
        "torch": torch.get_rng_state(),
        "cuda": torch.cuda.get_rng_state_all() if torch.cuda.is_available() else [],
    }


def set_rng_state(state: dict[str, Any]) -> None:
    version, internal, gauss = state["python"]
    random.setstate((version, tuple(internal), gauss))
    np.random.set_state(("MT19937", state["numpy"].numpy().astype(np.uint32), state["numpy_pos"]))
    torch.set_rng_state(state["torch"])
    if state["cuda"] and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(state["cuda"])


def environment(device: torch.device) -> dict[str, str]:
    return {
        "latefusion": __version__,
        "torch": torch.__version__,
        "python": platform.python_version(),
        "platform": platform.platform(),
        "device": torch.cuda.get_device_name(device) if device.type == "cuda" else platform.processor() or "cpu",
        "command": " ".join(sys.argv),
    }
