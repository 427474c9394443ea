"""train.loggers: metrics.csv holds what metrics.jsonl holds; TensorBoard is optional and asked for by name."""

from __future__ import annotations

import csv
import importlib.util
import json

import pytest

from latefusion.errors import ConfigError
from latefusion.train import train


def test_csv_holds_every_value_of_the_jsonl_rows(tmp_path, tiny_config):
    train(tiny_config("method.name=naive", "train.loggers=[jsonl, csv]"), tmp_path / "run")
    rows = [json.loads(line) for line in (tmp_path / "run" / "metrics.jsonl").read_text().splitlines()]
    with open(tmp_path / "run" / "metrics.csv", newline="") as handle:
        table = list(csv.DictReader(handle))
    assert len(table) == len(rows) == 3
    for row, line in zip(rows, table):
        assert float(line["train_loss"]) == pytest.approx(row["train_loss"])
        assert float(line["val_acc_by_modality.b"]) == pytest.approx(row["val_acc_by_modality"]["b"])  # nested values flattened


def test_jsonl_alone_writes_no_csv(tmp_path, tiny_config):
    train(tiny_config("method.name=naive"), tmp_path / "run")
    assert not (tmp_path / "run" / "metrics.csv").exists()


@pytest.mark.skipif(importlib.util.find_spec("tensorboard") is not None, reason="tensorboard is installed here")
def test_tensorboard_without_the_package_is_refused_by_name_before_training(tmp_path, tiny_config):
    with pytest.raises(ConfigError, match="`tensorboard` package is not installed"):
        train(tiny_config("train.loggers=[jsonl, tensorboard]"), tmp_path / "run")
    assert not (tmp_path / "run" / "checkpoints").exists()


@pytest.mark.skipif(importlib.util.find_spec("tensorboard") is None, reason="the optional tensorboard package is not installed")
def test_tensorboard_writes_event_files(tmp_path, tiny_config):
    train(tiny_config("train.loggers=[jsonl, tensorboard]"), tmp_path / "run")
    assert list((tmp_path / "run" / "tensorboard").glob("events.out.tfevents.*"))
