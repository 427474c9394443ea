"""What the command line writes to a console that is not a terminal (a pipe, a log file, CI): no
carriage-return progress bars, one line per epoch naming the run; and to a terminal: the bar."""

import os
import re
import subprocess
import sys

import pytest

SETTINGS = ["data.name=synthetic-unimodal", "data.options.train_size=64", "data.options.val_size=32", "data.options.test_size=32",
            "data.batch_size=16", "train.epochs=3", "train.device=cpu"]
EPOCH_LINE = re.compile(r"^(\S+) epoch (\d+)/(\d+): loss \d+\.\d{3} val_acc \d\.\d{3}$", re.MULTILINE)


def latefusion(*args, **kwargs) -> subprocess.CompletedProcess:
    env = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONPATH": os.pathsep.join(sys.path)}
    return subprocess.run([sys.executable, "-m", "latefusion.cli", *args], env=env, timeout=300, **kwargs)


def settings(*extra):
    return [arg for s in [*SETTINGS, *extra] for arg in ("--set", s)]


def test_train_to_a_pipe_writes_one_line_per_epoch_and_no_carriage_returns(tmp_path):
    done = latefusion("train", *settings(), "--out", str(tmp_path / "piped"), capture_output=True, text=True)
    assert done.returncode == 0, done.stderr
    output = done.stdout + done.stderr
    assert "\r" not in output
    epochs = [(run, int(k), int(n)) for run, k, n in EPOCH_LINE.findall(done.stderr)]
    assert epochs == [("piped", 1, 3), ("piped", 2, 3), ("piped", 3, 3)], done.stderr
    assert "piped: 64 training samples, batch size 16, 4 steps per epoch, 3 epochs\n" in done.stderr, done.stderr  # the opening line


def test_demo_into_a_log_file_has_no_carriage_returns(tmp_path):
    log = tmp_path / "log"
    with log.open("w") as handle:  # `latefusion demo > log 2>&1`
        done = latefusion("demo", *settings("train.epochs=1"), "--out", str(tmp_path / "demo"), stdout=handle, stderr=subprocess.STDOUT)
    text = log.read_text()
    assert done.returncode == 0, text
    assert "\r" not in text
    assert {run for run, _, _ in EPOCH_LINE.findall(text)} >= {"unimodal-a", "unimodal-b", "naive", "umt"}, text


def test_progress_off_writes_neither_bar_nor_lines(tmp_path):
    done = latefusion("train", *settings("train.progress=false"), "--out", str(tmp_path / "quiet"), capture_output=True, text=True)
    assert done.returncode == 0, done.stderr
    assert not EPOCH_LINE.search(done.stderr) and "\r" not in done.stderr


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="pseudo-terminal test written for Linux")
def test_train_on_a_terminal_draws_the_bar_instead_of_lines(tmp_path):
    import fcntl
    import pty
    import struct
    import termios

    main, terminal = pty.openpty()
    fcntl.ioctl(terminal, termios.TIOCSWINSZ, struct.pack("HHHH", 24, 120, 0, 0))  # a new terminal is 0 columns wide
    env = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONPATH": os.pathsep.join(sys.path)}
    process = subprocess.Popen([sys.executable, "-m", "latefusion.cli", "train", *settings(), "--out", str(tmp_path / "tty")],
                               env=env, stdout=subprocess.DEVNULL, stderr=terminal)
    os.close(terminal)
    chunks = []
    try:
        while True:  # read as it comes, so a full terminal buffer never blocks the run
            try:
                chunk = os.read(main, 65536)
            except OSError:  # EIO: the run ended and closed its end of the terminal
                break
            if not chunk:
                break
            chunks.append(chunk)
    finally:
        os.close(main)
        process.wait(timeout=300)
    shown = b"".join(chunks).decode(errors="replace")
    assert process.returncode == 0, shown
    assert "tty" in shown and "\r" in shown  # the bar, named after the run, redrawn in place
    assert not EPOCH_LINE.search(shown)
