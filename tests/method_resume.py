"""A method crashed inside an epoch and resumed must end exactly as an uninterrupted run (the LFM,
Greedy and ReconBoost tests use it). `crashing(cls)` registers `<name>-crashing`, a copy of the
method that raises KeyboardInterrupt (standing in for a kill) at the training step CRASH names; the
crash is set here, not in the config, so the resumed run has the config of the uninterrupted one."""

from __future__ import annotations

from pathlib import Path

from latefusion.methods import METHODS
from latefusion.runs import RunDir
from latefusion.storage import load_checkpoint
from latefusion.train import train

CRASH: dict = {"at_call": None}


def crashing(base: type) -> type:
    class Crashing(base):
        name = f"{base.name}-crashing"
        group = "other"

        def loss(self, model, inputs, labels, step):
            self.calls = getattr(self, "calls", 0) + 1
            if self.calls == CRASH["at_call"]:
                raise KeyboardInterrupt("simulated kill")
            return super().loss(model, inputs, labels, step)

    return METHODS.register(Crashing.name)(Crashing)


def comparable(path: Path):
    """result.json (less its timing and environment) and the metrics of the run in `path`."""
    run = RunDir(path)
    result = {k: v for k, v in run.result().items() if k not in ("wall_time_s", "environment")}
    return result, run.metrics_file.read_text()


def check_resumes_exactly(config, tmp_path: Path, monkeypatch, at_call: int) -> None:
    """Train `config` whole, then crash it at loss call `at_call` (after a step checkpoint inside an
    epoch) and resume; the two runs must end with the same result and metrics."""
    train(config, tmp_path / "whole")
    monkeypatch.setitem(CRASH, "at_call", at_call)
    try:
        train(config, tmp_path / "resumed")
        raise AssertionError(f"the run was not interrupted at call {at_call}")
    except KeyboardInterrupt:
        pass
    assert load_checkpoint(RunDir(tmp_path / "resumed").last)["step"] > 0, "the crash must come inside an epoch"
    monkeypatch.setitem(CRASH, "at_call", None)
    train(config, tmp_path / "resumed", resume=True)
    assert comparable(tmp_path / "resumed") == comparable(tmp_path / "whole")
