"""The one training loop, shared by every method. Read top to bottom:

  lock the run folder -> build data (checked), method and model -> method.prepare -> (resume, after
  checking the stored config and data fingerprint) -> for each epoch: train_step per batch
  (checkpointing every train.checkpoint_every_steps), validate, checkpoint
  -> reload the best-on-validation weights -> evaluate the test split once -> result.json

What differs between methods (loss, gradients, extra modules) lives in `methods/`, not here; the
engine under the loop (devices, loaders, evaluation, optimiser, RNG state) is in engine.py.
Launched by torchrun, every process runs this loop on its share of each batch (distributed.py).
"""

from __future__ import annotations

import contextlib
import math
import time
from pathlib import Path
from typing import Any

import torch
from torch import nn

from . import distributed
from .config import AUTO, RunConfig, config_differences, config_fingerprint, dump_config
from .data import DataBundle, build_dataset
from .engine import (autocast, build_optimizer, build_scheduler, environment, evaluate, make_loader, place, rng_state,
                     seed_everything, set_rng_state, setup_device, to_device, train_batch_size)
from .errors import NonFiniteLossError, RunFolderError
from .interrupt import raise_if_stop_requested, stop_requested
from .loggers import MetricsLoggers
from .methods import Method, StepInfo, TrainingContext, build_method
from .models import load_pretrained_weights
from .progress import TrainProgress
from .runs import RunDir, RunResult, SplitPredictions
from .storage import atomic_write_text, load_checkpoint, save_checkpoint, write_json


def train_step(method: Method, step_loss: nn.Module, model: nn.Module, optimizer: torch.optim.Optimizer, params: list[nn.Parameter],
               inputs: dict[str, torch.Tensor], labels: torch.Tensor, epoch: int, config: RunConfig, device: torch.device) -> list[dict[str, torch.Tensor]]:
    """One batch: the method's optimiser steps on it (loss -> backward -> clip -> step). Returns each
    step's logged values, on the device: reading them is left to the caller, once per interval."""
    logged = []
    for substep in range(method.steps_per_batch):
        with autocast(device, config.train.precision):
            output = step_loss(inputs, labels, StepInfo(epoch, substep))
        optimizer.zero_grad(set_to_none=True)
        method.backward(model, output)
        if config.optim.grad_clip:
            torch.nn.utils.clip_grad_norm_(params, config.optim.grad_clip)
        optimizer.step()
        logged.append(output.logs)
    return logged


class Totals:
    """Sums and counts of logged values, kept on the device until read."""

    def __init__(self, sums: dict[str, torch.Tensor] | None = None, counts: dict[str, int] | None = None) -> None:
        self.sums, self.counts = dict(sums or {}), dict(counts or {})

    def add(self, logs: dict[str, torch.Tensor]) -> None:
        for key, value in logs.items():
            self.sums[key] = self.sums.get(key, 0) + value.float()  # a new tensor: never a view of the method's state
            self.counts[key] = self.counts.get(key, 0) + 1

    def means(self) -> dict[str, float]:
        """The means over every process (one host sync)."""
        if not self.sums:
            return {}
        values = distributed.mean_tensor(torch.stack(list(self.sums.values()))).tolist()
        return {key: value / self.counts[key] for key, value in zip(self.sums, values)}

    def state(self) -> dict[str, Any]:
        return {"sums": {k: v.cpu() for k, v in self.sums.items()}, "counts": self.counts}


def train(config: RunConfig, out: str | Path, *, resume: bool = False, bundle: DataBundle | None = None) -> RunResult:
    """Train (or, for methods that do not train, assemble) one run in folder `out`; returns its result
    (result.json's metrics and the per-sample predictions, both also saved in the folder)."""
    run = RunDir(out)
    with run.lock() if distributed.is_main() else contextlib.nullcontext():
        return _train(config, run, resume, bundle)


