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
from latefusion.methods.inforeg import InfoReg
from latefusion.methods.mmcosine import MMCosine
from latefusion.methods.naive import Naive
from latefusion.methods.ogm_tpami import OGMTPAMI
from latefusion.methods.ogm_ge import OGMGE
from latefusion.methods.opm import OPM
from latefusion.methods.relearn import Relearn
from latefusion.methods.remix import Remix
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


def faulty(base: type, suffix: str = "with-faults") -> type:
    """`base` as a method of its own, "<name>-<suffix>", failing at the step FAULT names."""

    class WithFaults(base):
        name = f"{base.name}-{suffix}"
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

    return WithFaults


# Naive fusion; OGM-GE, whose noise draws from the global generator every step (a resumed run must
# restore its state); AGM, whose running scores change every step (a resumed run must restore them);
# MMCosine (its own head); OGM (TPAMI) and OPM from epoch 1 (noise and drops drawn every step); InfoReg, whose
# anchor is set at the epoch's start and whose Fisher trace grows every step. Re-learning re-initialises its
# encoders before epoch 2 here (every=1): a run resumed after that must carry its diagnosis (logged every
# step) and its encoders' initial weights. Remix assigns the samples before epoch 1 here (warmup=1) and
# arranges the epoch's batches by it: a run resumed inside that epoch must restore the assignment.
for method_class in (Naive, OGMGE, AGM, MMCosine, OGMTPAMI, OPM, InfoReg, Relearn, Remix):
    METHODS.register(faulty(method_class).name)(faulty(method_class))
OPTIONS = {"ogm_tpami": ["method.options.start_epoch=1"], "opm": ["method.options.start_epoch=1"],  # past their warm-up by the crash
           "relearn": ["method.options.every=1", "train.seed=1"],  # seed 1: both alphas above 0
           "remix": ["method.options.warmup=1"]}


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
    ("ogm_ge", 9), ("agm", 9), ("mmcosine", 9), ("ogm_tpami", 9), ("opm", 9), ("inforeg", 9),
    ("relearn", 15),  # epoch 2, step 3: after the re-initialisation
    ("remix", 9),
])
def test_a_run_crashed_inside_an_epoch_resumes_to_identical_metrics(tmp_path, tiny_config, fault, method, at_call):
    config = tiny_config(f"method.name={method}-with-faults", "data.batch_size=50", "train.checkpoint_every_steps=2", *OPTIONS.get(method, []))
    train(config, tmp_path / "whole")
    fault("crash", at_call)
    with pytest.raises(KeyboardInterrupt):
        train(config, tmp_path / "resumed")
    fault(None, None)
    train(config, tmp_path / "resumed", resume=True)
    assert comparable(tmp_path / "resumed") == comparable(tmp_path / "whole")


@pytest.fixture(scope="module")
def unimodal_runs(tmp_path_factory):
    """The uni-modal runs of the tiny data below (batch 50), for the methods that reuse them."""
    from latefusion.resolve import resolve_config
    folder = tmp_path_factory.mktemp("unimodal")
    runs = {m: str(folder / m) for m in ("a", "b")}
    for m, path in runs.items():
        train(resolve_config(None, [*TINY_RESUMED, "method.name=unimodal", f"method.options.modality={m}"]), path)
    return runs


TINY_RESUMED = ["data.name=synthetic-unimodal", "data.options.train_size=300", "data.options.val_size=200", "data.options.test_size=200",
                "train.epochs=3", "train.progress=false", "data.batch_size=50", "train.checkpoint_every_steps=2"]


@pytest.mark.parametrize("name", [n for n in METHODS.names() if METHODS.get(n).trains and not n.endswith("-with-faults")])
def test_every_registered_method_resumes_mid_epoch_to_identical_metrics(tmp_path, fault, monkeypatch, unimodal_runs, name):
    """Every method's state (its buffers, extra modules, what it draws at random) is in last.pt: a run
    killed in the middle of epoch 1 and resumed ends exactly as the uninterrupted run."""
    from latefusion.resolve import resolve_config
    method = faulty(METHODS.get(name), "crashing")
    monkeypatch.setitem(METHODS._entries, method.name, method)
    monkeypatch.setitem(METHODS._defaults, method.name, {})
    option = method.unimodal_runs_option
    options = [f"method.options.{option}.{m}={path}" for m, path in unimodal_runs.items()] if option else []
    options += ["method.options.modality=a"] if name == "unimodal" else []
    config = resolve_config(None, [*TINY_RESUMED, f"method.name={method.name}", *options])
    train(config, tmp_path / "whole")
    # 6 batches an epoch, a checkpoint every 2: the 10th loss is in epoch 1 (in epoch 0 for MLA's two a batch).
    fault("crash", 10)
    with pytest.raises(KeyboardInterrupt):
        train(config, tmp_path / "resumed")
    assert load_checkpoint(RunDir(tmp_path / "resumed").last)["step"] > 0  # resumed inside an epoch
    fault(None, None)
    train(config, tmp_path / "resumed", resume=True)
    assert comparable(tmp_path / "resumed") == comparable(tmp_path / "whole")
