"""A `latefusion train` process that holds still where a test needs it: right after the first
checkpoint it saves inside an epoch. Tests that signal a running training process, or that need it
to hold its run folder while something else happens, wait for that pause (a file) instead of polling
a moving run and racing it to the end of the epoch.

The test side calls `start` (or `running`) and `wait_until_paused`. The same file, given to the child process with
`--import`, installs the pause there when the child's environment names a pause folder (it does
nothing when the tests import it). The paused process goes on when it receives SIGINT or SIGTERM
(and then stops at that step, as the loop stops on a signal), when the test calls `release`, or when
the deadline passes; SIGKILL ends it where it stands.
"""

from __future__ import annotations

import contextlib
import importlib
import json
import os
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path

import torch

PAUSE_FOLDER = "LATEFUSION_TEST_PAUSE_FOLDER"
PAUSED, RELEASED = "paused.json", "released"
DEADLINE_S = 120  # far above a tiny run's start and first steps on a loaded 2-core machine
POLL_S = 0.05


def start(command: list[str], pause_folder: Path) -> subprocess.Popen:
    """`command` (a `python -m latefusion.cli train ...` list) with this pause imported into it."""
    pause_folder.mkdir(parents=True, exist_ok=True)
    env = {**os.environ, "OMP_NUM_THREADS": str(torch.get_num_threads()), PAUSE_FOLDER: str(pause_folder)}  # the tests' own count
    return subprocess.Popen([*command, "--import", __file__], env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)


@contextlib.contextmanager
def running(command: list[str], pause_folder: Path) -> Iterator[subprocess.Popen]:
    """`start`, and kill the process on leaving if it still runs (a test that failed while it waited)."""
    process = start(command, pause_folder)
    try:
        yield process
    finally:
        if process.poll() is None:
            process.kill()
            process.wait()


def wait_until_paused(process: subprocess.Popen, pause_folder: Path) -> tuple[int, int]:
    """(epoch, step) of the checkpoint the process saved and paused after."""
    paused = pause_folder / PAUSED
    deadline = time.monotonic() + DEADLINE_S
    while not paused.is_file():
        if process.poll() is not None:
            raise AssertionError(f"the run ended before it paused after a step checkpoint:\n{process.stderr.read()}")
        if time.monotonic() > deadline:
            process.kill()
            raise AssertionError(f"the run did not pause after a step checkpoint within {DEADLINE_S} s")
        time.sleep(POLL_S)
    where = json.loads(paused.read_text())
    return where["epoch"], where["step"]


def release(pause_folder: Path) -> None:
    (pause_folder / RELEASED).touch()


def install(pause_folder: Path) -> None:
    """In the training process: wrap the loop's save_checkpoint to pause after the first step checkpoint."""
    from latefusion.interrupt import stop_requested

    training = importlib.import_module("latefusion.train")  # the module; `latefusion.train` is also the function
    save = training.save_checkpoint
    paused = False

    def save_then_pause(path, state):
        nonlocal paused
        save(path, state)
        if paused or Path(path).name != "last.pt" or state["step"] == 0:
            return
        paused = True
        written = pause_folder / f".{PAUSED}.tmp"  # renamed into place: the test never reads half a file
        written.write_text(json.dumps({"epoch": state["epoch"], "step": state["step"]}))
        os.replace(written, pause_folder / PAUSED)
        deadline = time.monotonic() + DEADLINE_S
        while not (stop_requested() or (pause_folder / RELEASED).exists() or time.monotonic() > deadline):
            time.sleep(POLL_S)

    training.save_checkpoint = save_then_pause


if os.environ.get(PAUSE_FOLDER):
    install(Path(os.environ[PAUSE_FOLDER]))
