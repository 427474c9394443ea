"""The one training loop, shared by every method. Read top to bottom:

  build data (checked), method and model -> (resume) -> for each epoch: train (checkpointing every
  train.checkpoint_every_steps), validate, checkpoint
  -> reload the best-on-validation weights -> evaluate the test split once -> result.json

What differs between methods (loss, gradients, extra modules) lives in `methods/`, not here.
Launched by torchrun, every process runs this loop on its share of each batch (distributed.py).
"""

from __future__ import annotations

import contextlib
import math
import platform
import random
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn
from torch.utils.data import DataLoader, Dataset
from tqdm.auto import tqdm

from . import __version__, distributed
from .config import RunConfig, dump_config
from .data import DataBundle, build_dataset, collate
from .interrupt import raise_if_stop_requested, stop_requested
from .methods import Method, build_method
from .runs import RunDir, atomic_write_text, load_checkpoint, save_checkpoint, write_json


class NonFiniteLossError(RuntimeError):
    """The training loss became NaN or Inf; the last good checkpoint is kept."""


def seed_everything(seed: int) -> None:
    random.seed(seed)
    np.random.seed(seed % 2**32)
    torch.manual_seed(seed)


def resolve_device(name: str) -> torch.device:
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if name == "cuda" and not torch.cuda.is_available():
        raise RuntimeError("train.device=cuda but no CUDA device is available; use train.device=auto or cpu")
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
        raise RuntimeError(f"train.precision=bf16 is not supported on {device}; use precision=auto or fp32")
    return torch.autocast("cuda", dtype=torch.bfloat16) if use_bf16 else contextlib.nullcontext()


def to_device(inputs: dict[str, torch.Tensor], labels: torch.Tensor, device: torch.device):
    return {m: x.to(device, non_blocking=True) for m, x in inputs.items()}, labels.to(device, non_blocking=True)


