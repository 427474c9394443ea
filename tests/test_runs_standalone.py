"""Runs that stand on their own: moved or copied run folders load, probe and report from their own
files; caches are keyed by what they depend on; one writer per folder; resume checks what it resumes;
option typos fail before training; a new method is one module."""

from __future__ import annotations

import contextlib
import os
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
import yaml

from latefusion import cli
from latefusion.data import build_dataset
from latefusion.errors import ConfigError, RunFolderError
from latefusion.methods import METHODS, load_model
from latefusion.methods.naive import Naive
from latefusion.pipeline import method_config, run_pipeline
from latefusion.probe import probe_run
from latefusion.report import write_report
from latefusion.runs import RunDir
from latefusion.style import Style
from latefusion.train import train

import paused_run

TINY = ["data.options.train_size=300", "data.options.val_size=200", "data.options.test_size=200", "train.epochs=2", "train.progress=false"]


@pytest.fixture(scope="module")
def demo_folder(tmp_path_factory):
    from latefusion.resolve import resolve_config

    out = tmp_path_factory.mktemp("demo") / "demo"
    run_pipeline(resolve_config(None, ["data.name=synthetic-unimodal", *TINY]), out, log=lambda *_: None)
    return out


@contextlib.contextmanager
def originals_moved_away(demo_folder: Path):
    """The demo's own folder renamed for the duration: the absolute paths of the teachers and members
    that its runs' config.yaml files name lead nowhere, so whatever still loads, loads from the copy."""
    away = demo_folder.with_name(demo_folder.name + "-moved-away")
    demo_folder.rename(away)
    try:
        yield
    finally:
        away.rename(demo_folder)


def test_a_moved_demo_folder_probes_reports_and_loads_from_another_directory(demo_folder, tmp_path, monkeypatch):
    moved = tmp_path / "elsewhere" / "moved"
    shutil.copytree(demo_folder, moved)
    for probe in moved.glob("*/probe.json"):
        probe.unlink()
    assert str(demo_folder / "unimodal-a") in (moved / "umt" / "config.yaml").read_text()  # what the copy must not need
    monkeypatch.chdir(tmp_path)  # another working directory than the demo's
    with originals_moved_away(demo_folder):
        for run in sorted(p for p in moved.iterdir() if (p / "config.yaml").is_file()):
            model = load_model(run)
            assert set(model.encoders) <= {"a", "b"}
            if run.name != "ume":
                assert set(probe_run(run)) == set(model.encoders)
        assert write_report([moved]).html.is_file()
        assert cli.main(["guide", str(moved)]) == 0


def test_one_umt_folder_copied_alone_loads_and_predicts(demo_folder, tmp_path):
    copies = {name: tmp_path / f"{name}-alone" for name in ("umt", "ume")}
    for name, folder in copies.items():
        shutil.copytree(demo_folder / name, folder)
        assert str(demo_folder / "unimodal-a") in (folder / "config.yaml").read_text()  # what the copy must not need
    test = build_dataset(RunDir(copies["umt"]).config().data).splits["test"]
    inputs, labels = test.__getitems__(list(range(len(test))))
    with originals_moved_away(demo_folder):
        for folder in copies.values():
            with torch.no_grad():
                scores = load_model(folder)(inputs)
            # The very predictions the run was scored by (float32 fraction of 200 samples; one sample is 5e-3).
            assert (scores.argmax(1) == labels).float().mean().item() == pytest.approx(RunDir(folder).result()["test_acc"], abs=1e-6)


def test_a_reference_whose_checkpoint_changed_is_refused_by_name(demo_folder, tmp_path):
    copy = tmp_path / "demo"
    shutil.copytree(demo_folder, copy)
    (copy / "umt" / "result.json").unlink()  # an unfinished UMT run, to be resumed
    shutil.copy(RunDir(copy / "unimodal-b").best, RunDir(copy / "unimodal-a").best)  # another checkpoint in the teacher's place
    with pytest.raises(RunFolderError, match=r"teachers\.a: the checkpoint of .*unimodal-a changed"):
        train(RunDir(copy / "umt").config(), copy / "umt", resume=True)


def write_npz(path: Path, seed: int) -> None:
    """The bring-your-own .npz form: `label`, `split` and one array per modality (docs/data-format.md)."""
    rng = np.random.default_rng(seed)
    n = 480
    label = rng.integers(0, 3, n)
    split = np.array(["train"] * 240 + ["val"] * 120 + ["test"] * 120)
    a = rng.normal(size=(n, 12)) + label[:, None] * (1.0 if seed == 0 else -1.0)
    b = rng.normal(size=(n, 12)) + (label[:, None] == 1) * 1.5
    np.savez(path, label=label, split=split, a=a.astype(np.float32), b=b.astype(np.float32))


def test_umt_teacher_features_follow_the_data_and_the_teachers(tmp_path):
    from latefusion.resolve import resolve_config

    data = tmp_path / "data.npz"
    write_npz(data, seed=0)
    base = resolve_config(None, ["data.name=folder", f"data.path={data}", "train.epochs=2", "train.progress=false"])

    def teachers(tag: str) -> dict[str, str]:
        folders = {m: str(tmp_path / f"{tag}-unimodal-{m}") for m in ("a", "b")}
        for m, folder in folders.items():
            train(method_config(base, "unimodal", {"modality": m}), folder)
        return folders

    first = teachers("v1")
    snapshot = {p: p.stat().st_mtime_ns for folder in first.values() for p in Path(folder).rglob("*") if p.name != ".lock"}
    train(method_config(base, "umt", {"teachers": first}), tmp_path / "umt-v1")
    # The teachers' folders are only read: nothing is written there (UMT works with read-only teachers).
    assert {p: p.stat().st_mtime_ns for folder in first.values() for p in Path(folder).rglob("*") if p.name != ".lock"} == snapshot
    assert list((tmp_path / "umt-v1" / "cache").glob("teacher-*.pt"))

    write_npz(data, seed=1)  # every array rewritten, same file name
    with pytest.raises(ConfigError, match="trained on other data"):
        train(method_config(base, "umt", {"teachers": first}), tmp_path / "umt-stale")
    second = teachers("v2")
    cached = train(method_config(base, "umt", {"teachers": second}), tmp_path / "umt-v2")
    live = train(method_config(base, "umt", {"teachers": second, "teacher_cache": "off"}), tmp_path / "umt-v2-live")
    assert cached["test_acc"] == live["test_acc"] and cached["val_acc"] == live["val_acc"]
    assert cached["fingerprints"]["data"] != RunDir(tmp_path / "umt-v1").result()["fingerprints"]["data"]


