"""Defaults that train on a user's small data: `data.batch_size=auto` (one rule, engine.train_batch_size,
used by the loader, the steps per epoch and the checks; recorded in result.json and on the console;
config.yaml keeps "auto", so a run resumes) and number columns standardised with the statistics of
the training split (data/standardize.py), switchable."""

import importlib
import logging
import math
from pathlib import Path

import numpy as np
import pytest
import torch

from latefusion import distributed
from latefusion.config import RunConfig
from latefusion.data import build_dataset
from latefusion.engine import make_loader, train_batch_size
from latefusion.errors import RunFolderError
from latefusion.resolve import resolve_config
from latefusion.runs import RunDir

training = importlib.import_module("latefusion.train")  # the module; `latefusion.train` is also the function
REPO = Path(__file__).resolve().parents[1]


def small(*overrides: str, train_size: int = 100) -> RunConfig:
    """Synthetic data of `train_size` training samples, data.batch_size left at its default."""
    return resolve_config(None, ["data.name=synthetic-unimodal", f"data.options.train_size={train_size}", "data.options.val_size=60",
                                 "data.options.test_size=60", "train.epochs=1", "train.progress=false", *overrides])


# --- data.batch_size=auto -------------------------------------------------------------------------

@pytest.mark.parametrize("n_train, expected", [
    (0, 8), (30, 8), (159, 8), (160, 16), (319, 16), (320, 32), (600, 32), (1279, 64), (1280, 128), (2000, 128), (10**6, 128),
])
def test_auto_batch_size_is_the_largest_power_of_two_within_a_tenth_of_train_clamped_to_8_and_128(n_train, expected):
    config = RunConfig()
    assert config.data.batch_size == "auto"
    assert train_batch_size(config, n_train) == expected


def test_a_number_is_used_as_given_and_registered_data_sets_keep_theirs():
    assert train_batch_size(resolve_config(None, ["data.batch_size=100"]), 600) == 100
    assert resolve_config(None, ["data.name=avdigits"]).data.batch_size == 64
    for base in sorted((REPO / "configs").rglob("base.yaml")):
        assert isinstance(resolve_config(base.parent / "naive.yaml").data.batch_size, int), base


@pytest.mark.parametrize("preset", ["synthetic-unimodal", "synthetic-paired"])
def test_the_synthetic_presets_still_train_with_128(preset):
    config = resolve_config(None, [f"data.name={preset}"])
    assert train_batch_size(config, len(build_dataset(config.data).splits["train"])) == 128  # 2,000 samples


@pytest.mark.parametrize("world, expected", [(2, 32), (3, 33), (8, 32), (48, 48), (200, 200)])
def test_auto_is_rounded_up_to_a_multiple_of_the_process_count(monkeypatch, world, expected):
    monkeypatch.setattr(distributed, "world_size", lambda: world)
    size = train_batch_size(RunConfig(), 600)
    assert size == expected and distributed.local_batch_size(size) == size // world


def test_the_loader_batches_by_the_auto_size_of_the_whole_training_split():
    config = small(train_size=600)
    train = build_dataset(config.data).splits["train"]
    sizes = [len(labels) for _, labels in make_loader(train, config, train=True)]
    assert sizes == [32] * 18 + [24] and len(sizes) == distributed.steps_per_epoch(600, 32)
    # Part of the split (G-Blending's training part) batched as the whole split is.
    part = train.subset(list(range(300)))
    assert [len(labels) for _, labels in make_loader(part, config, train=True, n_train=600)] == [32] * 9 + [12]
    assert len(next(iter(make_loader(part, config, train=True)))[1]) == 16  # 300 samples alone would give 16
    resumed = [len(labels) for _, labels in make_loader(train, config, train=True, start_step=10)]
    assert resumed == sizes[10:]


def test_an_auto_run_records_the_batch_size_it_used_and_keeps_auto_in_its_config(tmp_path, caplog):
    with caplog.at_level(logging.INFO, logger="latefusion.train"):
        result = training.train(small("train.progress=true", "train.epochs=2"), tmp_path / "run")
    run = RunDir(tmp_path / "run")
    assert run.config().data.batch_size == "auto" and "batch_size: auto" in run.config_file.read_text()
    assert result["batch_size"] == 8 and result["n_train"] == 100
    assert result["steps_per_epoch"] == math.ceil(100 / 8) == 13 and result["optimizer_steps"] == 2 * 13
    assert run.result()["batch_size"] == 8
    assert "run: 100 training samples, batch size 8 (data.batch_size=auto), 13 steps per epoch, 2 epochs" in caplog.text


def test_an_auto_run_stopped_mid_epoch_resumes_to_the_same_result(tmp_path, monkeypatch):
    config = small("train.epochs=2", "train.checkpoint_every_steps=5")
    training.train(config, tmp_path / "whole")
    save = training.save_checkpoint

    def killed_at_epoch_1_step_5(path, state):
        save(path, state)
        if Path(path).name == "last.pt" and (state["epoch"], state["step"]) == (1, 5):
            raise KeyboardInterrupt("killed inside epoch 1")
    monkeypatch.setattr(training, "save_checkpoint", killed_at_epoch_1_step_5)
    with pytest.raises(KeyboardInterrupt):
        training.train(config, tmp_path / "resumed")
    monkeypatch.setattr(training, "save_checkpoint", save)
    resumed = training.train(config, tmp_path / "resumed", resume=True)

    def comparable(result):
        return {k: v for k, v in result.items() if k not in ("wall_time_s", "environment")}
    assert comparable(resumed) == comparable(RunDir(tmp_path / "whole").result()) and resumed["batch_size"] == 8
    assert (RunDir(tmp_path / "resumed").metrics_file.read_text() == RunDir(tmp_path / "whole").metrics_file.read_text())


def test_resuming_where_auto_resolves_to_another_batch_size_is_refused(tmp_path):
    config = small()
    resumed = {"config": config.model_dump(mode="json"), "fingerprints": {"data": "d"}, "batch_size": 8}
    training.refuse_changed_inputs(RunDir(tmp_path), resumed, config, {"data": "d"}, 8)
    with pytest.raises(RunFolderError, match=r"training batch size: 8 -> 9 .*as many processes as before"):
        training.refuse_changed_inputs(RunDir(tmp_path), resumed, config, {"data": "d"}, 9)