def _train(config: RunConfig, run: RunDir, resume: bool, bundle: DataBundle | None) -> RunResult:
    if run.config_file.exists():
        if not resume:
            raise RunFolderError(f"{run.path} already holds a run; pass --resume to continue it or choose another folder")
        changed = config_differences(run.config(), config)
        if changed:
            raise RunFolderError(f"cannot resume {run.path} with a different configuration: " + "; ".join(changed))
        if run.is_finished():
            return finished_result(run, bundle or build_dataset(config.data))
    started = time.time()
    seed_everything(config.train.seed)
    device = setup_device(config)
    if config.data.batch_size != AUTO:  # refuses a global batch the processes cannot share, before the data is read
        distributed.local_batch_size(config.data.batch_size)
    bundle = bundle or build_dataset(config.data)
    # The training split's size resolves data.batch_size=auto (engine.train_batch_size); config.yaml keeps "auto".
    n_train = len(bundle.splits["train"])
    batch_size = train_batch_size(config, n_train)
    method = build_method(config, bundle.spec)
    model = place(method.build_model(), device, config)
    writes = distributed.is_main()  # only the main process writes files
    fingerprints = {"config": config_fingerprint(config), "data": bundle.fingerprint}
    resumed = load_checkpoint(run.last, map_location=device) if resume and run.last.exists() else None
    if resumed is not None:
        refuse_changed_inputs(run, resumed, config, fingerprints, batch_size)
    else:
        load_pretrained_weights(model)
    metrics = MetricsLoggers(run, config.train.loggers)  # refuses a logger that is not installed before anything is written
    distributed.barrier()  # every process has looked for an earlier run before the main one writes
    if writes:
        run.path.mkdir(parents=True, exist_ok=True)
        atomic_write_text(run.config_file, dump_config(config))
        write_json(run.data_file, bundle.spec.to_json())
    context = TrainingContext(config, bundle, run, device, writes)
    train_set = method.prepare(model, context)
    place(method, device, config)

    history: list[dict[str, Any]] = []
    best = {"val_acc": -1.0, "epoch": -1}
    # The best epoch's validation evaluation (with per-sample predictions) is the final one: the
    # reloaded best weights are not evaluated on validation again.
    best_val = None
    if method.trains:
        params = [p for p in [*model.parameters(), *method.parameters()] if p.requires_grad]
        optimizer = build_optimizer(params, config)
        scheduler = build_scheduler(optimizer, config)
        # (epoch, step): the next batch to train; last.pt saved inside an epoch has step > 0.
        start_epoch, start_step, totals = 0, 0, Totals()
        if resumed is not None:
            model.load_state_dict(resumed["model"])
            method.load_state_dict(resumed["method"])
            optimizer.load_state_dict(resumed["optimizer"])
            scheduler.load_state_dict(resumed["scheduler"])
            set_rng_state(resumed["rng"])
            history, best, start_epoch, start_step = resumed["history"], resumed["best"], resumed["epoch"], resumed["step"]
            totals = Totals({k: v.to(device) for k, v in resumed["totals"]["sums"].items()}, resumed["totals"]["counts"])
            started -= resumed["elapsed"]

        def save_last(epoch: int, step: int, totals: Totals) -> None:
            if writes:
                save_checkpoint(run.last, {
                    "model": model.state_dict(), "method": method.state_dict(), "optimizer": optimizer.state_dict(),
                    "scheduler": scheduler.state_dict(), "rng": rng_state(), "epoch": epoch, "step": step, "totals": totals.state(),
                    "history": history, "best": best, "elapsed": time.time() - started,
                    "config": config.model_dump(mode="json"), "fingerprints": fingerprints, "batch_size": batch_size,
                })

        def check_finite(totals: Totals, epoch: int, step: int) -> dict[str, float]:
            means = totals.means()
            if not all(math.isfinite(v) for v in means.values()):
                kept = f"The last good checkpoint is kept at {run.last}" if run.last.exists() else "No checkpoint had been saved yet"
                raise NonFiniteLossError(f"training loss is not finite ({means}) by epoch {epoch}, step {step}; stopped. {kept}")
            return means

        steps_per_epoch = distributed.steps_per_epoch(len(train_set), batch_size)
        step_loss = distributed.wrap(method, model, device)  # the method's loss, behind DDP on several processes
        every, patience, log_every = config.train.checkpoint_every_steps, config.train.patience, config.train.log_every_steps
        bar = TrainProgress(run.path.name, config.train.epochs, steps_per_epoch, start_epoch * steps_per_epoch + start_step,
                            enabled=config.train.progress and writes)  # a bar on a terminal, else a line per epoch
        bar.start(len(train_set), batch_size, config.data.batch_size == AUTO)
        for epoch in range(start_epoch, config.train.epochs):
            # Checked before the epoch, not after it, so that a run resumed right after it stopped stops too.
            if patience is not None and epoch - 1 - best["epoch"] >= patience:
                break
            step = start_step if epoch == start_epoch else 0
            totals = totals if epoch == start_epoch else Totals()
            if step == 0:  # a run resumed inside an epoch already holds what this set up
                method.on_epoch_start(epoch, model, context)
            model.train()
            method.train()
            for inputs, labels in make_loader(train_set, config, train=True, epoch=epoch, start_step=step, n_train=n_train):
                inputs, labels = to_device(inputs, labels, device)
                for logs in train_step(method, step_loss, model, optimizer, params, inputs, labels, epoch, config, device):
                    totals.add(logs)
                step += 1
                bar.update()
                stop = distributed.any_process(stop_requested())
                checkpoint = stop or (every and step % every == 0 and step < steps_per_epoch)
                if checkpoint or step % log_every == 0:
                    bar.postfix(loss=f"{check_finite(totals, epoch, step).get('loss', math.nan):.3f}")
                if checkpoint:
                    save_last(epoch, step, totals)
                    raise_if_stop_requested(f"at epoch {epoch}, step {step}; saved {run.last}, continue with --resume", elsewhere=stop)
            scheduler.step()
            means = check_finite(totals, epoch, step)

            val = evaluate(method, model, bundle.splits["val"], config, device, bundle.num_classes, per_sample=True)
            row = {"epoch": epoch, **{f"train_{k}": v for k, v in means.items()}, "val_acc": val["acc"], "val_macro_f1": val["macro_f1"],
                   "val_loss": val["loss"], "lr": optimizer.param_groups[0]["lr"],
                   **({"val_acc_by_modality": val["acc_by_modality"]} if "acc_by_modality" in val else {})}
            history.append(row)
            bar.epoch_end(epoch, means.get("loss", math.nan), val["acc"])
            if val["acc"] > best["val_acc"]:
                best = {"val_acc": val["acc"], "epoch": epoch}
                best_val = val
                if writes:
                    save_checkpoint(run.best, {"model": model.state_dict(), "epoch": epoch, "config": config.model_dump(mode="json"),
                                               "fingerprints": fingerprints})
            if writes:  # metrics first: a kill between the two writes repeats this epoch on resume, losing nothing
                metrics.write(history)
            save_last(epoch + 1, 0, Totals())
            raise_if_stop_requested(f"after epoch {epoch}; saved {run.last}, continue with --resume", elsewhere=distributed.any_process(stop_requested()))
        bar.close()
        distributed.barrier()  # the main process has written best.pt
        model.load_state_dict(load_checkpoint(run.best, map_location=device)["model"])
    elif writes:  # a model assembled from finished runs (UME) is stored whole, so it loads from this folder alone
        save_checkpoint(run.best, {"model": model.state_dict(), "epoch": -1, "config": config.model_dump(mode="json"),
                                   "fingerprints": fingerprints})

    val = best_val or evaluate(method, model, bundle.splits["val"], config, device, bundle.num_classes, per_sample=True)
    test = evaluate(method, model, bundle.splits["test"], config, device, bundle.num_classes, per_sample=True)
    predictions = {split: SplitPredictions(scores["predicted"].numpy(), scores["labels"].numpy()) for split, scores in (("val", val), ("test", test))}
    if writes:  # before result.json: a finished run always has its predictions
        run.write_predictions(predictions)
    result = {
        "method": config.method.name,
        "dataset": bundle.name,
        "modalities": method.modalities(),
        "val_acc": val["acc"],
        "test_acc": test["acc"],
        "val_macro_f1": val["macro_f1"],
        "test_macro_f1": test["macro_f1"],
        "test_confusion": test["confusion"],
        # The joint model's accuracy from each modality's share of its scores, and their spread
        # (best minus worst modality): the imbalance the field reports beside accuracy.
        **({"test_acc_by_modality": test["acc_by_modality"], "test_modality_imbalance": imbalance(test["acc_by_modality"])}
           if "acc_by_modality" in test else {}),
        "n_train": len(train_set),
        "n_val": val["n"],
        "n_test": test["n"],
        "best_epoch": best["epoch"],
        "epochs_run": len(history),
        # How much optimisation the model had (the guide warns when it is too little to trust), with the global
        # batch trained with: data.batch_size, or what "auto" resolved to (engine.train_batch_size).
        **({"batch_size": batch_size, "steps_per_epoch": steps_per_epoch,
            "optimizer_steps": steps_per_epoch * len(history) * method.steps_per_batch} if method.trains else {}),
        "wall_time_s": round(time.time() - started, 2),
        "fingerprints": fingerprints,
        "environment": environment(device),
    }
    if writes:
        write_json(run.result_file, result)
    return RunResult(run.path, result, predictions)


