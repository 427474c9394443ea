"""Checkpoints and output files: damaged or unsafe checkpoints are refused, every output is written
atomically, a NaN loss stops the run with the step and keeps the last good checkpoint, and a run that
crashes inside an epoch resumes to exactly the metrics of an uninterrupted one."""

import json
import os
from pathlib import Path

import pytest
import torch

from latefusion import report, storage
from latefusion.methods import METHODS
from latefusion.methods.agm import AGM
from latefusion.methods.naive import Naive
from latefusion.methods.ogm_ge import OGMGE
from latefusion.pipeline import run_pipeline
from latefusion.errors import CheckpointError
from latefusion.runs import RunDir
from latefusion.storage import load_checkpoint, save_checkpoint, write_json
from latefusion.errors import NonFiniteLossError
from latefusion.train import train

STATE = {"model": {"weight": torch.arange(1000.0)}, "epoch": 3, "history": [{"val_acc": 0.5}]}


def test_checkpoint_round_trip_and_plain_torch_load(tmp_path):
    path = tmp_path / "ckpt.pt"
    save_checkpoint(path, STATE)
    assert torch.equal(load_checkpoint(path)["model"]["weight"], STATE["model"]["weight"])
    # The checksum at the end does not stop a user from loading the file with torch alone.
    assert torch.load(path, weights_only=True)["epoch"] == 3


@pytest.mark.parametrize("cut", [0.5, 0.999])
def test_truncated_checkpoint_is_refused(tmp_path, cut):
    path = tmp_path / "ckpt.pt"
    save_checkpoint(path, STATE)
    data = path.read_bytes()
    path.write_bytes(data[: int(len(data) * cut)])
    with pytest.raises(CheckpointError, match=r"ckpt\.pt is damaged: .*(truncated)"):
        load_checkpoint(path)


