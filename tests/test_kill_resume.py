"""`latefusion train` in a real process, stopped mid-epoch by SIGKILL, SIGTERM or SIGINT, then resumed
with --resume: it must end with exactly the metrics of an uninterrupted run (same seed, CPU)."""

import os
import signal
import subprocess
import sys

import pytest
import torch

from latefusion.cli import main
from latefusion.runs import RunDir
from latefusion.storage import load_checkpoint

import paused_run

# 800 samples in batches of 8: 100 steps an epoch, a step checkpoint every 5.
STEPS_PER_EPOCH = 100
SETTINGS = ["data.name=synthetic-unimodal", "data.options.train_size=800", "data.options.val_size=200",
            "data.options.test_size=200", "data.batch_size=8", "train.epochs=2", "train.checkpoint_every_steps=5",
            "train.progress=false", "train.device=cpu"]


def train_args(out, *extra):
    return ["train", *[arg for s in SETTINGS for arg in ("--set", s)], "--out", str(out), *extra]


def command(out, *extra):
    return [sys.executable, "-m", "latefusion.cli", *train_args(out, *extra)]


def position(out):
    """(epoch, step) of the run's last.pt."""
    state = load_checkpoint(RunDir(out).last)
    return state["epoch"], state["step"]


def comparable(out):
    run = RunDir(out)
    result = {k: v for k, v in run.result().items() if k not in ("wall_time_s", "environment")}
    return result, run.metrics_file.read_text()


@pytest.fixture(scope="module")
def uninterrupted(tmp_path_factory):
    out = tmp_path_factory.mktemp("whole") / "run"
    assert main(train_args(out)) == 0
    return comparable(out)


@pytest.fixture
def start_paused(tmp_path):
    """Starts training processes that hold still after their first step checkpoint (tests/paused_run.py);
    any still running when the test ends (it failed) are killed."""
    started = []

    def start(out, *extra):
        pause_folder = tmp_path / f"pause-{len(started)}"
        process = paused_run.start(command(out, *extra), pause_folder)
        started.append(process)
        return process, paused_run.wait_until_paused(process, pause_folder)

    yield start
    for process in started:
        if process.poll() is None:
            process.kill()
            process.wait()


@pytest.mark.slow
def test_a_run_stopped_by_sigterm_sigint_and_sigkill_mid_epoch_resumes_to_identical_metrics(tmp_path, uninterrupted, start_paused):
    """One run, three stops, each while the process waits after a step checkpoint: SIGTERM and SIGINT
    save a checkpoint at that step and exit; SIGKILL ends the process with no chance to save or clean
    up. Each time `--resume` continues; the end matches an unstopped run."""
    out = tmp_path / "run"
    last = (0, 0)
    for signum in (signal.SIGTERM, signal.SIGINT):
        # --resume of a folder holding no run is an error: the first start trains afresh, the second resumes it.
        process, paused_at = start_paused(out, *(["--resume"] if signum == signal.SIGINT else []))
        assert paused_at > last and 0 < paused_at[1] < STEPS_PER_EPOCH  # a later step, inside an epoch
        process.send_signal(signum)
        _, stderr = process.communicate(timeout=60)
        assert process.returncode == 128 + signum, stderr
        last = position(out)
        assert last == paused_at  # stopped at the step it was at when the signal came
        epoch, step = last
        assert f"stopped by {signum.name} at epoch {epoch}, step {step}; saved {RunDir(out).last}, continue with --resume" in stderr

    process, paused_at = start_paused(out, "--resume")
    assert paused_at > last
    process.kill()
    assert process.wait() == -signal.SIGKILL
    assert position(out) == paused_at and not RunDir(out).is_finished()  # killed inside an epoch

    same_threads = {**os.environ, "OMP_NUM_THREADS": str(torch.get_num_threads())}  # as the uninterrupted run, made in this process
    done = subprocess.run(command(out, "--resume"), env=same_threads, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr
    assert comparable(out) == uninterrupted