def imbalance(acc_by_modality: dict[str, float]) -> float:
    return max(acc_by_modality.values()) - min(acc_by_modality.values())


def data_change(trained: str | None, given: str) -> list[str]:
    """How the data given differ from those a run was trained on (its recorded fingerprint; None: not recorded)."""
    return [] if trained in (None, given) else [f"data fingerprint: {trained} -> {given} (the data's contents changed since)"]


def finished_result(run: RunDir, bundle: DataBundle) -> RunResult:
    """A finished run's result, when the data it was trained on is the data given (as for an unfinished run)."""
    metrics = run.result()
    if changed := data_change(metrics.get("fingerprints", {}).get("data"), bundle.fingerprint):
        raise RunFolderError(f"cannot resume {run.path}: it finished on other data: {changed[0]}. Restore the data, or train into a new folder")
    return RunResult(run.path, metrics, run.predictions())


def refuse_changed_inputs(run: RunDir, resumed: dict[str, Any], config: RunConfig, fingerprints: dict[str, str], batch_size: int) -> None:
    """A run resumes only with the config, data and training batch size its last checkpoint was trained with."""
    changed = config_differences(resumed["config"], config)
    # data.batch_size=auto resolves again on resume: to the same number unless the process count changed
    # its rounding. (Checkpoints written before the batch size was recorded carry none.)
    if resumed.get("batch_size", batch_size) != batch_size:
        changed.append(f"training batch size: {resumed['batch_size']} -> {batch_size} (data.batch_size={config.data.batch_size} "
                       f"resolves to a multiple of the number of processes; resume with as many processes as before)")
    changed += data_change(resumed["fingerprints"]["data"], fingerprints["data"])
    if changed:
        raise RunFolderError(f"cannot resume {run.path}: its last checkpoint was trained with other settings or data "
                             f"({run.config_file.name} or the data changed since): " + "; ".join(changed)
                             + ". Restore them, or train into a new folder")
