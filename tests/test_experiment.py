"""One experiment in memory: `train` returns a typed result with per-sample predictions, the pipeline
decides from those results without reading them back from disk, and the Python API does what
`latefusion demo` does."""

from __future__ import annotations

import shutil
from collections.abc import Mapping

import numpy as np
import pytest

from latefusion import RunResult, run_demo
from latefusion import runs as runs_module
from latefusion.pipeline import guide_folder, run_pipeline
from latefusion.runs import RunDir
from latefusion.storage import read_json
from latefusion.train import train

QUIET = dict(log=lambda *_: None)


def test_train_returns_its_metrics_and_per_sample_predictions_as_saved_and_a_moved_run_keeps_them(tiny_config, tmp_path):
    result = train(tiny_config("method.name=naive", "train.epochs=1"), tmp_path / "run")
    assert isinstance(result, RunResult) and isinstance(result, Mapping)
    assert dict(result.metrics) == read_json(tmp_path / "run" / "result.json")
    assert result["test_acc"] == result.metrics["test_acc"]
    for split in ("val", "test"):
        saved = result.predictions[split]
        assert saved.predicted.shape == saved.labels.shape == (result[f"n_{split}"],)
        assert saved.correct.mean() == pytest.approx(result[f"{split}_acc"])

    shutil.move(tmp_path / "run", tmp_path / "moved")
    reread = RunDir(tmp_path / "moved").run_result()
    assert reread.path == tmp_path / "moved" and dict(reread.metrics) == dict(result.metrics)
    for split in ("val", "test"):
        assert np.array_equal(reread.predictions[split].predicted, result.predictions[split].predicted)
        assert np.array_equal(reread.predictions[split].labels, result.predictions[split].labels)


def test_a_resumed_finished_run_returns_the_same_result(tiny_config, tmp_path):
    config = tiny_config("method.name=naive", "train.epochs=1")
    first = train(config, tmp_path / "run")
    again = train(config, tmp_path / "run", resume=True)
    assert dict(again.metrics) == dict(first.metrics)
    assert np.array_equal(again.predictions["val"].correct, first.predictions["val"].correct)


def test_the_pipeline_decides_from_results_in_memory_and_the_folder_gives_the_same_verdict(tiny_config, tmp_path, monkeypatch):
    reads = []
    original = runs_module.read_arrays
    monkeypatch.setattr(runs_module, "read_arrays", lambda path: reads.append(path) or original(path))
    summary = run_pipeline(tiny_config("train.epochs=2", "model.feature_dim=16"), tmp_path / "demo", **QUIET)
    assert reads == [], "the pipeline read saved predictions back instead of using what training returned"
    from_folder = guide_folder(tmp_path / "demo")
    assert len(reads) == 5  # two uni-modal runs, naive, UME, UMT: each read once
    assert from_folder == summary["guide"]


def test_run_demo_from_python_writes_the_seed_folders_the_summary_and_the_report(tiny_config, tmp_path):
    out = tmp_path / "demo"
    summary = run_demo(tiny_config("train.epochs=1", "model.feature_dim=16"), out, seeds=2, **QUIET)
    assert summary["seeds"] == ["seed-0", "seed-1"]
    assert read_json(out / "summary.json") == summary
    assert all((out / label / "summary.json").is_file() for label in summary["seeds"])
    html = (out / "report.html").read_text()
    assert "seed-0" in html and "seed-1" in html
    assert (out / "report.md").is_file()