def train_command(out: Path, *overrides: str) -> list[str]:
    sets = [arg for o in ["data.name=synthetic-unimodal", *TINY, *overrides] for arg in ("--set", o)]
    return [sys.executable, "-m", "latefusion.cli", "train", "--out", str(out), *sets]


def test_a_second_training_into_the_same_folder_stops_with_a_clear_message(tmp_path):
    out, pause = tmp_path / "run", tmp_path / "pause"
    with paused_run.running(train_command(out, "train.checkpoint_every_steps=1"), pause) as first:
        paused_run.wait_until_paused(first, pause)  # the first holds the folder, inside its first epoch
        second = subprocess.run(train_command(out, "model.feature_dim=32"), env={**os.environ, "OMP_NUM_THREADS": "1"},
                                capture_output=True, text=True)
        paused_run.release(pause)
        _, first_err = first.communicate(timeout=300)
    assert first.returncode == 0, first_err
    assert second.returncode == 2
    assert "is in use by another latefusion process" in second.stderr and f"pid {first.pid}" in second.stderr
    run = RunDir(out)
    assert run.config().model.feature_dim == 64 and run.config().train.checkpoint_every_steps == 1  # the first's files, consistent
    assert set(probe_run(out)) == {"a", "b"}


def test_a_lock_left_by_a_killed_process_is_taken_over(tmp_path):
    out = tmp_path / "run"
    code = f"from latefusion.runs import RunDir; import os\nwith RunDir({str(out)!r}).lock(): os.kill(os.getpid(), 9)"
    assert subprocess.run([sys.executable, "-c", code]).returncode == -9
    assert (out / ".lock").is_file()
    with RunDir(out).lock():
        pass


@pytest.mark.parametrize("section, key, value, listed", [("train", "seed", 1, "train.seed: 0 -> 1"),
                                                        ("model", "feature_dim", 32, "model.feature_dim: 64 -> 32")])
def test_resume_refuses_an_edited_config_and_lists_the_differences(tmp_path, capsys, section, key, value, listed):
    out = tmp_path / "run"
    assert cli.main(["train", "--out", str(out), *[a for o in ["data.name=synthetic-unimodal", *TINY] for a in ("--set", o)]]) == 0
    (out / "result.json").unlink()  # as if stopped after its last checkpoint
    config = yaml.safe_load((out / "config.yaml").read_text())
    config[section][key] = value
    (out / "config.yaml").write_text(yaml.safe_dump(config, sort_keys=False))
    capsys.readouterr()
    assert cli.main(["train", "--out", str(out), "--resume"]) == 2
    err = capsys.readouterr().err
    assert "cannot resume" in err and listed in err and "Traceback" not in err


def test_resume_refuses_changed_data(tmp_path):
    from latefusion.resolve import resolve_config

    data = tmp_path / "data.npz"
    write_npz(data, seed=0)
    config = resolve_config(None, ["data.name=folder", f"data.path={data}", "train.epochs=2", "train.progress=false"])
    train(config, tmp_path / "run")
    (tmp_path / "run" / "result.json").unlink()
    write_npz(data, seed=1)
    with pytest.raises(RunFolderError, match="data fingerprint"):
        train(config, tmp_path / "run", resume=True)


@pytest.mark.parametrize("option, named", [(["--method-option", "umt.wieght=5"], "wieght"),
                                           (["--method-option", "ume.combine=median"], "median"),
                                           (["--method-option", "umtt.weight=5"], "umtt"),
                                           (["--set", "model.encoders.b.options.hiden=3", "--set", "model.encoders.b.name=mlp"], "hiden")])
def test_an_option_typo_in_a_demo_fails_before_any_training(tmp_path, capsys, option, named):
    out = tmp_path / "demo"
    code = cli.main(["demo", "--data", "synthetic-unimodal", "--quick", "--out", str(out), *option])
    err = capsys.readouterr().err
    assert code == 2, (code, err)
    assert named in err and "Traceback" not in err
    assert not any(out.glob("*/config.yaml")), "a run was started"  # refused before the first run, not after it


class Echo(Naive):
    """A method registered from a test module: naive fusion under another name."""

    name = "echo-test"
    group = "other"
    style = Style("Echo", "#000000", "o")


def test_a_method_registered_from_a_test_module_runs_through_the_demo(tmp_path, monkeypatch):
    monkeypatch.setitem(METHODS._entries, "echo-test", Echo)
    monkeypatch.setitem(METHODS._defaults, "echo-test", {})
    out = tmp_path / "demo"
    sets = [a for o in TINY for a in ("--set", o)]
    assert cli.main(["demo", "--data", "synthetic-unimodal", "--out", str(out), "--methods", "echo-test", *sets]) == 0
    summary = (out / "summary.json").read_text()
    assert '"echo-test"' in summary and (out / "echo-test" / "result.json").is_file()
    assert "Echo" in (out / "report.md").read_text()