def make_loader(dataset: Dataset, config: RunConfig, *, train: bool, epoch: int = 0, start_step: int = 0) -> DataLoader:
    """Training batches of `epoch` from batch `start_step` on (a run resumed inside an epoch), or evaluation batches."""
    # The order of each epoch is a function of (seed, epoch) alone, so a resumed run sees the same batches.
    # The loader gets its own generator too: otherwise it draws its workers' seed from the global RNG.
    # Several processes share out each batch of that one order (distributed.shard).
    generator = torch.Generator().manual_seed(config.train.seed * 100_003 + epoch)
    order = torch.randperm(len(dataset), generator=generator)[start_step * config.data.batch_size:].tolist() if train else None
    return DataLoader(
        dataset,
        batch_size=distributed.local_batch_size(config.data.batch_size) if train else config.data.eval_batch_size,
        sampler=distributed.shard(order, config.data.batch_size) if train else None,
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
def evaluate(method: Method, model: nn.Module, dataset: Dataset, config: RunConfig, device: torch.device) -> dict[str, float]:
    model.eval()
    correct, total, loss_sum = 0, 0, 0.0
    for inputs, labels in make_loader(distributed.part(dataset), config, train=False):
        inputs, labels = to_device(inputs, labels, device)
        with autocast(device, config.train.precision):
            scores = method.predict(model, inputs).float()
        loss_sum += torch.nn.functional.cross_entropy(scores, labels, reduction="sum").item()
        correct += (scores.argmax(1) == labels).sum().item()
        total += len(labels)
    correct, total, loss_sum = distributed.sum_values(correct, total, loss_sum)
    return {"acc": correct / total, "loss": loss_sum / total, "n": int(total)}


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


def config_differences(old: RunConfig, new: RunConfig) -> list[str]:
    """Keys whose values differ, ignoring those that do not change the result (progress bars)."""
    def flat(tree, prefix=""):
        for key, value in tree.items():
            if isinstance(value, dict) and value:
                yield from flat(value, f"{prefix}{key}.")
            else:
                yield f"{prefix}{key}", value
    a, b = dict(flat(old.model_dump(mode="json"))), dict(flat(new.model_dump(mode="json")))
    neutral = {"train.progress", "train.checkpoint_every_steps", "train.channels_last", "train.cudnn_benchmark"}
    return [f"{k}: {a.get(k)!r} -> {b.get(k)!r}" for k in sorted(a.keys() | b.keys()) if a.get(k) != b.get(k) and k not in neutral]


def load_model(run: RunDir, device: str | torch.device = "cpu") -> nn.Module:
    """Rebuild a finished run's model from its folder and load its best-on-validation weights."""
    config, spec = run.config(), run.spec()
    method = build_method(config, spec)
    model = method.build_model()
    if method.trains:
        model.load_state_dict(load_checkpoint(run.best)["model"])
    return model.to(device).eval()


def train(config: RunConfig, out: str | Path, *, resume: bool = False, bundle: DataBundle | None = None) -> dict[str, Any]:
    """Train (or, for methods that do not train, assemble) one run in folder `out`; returns result.json."""
    run = RunDir(out)
    if run.config_file.exists():
        if not resume:
            raise FileExistsError(f"{run.path} already holds a run; pass --resume to continue it or choose another folder")
        changed = config_differences(run.config(), config)
        if changed:
            raise ValueError(f"cannot resume {run.path} with a different configuration: " + "; ".join(changed))
        if run.is_finished():
            return run.result()
    started = time.time()
    seed_everything(config.train.seed)
    device = setup_device(config)
    distributed.local_batch_size(config.data.batch_size)  # refuses a global batch the processes cannot share
    bundle = bundle or build_dataset(config.data)
    method = build_method(config, bundle.spec)
    model = place(method.build_model(), device, config)
    place(method, device, config)
    distributed.barrier()  # every process has looked for an earlier run before the main one writes
    writes = distributed.is_main()  # only the main process writes files
    if writes:
        run.path.mkdir(parents=True, exist_ok=True)
        atomic_write_text(run.config_file, dump_config(config))
        write_json(run.data_file, bundle.spec.to_json())

    history: list[dict[str, Any]] = []
    best = {"val_acc": -1.0, "epoch": -1}
    if method.trains:
        params = [p for p in [*model.parameters(), *method.parameters()] if p.requires_grad]
        optimizer = build_optimizer(params, config)
        scheduler = build_scheduler(optimizer, config)
        # (epoch, step): the next batch to train; last.pt saved inside an epoch has step > 0.
        start_epoch, start_step, totals, counts = 0, 0, {}, {}
        if resume and run.last.exists():
            state = load_checkpoint(run.last, map_location=device)
            model.load_state_dict(state["model"])
            method.load_state_dict(state["method"])
            optimizer.load_state_dict(state["optimizer"])
            scheduler.load_state_dict(state["scheduler"])
            set_rng_state(state["rng"])
            history, best, start_epoch, start_step = state["history"], state["best"], state["epoch"], state["step"]
            totals, counts = state["totals"], state["counts"]
            started -= state["elapsed"]

        def save_last(epoch: int, step: int, totals: dict[str, float], counts: dict[str, int]) -> None:
            if writes:
                save_checkpoint(run.last, {
                    "model": model.state_dict(), "method": method.state_dict(), "optimizer": optimizer.state_dict(),
                    "scheduler": scheduler.state_dict(), "rng": rng_state(), "epoch": epoch, "step": step, "totals": totals,
                    "counts": counts, "history": history, "best": best, "elapsed": time.time() - started,
                })

        train_split = method.train_split(bundle.splits["train"])
        steps_per_epoch = distributed.steps_per_epoch(len(train_split), config.data.batch_size)
        step_loss = distributed.wrap(method, model, device)  # the method's training_loss, behind DDP on several processes
        every, patience = config.train.checkpoint_every_steps, config.train.patience
        bar = tqdm(
            total=config.train.epochs * steps_per_epoch, initial=start_epoch * steps_per_epoch + start_step,
            desc=f"{config.method.name}", disable=not (config.train.progress and writes), leave=False, dynamic_ncols=True,
        )
        for epoch in range(start_epoch, config.train.epochs):
            # Checked before the epoch, not after it, so that a run resumed right after it stopped stops too.
            if patience is not None and epoch - 1 - best["epoch"] >= patience:
                break
            model.train()
            method.train()
            step, totals, counts = (start_step, totals, counts) if epoch == start_epoch else (0, {}, {})
            if step == 0:  # a run resumed inside an epoch already holds what this set up
                method.on_epoch_start(epoch, model)
            for inputs, labels in make_loader(train_split, config, train=True, epoch=epoch, start_step=step):
                inputs, labels = to_device(inputs, labels, device)
                for _ in range(method.steps_per_batch):
                    with autocast(device, config.train.precision):
                        loss, logs = step_loss(inputs, labels)
                    logs = distributed.average(logs)
                    global_loss = distributed.average({"loss": loss.item()})["loss"]
                    if not math.isfinite(global_loss):
                        kept = f"The last good checkpoint is kept at {run.last}" if run.last.exists() else "No checkpoint had been saved yet"
                        raise NonFiniteLossError(f"training loss is {global_loss} at epoch {epoch}, step {step}; stopped. {kept}")
                    optimizer.zero_grad(set_to_none=True)
                    method.backward(model, loss)
                    if config.optim.grad_clip:
                        torch.nn.utils.clip_grad_norm_(params, config.optim.grad_clip)
                    optimizer.step()
                    for key, value in logs.items():
                        totals[key] = totals.get(key, 0.0) + value
                        counts[key] = counts.get(key, 0) + 1
                step += 1
                bar.update()
                stop = distributed.any_process(stop_requested())
                if stop or (every and step % every == 0 and step < steps_per_epoch):
                    save_last(epoch, step, totals, counts)
                    raise_if_stop_requested(f"at epoch {epoch}, step {step}; saved {run.last}, continue with --resume", elsewhere=stop)
            scheduler.step()

            val = evaluate(method, model, bundle.splits["val"], config, device)
            row = {"epoch": epoch, **{f"train_{k}": v / counts[k] for k, v in totals.items()}, "val_acc": val["acc"], "val_loss": val["loss"], "lr": optimizer.param_groups[0]["lr"]}
            history.append(row)
            bar.set_postfix(loss=f"{row['train_loss']:.3f}", val_acc=f"{val['acc']:.3f}")
            if val["acc"] > best["val_acc"]:
                best = {"val_acc": val["acc"], "epoch": epoch}
                if writes:
                    save_checkpoint(run.best, {"model": model.state_dict(), "method": method.state_dict(), "epoch": epoch})
            save_last(epoch + 1, 0, {}, {})
            if writes:
                run.write_metrics(history)
            raise_if_stop_requested(f"after epoch {epoch}; saved {run.last}, continue with --resume", elsewhere=distributed.any_process(stop_requested()))
        bar.close()
        distributed.barrier()  # the main process has written best.pt
        if best["epoch"] >= 0:
            state = load_checkpoint(run.best, map_location=device)
            model.load_state_dict(state["model"])
            method.load_state_dict(state["method"])

    val = evaluate(method, model, bundle.splits["val"], config, device)
    test = evaluate(method, model, bundle.splits["test"], config, device)
    result = {
        "method": config.method.name,
        "dataset": bundle.name,
        "modalities": method.modalities(),
        "val_acc": val["acc"],
        "test_acc": test["acc"],
        "n_val": val["n"],
        "n_test": test["n"],
        "best_epoch": best["epoch"],
        "epochs_run": len(history),
        "wall_time_s": round(time.time() - started, 2),
        "environment": environment(device),
    }
    if writes:
        write_json(run.result_file, result)
    return result
