"""`latefusion train` in a real process, stopped mid-epoch by SIGKILL, SIGTERM or SIGINT, then resumed
with --resume: it must end with exactly the metrics of an uninterrupted run (same seed, CPU)."""

import os
import signal
import subprocess
import sys
import time

import pytest

from latefusion.cli import main
from latefusion.errors import CheckpointError
from latefusion.runs import RunDir
from latefusion.storage import load_checkpoint

# 800 samples in batches of 8: 100 steps an epoch, a step checkpoint every 5.
STEPS_PER_EPOCH = 100
SETTINGS = ["data.name=synthetic-unimodal", "data.options.train_size=800", "data.options.val_size=200",
            "data.options.test_size=200", "data.batch_size=8", "train.epochs=2", "train.checkpoint_every_steps=5",
            "train.progress=false", "train.device=cpu"]


def train_args(out, *extra):
    return ["train", *[arg for s in SETTINGS for arg in ("--set", s)], "--out", str(out), *extra]


def start(out, *extra) -> subprocess.Popen:
    command = [sys.executable, "-m", "latefusion.cli", *train_args(out, *extra)]
    return subprocess.Popen(command, env={**os.environ, "OMP_NUM_THREADS": "1"}, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)


def position(out):
    """(epoch, step) of the run's last.pt, or None while there is none."""
    try:
        state = load_checkpoint(RunDir(out).last)
    except CheckpointError:
        return None
    return state["epoch"], state["step"]


def wait_for_step_checkpoint(process, out, after=(0, 0)):
    """Wait until last.pt was saved inside an epoch, later than `after`."""
    deadline = time.time() + 120
    while time.time() < deadline:
        assert process.poll() is None, f"the run ended before a step checkpoint:\n{process.stderr.read()}"
        now = position(out)
        if now is not None and now[1] > 0 and now > after:
            return now
        time.sleep(0.01)
    raise AssertionError("no step checkpoint within 120 s")


def comparable(out):
    run = RunDir(out)
    result = {k: v for k, v in run.result().items() if k not in ("wall_time_s", "environment")}
    return result, run.metrics_file.read_text()


@pytest.fixture(scope="module")
def uninterrupted(tmp_path_factory):
    out = tmp_path_factory.mktemp("whole") / "run"
    assert main(train_args(out)) == 0
    return comparable(out)


@pytest.mark.slow
def test_a_run_stopped_by_sigterm_sigint_and_sigkill_mid_epoch_resumes_to_identical_metrics(tmp_path, uninterrupted):
    """One run, three stops: SIGTERM and SIGINT save a checkpoint and exit; SIGKILL loses the steps
    since the last step checkpoint. Each time `--resume` continues; the end matches an unstopped run."""
    out = tmp_path / "run"
    last = (0, 0)
    for signum in (signal.SIGTERM, signal.SIGINT):
        process = start(out, *(["--resume"] if signum == signal.SIGINT else []))  # --resume of a folder holding no run is an error
        wait_for_step_checkpoint(process, out, after=last)
        process.send_signal(signum)
        _, stderr = process.communicate(timeout=60)
        assert process.returncode == 128 + signum, stderr
        last = position(out)
        epoch, step = last
        assert f"stopped by {signum.name} at epoch {epoch}, step {step}; saved {RunDir(out).last}, continue with --resume" in stderr

    process = start(out, "--resume")
    wait_for_step_checkpoint(process, out, after=last)
    process.kill()
    assert process.wait() == -signal.SIGKILL
    _, step = position(out)
    assert 0 < step < STEPS_PER_EPOCH and not RunDir(out).is_finished()  # killed inside an epoch

    process = start(out, "--resume")
    _, stderr = process.communicate(timeout=120)
    assert process.returncode == 0, stderr
    assert comparable(out) == uninterrupted