def test_bit_flipped_checkpoint_is_refused(tmp_path):
    path = tmp_path / "ckpt.pt"
    save_checkpoint(path, STATE)
    data = bytearray(path.read_bytes())
    data[len(data) // 2] ^= 0x04  # inside the tensor data: torch.load alone would read it without complaint
    path.write_bytes(bytes(data))
    assert torch.load(path, weights_only=True)["epoch"] == 3
    with pytest.raises(CheckpointError, match=r"is damaged: its contents do not match the sha256 written with them"):
        load_checkpoint(path)


def test_missing_checkpoint_is_named(tmp_path):
    with pytest.raises(CheckpointError, match=r"checkpoint .*nothing\.pt does not exist"):
        load_checkpoint(tmp_path / "nothing.pt")


class Payload:
    """Unpickling this calls open(marker, "w"): a stand-in for any code a shared checkpoint could run."""

    def __init__(self, marker: Path) -> None:
        self.marker = marker

    def __reduce__(self):
        return open, (str(self.marker), "w")


def test_checkpoint_with_a_pickle_payload_is_refused(tmp_path):
    path, marker = tmp_path / "shared.pt", tmp_path / "code-ran"
    save_checkpoint(path, {"model": {}, "extra": Payload(marker)})  # checksum valid: the sender wrote it
    with pytest.raises(CheckpointError, match=r"refusing to load .*shared\.pt: .*a pickle payload"):
        load_checkpoint(path)
    assert not marker.exists()
    torch.load(path, weights_only=False)  # what an unsafe loader would do: the payload is live
    assert marker.exists()


def test_every_output_file_goes_through_the_atomic_writer(tmp_path, tiny_config, monkeypatch):
    written = set()
    atomic = storage.atomic_write_bytes

    def recording(path, data):
        final = Path(path)
        # report.html and report.md are written whole beside their names, then renamed into place as a
        # set under a journal that is removed at once (storage.write_file_set)
        if final.name.endswith(storage.STAGED_SUFFIX):
            final = final.with_name(final.name[1:-len(storage.STAGED_SUFFIX)])
        if final.name != storage.FILE_SET_JOURNAL:
            written.add(final.resolve())
        atomic(path, data)

    monkeypatch.setattr(storage, "atomic_write_bytes", recording)
    monkeypatch.setattr(report, "atomic_write_bytes", recording)
    run_pipeline(tiny_config("train.epochs=1", "data.batch_size=100", "train.checkpoint_every_steps=1"), tmp_path / "demo", log=lambda *_: None)
    report.write_report([tmp_path / "demo"])
    # Every file but the run folders' locks (held open, not written as a whole).
    files = {p.resolve() for p in (tmp_path / "demo").rglob("*") if p.is_file() and p.name != ".lock"}
    names = {p.name for p in files}
    assert {"summary.json", "report.md", "report.html", "result.json", "metrics.jsonl", "config.yaml", "data.json", "probe.json", "best.pt", "last.pt"} <= names
    assert files == written  # nothing else was written, and no temporary file was left behind


def test_a_crash_while_writing_keeps_the_old_file(tmp_path, monkeypatch):
    path = tmp_path / "result.json"
    write_json(path, {"test_acc": 0.5})

    def crash(fd):
        raise OSError("disk full")

    monkeypatch.setattr(os, "fsync", crash)
    with pytest.raises(OSError, match="disk full"):
        write_json(path, {"test_acc": 0.9})
    assert json.loads(path.read_text()) == {"test_acc": 0.5}
    assert [p.name for p in tmp_path.iterdir()] == ["result.json"]


# Methods that fail at a chosen training step of this process: NaN loss, or a crash standing in for a
# kill. Set by the tests through FAULT, not the config, so that a resumed run has the same config.
FAULT: dict = {"kind": None, "at_call": None}


def with_faults(base: type) -> type:
    """`base` registered again as "<name>-with-faults", failing at the step FAULT names."""

    class WithFaults(base):
        name = f"{base.name}-with-faults"
        group = "other"

        def loss(self, model, inputs, labels, step):
            self.calls = getattr(self, "calls", 0) + 1
            output = super().loss(model, inputs, labels, step)
            if self.calls == FAULT["at_call"]:
                if FAULT["kind"] == "crash":
                    raise KeyboardInterrupt("simulated kill")
                output.loss = output.loss * float("nan")
                output.logs["loss"] = output.loss.detach()
            return output

    return METHODS.register(WithFaults.name)(WithFaults)


# Naive fusion; OGM-GE, whose noise draws from the global generator every step (a resumed run must
# restore its state); AGM, whose running scores change every step (a resumed run must restore them).
for method_class in (Naive, OGMGE, AGM):
    with_faults(method_class)


@pytest.fixture
def fault(monkeypatch):
    def set_fault(kind, at_call):
        monkeypatch.setitem(FAULT, "kind", kind)
        monkeypatch.setitem(FAULT, "at_call", at_call)

    return set_fault


def test_nan_loss_stops_with_the_step_and_keeps_the_last_good_checkpoint(tmp_path, tiny_config, fault):
    # 300 samples / 50 = 6 steps an epoch; the 10th call is epoch 1, step 3; last.pt was saved at step 2.
    # The loss is read (a host sync) before each checkpoint, so the NaN is found at step 4, before saving.
    config = tiny_config("method.name=naive-with-faults", "data.batch_size=50", "train.checkpoint_every_steps=2")
    fault("nan", 10)
    with pytest.raises(NonFiniteLossError, match=r"training loss is not finite .* by epoch 1, step 4; stopped\. The last good checkpoint is kept at .*last\.pt"):
        train(config, tmp_path / "run")
    state = load_checkpoint(RunDir(tmp_path / "run").last)
    assert (state["epoch"], state["step"]) == (1, 2)
    assert all(torch.isfinite(t).all() for t in state["model"].values())


def comparable(path: Path):
    """result.json (less its timing and environment) and the metrics of the run in `path`."""
    run = RunDir(path)
    result = {k: v for k, v in run.result().items() if k not in ("wall_time_s", "environment")}
    return result, run.metrics_file.read_text()


@pytest.mark.parametrize("method, at_call", [
    ("naive", 9), ("naive", 12), ("naive", 13),  # inside epoch 1, just before its end, first step of epoch 2
    ("ogm_ge", 9), ("agm", 9),
])
def test_a_run_crashed_inside_an_epoch_resumes_to_identical_metrics(tmp_path, tiny_config, fault, method, at_call):
    config = tiny_config(f"method.name={method}-with-faults", "data.batch_size=50", "train.checkpoint_every_steps=2")
    train(config, tmp_path / "whole")
    fault("crash", at_call)
    with pytest.raises(KeyboardInterrupt):
        train(config, tmp_path / "resumed")
    fault(None, None)
    train(config, tmp_path / "resumed", resume=True)
    assert comparable(tmp_path / "resumed") == comparable(tmp_path / "whole")
