"""Distributed training: how batches are shared out, and `torchrun --nproc_per_node=2` on CPU (gloo)
giving the metrics of one process with the same global batch, for every method."""

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch

from latefusion import distributed
from latefusion.cli import main
from latefusion.pipeline import baseline_methods
from latefusion.config import ConfigError
from latefusion.runs import RunDir

TORCHRUN = Path(sys.executable).parent / "torchrun"


def as_process(monkeypatch, rank: int, world: int) -> None:
    monkeypatch.setattr(distributed, "rank", lambda: rank)
    monkeypatch.setattr(distributed, "world_size", lambda: world)


@pytest.mark.parametrize("world", [2, 3])
def test_shards_are_the_global_batches_cut_in_equal_parts(monkeypatch, world):
    order, batch_size = list(range(100, 150)), 6  # 8 full batches, then 2 samples
    shards = []
    for rank in range(world):
        as_process(monkeypatch, rank, world)
        shards.append(distributed.shard(order, batch_size))
        steps = distributed.steps_per_epoch(len(order), batch_size)
    share = batch_size // world
    for step in range(8):
        assert sum((s[step * share:(step + 1) * share] for s in shards), []) == order[step * batch_size:(step + 1) * batch_size]
    last = sum((s[8 * share:] for s in shards), [])
    # The short last batch is shared out equally too: 2 samples make a step for 2 processes, not for 3.
    assert (last, steps) == ((order[48:], 9) if world == 2 else ([], 8))


def test_a_global_batch_the_processes_cannot_share_is_refused(monkeypatch):
    as_process(monkeypatch, 0, 4)
    assert distributed.local_batch_size(64) == 16
    with pytest.raises(ConfigError, match=r"data.batch_size=30 is the global batch .* 4 processes; use a multiple of 4"):
        distributed.local_batch_size(30)


def test_evaluation_parts_cover_the_split_once(monkeypatch):
    seen = []
    for rank in range(3):
        as_process(monkeypatch, rank, 3)
        seen += list(distributed.part(list(range(10))))
    assert sorted(seen) == list(range(10))


SETTINGS = ["data.options.train_size=300", "data.options.val_size=200", "data.options.test_size=200", "train.epochs=3",
            "train.progress=false", "train.device=cpu", "data.batch_size=64"]  # the last batch: 44 samples, 22 a process


# Within the 3 epochs: Re-learning re-initialises before epoch 2 and Data Remixing remixes from epoch 1.
METHOD_OPTIONS = ["relearn.every=1", "remix.warmup=1"]


def demo_args(out: Path) -> list[str]:
    return ["demo", "--data", "synthetic-unimodal", "--methods", "all", "--out", str(out), *[a for s in SETTINGS for a in ("--set", s)],
            *[a for o in METHOD_OPTIONS for a in ("--method-option", o)]]


def comparable_runs(root: Path) -> dict[str, tuple[dict, list[dict]]]:
    runs = {}
    for result_file in sorted(root.glob("*/result.json")):
        result = {k: v for k, v in json.loads(result_file.read_text()).items() if k not in ("wall_time_s", "environment")}
        result["fingerprints"].pop("config")  # UME's and UMT's configs name their members' folders, which differ between roots
        metrics = result_file.parent / "metrics.jsonl"
        runs[result_file.parent.name] = (result, [json.loads(line) for line in metrics.read_text().splitlines()] if metrics.exists() else [])
    return runs


@pytest.mark.slow
def test_two_processes_give_the_metrics_of_one(tmp_path):
    """Every method (uni-modal, naive, UME, UMT with its teacher cache, and every baseline) in one `latefusion demo` launched by torchrun on 2 CPU processes, against one process."""
    assert main(demo_args(tmp_path / "one")) == 0
    done = subprocess.run([str(TORCHRUN), "--standalone", "--nproc_per_node=2", "-m", "latefusion.cli", *demo_args(tmp_path / "two")],
                          env={**os.environ, "OMP_NUM_THREADS": str(torch.get_num_threads())},  # as the one-process run here
                          capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr[-3000:]
    assert done.stdout.count("wrote ") == 1  # the main process reports, the other stays quiet

    one, two = comparable_runs(tmp_path / "one"), comparable_runs(tmp_path / "two")
    assert len(one) == 5 + len(baseline_methods()) and one.keys() == two.keys()  # uni-modal x2, naive, UME, UMT, baselines
    for name, (result, metrics) in one.items():
        result_two, metrics_two = two[name]
        assert result_two == result, name  # accuracies and sample counts
        assert len(metrics_two) == len(metrics) == (0 if name == "ume" else 3), name
        for row, row_two in zip(metrics, metrics_two):
            shares, shares_two = row.pop("val_acc_by_modality", None), row_two.pop("val_acc_by_modality", None)
            assert shares_two == shares, name  # per-modality accuracies: counts over the same samples
            # losses (and per-method logs): float32 sums of two processes' shares, in another order
            assert row_two == pytest.approx(row, rel=1e-4, abs=1e-6), name
        # each sample's prediction, gathered from the two processes' shares into the split's order
        saved, saved_two = (RunDir(tmp_path / root / name).predictions() for root in ("one", "two"))
        for split in ("val", "test"):
            assert np.array_equal(saved_two[split].labels, saved[split].labels), (name, split)
            assert np.array_equal(saved_two[split].predicted, saved[split].predicted), (name, split)
    summary, summary_two = (json.loads((tmp_path / d / "summary.json").read_text()) for d in ("one", "two"))
    assert summary_two["probe"] == summary["probe"]
