"""Bad inputs refused with a message that names what is wrong (docs/reliability.md): absurd sizes in the
config, outputs the system refuses to write (full disk, read-only file system, a file where a folder
should be), and the guide given runs trained on different data."""

import errno
import json
import os
from pathlib import Path

import pytest

from latefusion import storage
from latefusion.cli import main
from latefusion.config import MAX_BATCH_SIZE, MAX_EPOCHS, MAX_FEATURE_DIM, MAX_STEPS, MAX_WORKERS, ConfigError
from latefusion.errors import OutputError, RunFolderError, UserError
from latefusion.resolve import resolve_config

# --- 1. sizes bounded ---------------------------------------------------------------------------

HUGE = "100000000000000000000"  # 1e20 as an integer


@pytest.mark.parametrize("key, bound", [
    ("data.batch_size", MAX_BATCH_SIZE), ("data.eval_batch_size", MAX_BATCH_SIZE), ("data.num_workers", MAX_WORKERS),
    ("model.feature_dim", MAX_FEATURE_DIM), ("train.epochs", MAX_EPOCHS), ("train.patience", MAX_EPOCHS),
    ("optim.step_size", MAX_EPOCHS), ("train.checkpoint_every_steps", MAX_STEPS), ("train.log_every_steps", MAX_STEPS),
])
def test_absurd_sizes_are_refused_naming_key_and_bound(key, bound):
    for value in (HUGE, str(bound + 1), "1.0e+20", "1.5", "1e20"):
        with pytest.raises(ConfigError) as caught:
            resolve_config(None, [f"{key}={value}"])
        assert f"{key}: " in str(caught.value) and str(bound) in str(caught.value), str(caught.value)
    resolve_config(None, [f"{key}={bound}"])  # the bound itself is allowed


def test_batch_size_1e20_is_refused_with_the_bound(capsys):
    # YAML reads `1e20` as text (no dot): refused as not an integer, and the allowed range is named.
    assert main(["config", "--set", "data.batch_size=1e20"]) == 2
    err = capsys.readouterr().err
    assert "data.batch_size" in err and "(found '1e20')" in err and f"from 1 to {MAX_BATCH_SIZE}" in err, err


def test_absurd_size_in_a_config_file_is_refused(tmp_path):
    (tmp_path / "run.yaml").write_text("data:\n  batch_size: 1.0e+20\ntrain:\n  epochs: 1000000\n")
    with pytest.raises(ConfigError) as caught:
        resolve_config(tmp_path / "run.yaml")
    message = str(caught.value)
    assert "data.batch_size: " in message and f"expected an integer from 1 to {MAX_BATCH_SIZE}" in message, message
    assert f"train.epochs: Input should be less than or equal to {MAX_EPOCHS}" in message


# --- 2. outputs the system refuses ----------------------------------------------------------------

def refuse(code: int):
    def fail(*args, **kwargs):
        raise OSError(code, os.strerror(code))
    return fail


@pytest.mark.parametrize("where, code, cause", [
    ("fsync", errno.ENOSPC, "disk full (ENOSPC)"),
    ("fsync", errno.EDQUOT, "disk quota exceeded (EDQUOT)"),
    ("replace", errno.EROFS, "read-only file system (EROFS)"),
    ("replace", errno.EACCES, "permission denied (EACCES)"),
])
def test_write_refused_by_the_system_names_path_and_cause_and_keeps_the_old_file(tmp_path, monkeypatch, where, code, cause):
    target = tmp_path / "result.json"
    target.write_text("old\n")
    monkeypatch.setattr(storage.os, where, refuse(code))
    with pytest.raises(OutputError) as caught:
        storage.write_json(target, {"new": 1})
    message = str(caught.value)
    assert message.startswith(f"could not write {target}: {cause}") and "nothing was replaced" in message, message
    assert target.read_text() == "old\n"
    assert [p.name for p in tmp_path.iterdir()] == ["result.json"]  # no temporary file left behind


def test_checkpoint_on_a_full_disk_is_an_output_error(tmp_path, monkeypatch):
    storage.save_checkpoint(tmp_path / "last.pt", {"step": 1})
    monkeypatch.setattr(storage.os, "fsync", refuse(errno.ENOSPC))
    with pytest.raises(OutputError, match=r"last\.pt: disk full \(ENOSPC\)"):
        storage.save_checkpoint(tmp_path / "last.pt", {"step": 2})
    monkeypatch.undo()
    assert storage.load_checkpoint(tmp_path / "last.pt") == {"step": 1}


def test_writing_under_a_regular_file_names_the_file(tmp_path):
    (tmp_path / "runs").write_text("a file, not a folder")
    with pytest.raises(OutputError, match=r"could not write .*runs/demo/result\.json: a part of the path is a file, not a folder \(ENOTDIR\)"):
        storage.write_json(tmp_path / "runs" / "demo" / "result.json", {})
    with pytest.raises(OutputError, match=r"could not write .*runs/result\.json: a part of the path is a file, not a folder \(EEXIST\)"):
        storage.write_json(tmp_path / "runs" / "result.json", {})


def test_writing_over_a_folder_names_it(tmp_path):
    (tmp_path / "report.md").mkdir()
    with pytest.raises(OutputError, match=r"report\.md: it is a folder, not a file \(EISDIR\)"):
        storage.atomic_write_text(tmp_path / "report.md", "# report\n")


def test_other_os_errors_keep_their_type(tmp_path, monkeypatch):
    monkeypatch.setattr(storage.os, "fsync", refuse(errno.EIO))
    with pytest.raises(OSError) as caught:
        storage.write_json(tmp_path / "x.json", {})
    assert not isinstance(caught.value, UserError) and caught.value.errno == errno.EIO


TINY_TRAIN = ["--set", "data.options.train_size=20", "--set", "data.options.val_size=10", "--set", "data.options.test_size=10",
              "--set", "train.epochs=1", "--set", "train.progress=false"]


def test_cli_names_a_run_folder_under_a_regular_file_without_traceback(tmp_path, capsys):
    (tmp_path / "runs").write_text("a file, not a folder")
    assert main(["train", *TINY_TRAIN, "--out", str(tmp_path / "runs" / "run")]) == 2
    err = capsys.readouterr().err
    assert "a part of the path is a file, not a folder (ENOTDIR)" in err and str(tmp_path / "runs") in err, err
    assert "Traceback" not in err


@pytest.mark.skipif(os.geteuid() == 0, reason="root writes into read-only folders")
def test_cli_names_an_unwritable_run_folder_without_traceback(tmp_path, capsys):
    locked = tmp_path / "locked"
    locked.mkdir()
    locked.chmod(0o500)
    try:
        code = main(["train", *TINY_TRAIN, "--out", str(locked / "run")])
    finally:
        locked.chmod(0o700)
    err = capsys.readouterr().err
    assert code == 2 and "permission denied (EACCES)" in err and str(locked / "run") in err and "Traceback" not in err, err


def test_cli_keeps_the_traceback_of_other_os_errors(monkeypatch):
    import latefusion.cli as cli

    def broken(args):
        raise OSError(errno.EIO, "input/output error")
    monkeypatch.setattr(cli, "command_list", broken)
    with pytest.raises(OSError):
        main(["list"])


# --- 3. the guide refuses runs of different data --------------------------------------------------

def finished_run(folder: Path, data: str | None) -> str:
    folder.mkdir(parents=True)
    fingerprints = {"config": "c" * 16, **({"data": data} if data else {})}
    (folder / "result.json").write_text(json.dumps({"val_acc": 0.5, "n_val": 10, "fingerprints": fingerprints}))
    return str(folder)


def test_guide_refuses_runs_trained_on_different_data(tmp_path):
    from latefusion.pipeline import guide_from_runs

    unimodal = {"a": finished_run(tmp_path / "unimodal-a", "1111"), "b": finished_run(tmp_path / "unimodal-b", "2222")}
    with pytest.raises(RunFolderError) as caught:
        guide_from_runs(unimodal, finished_run(tmp_path / "naive", "1111"), finished_run(tmp_path / "ume", "1111"),
                        umt=finished_run(tmp_path / "umt", "3333"))
    message = str(caught.value)
    assert "trained on different data" in message and "data 2222: unimodal:b" in message and "data 3333: umt" in message, message
    assert "data 1111: unimodal:a" in message and "naive" in message and "ume" in message


def test_guide_refuses_data_that_changed_since_training(tmp_path):
    from latefusion.pipeline import same_data

    runs = {"naive": finished_run(tmp_path / "naive", "1111"), "ume": finished_run(tmp_path / "ume", "1111")}
    assert same_data(runs) == "1111"

    class Bundle:
        fingerprint = "9999"
    with pytest.raises(RunFolderError, match=r"fingerprint 9999\) is not the data these runs were trained on \(fingerprint 1111\)"):
        same_data(runs, Bundle())


def test_cli_guide_on_mixed_data_is_one_message(tmp_path, capsys):
    demo = tmp_path / "demo"
    finished_run(demo / "unimodal-a", "1111")
    finished_run(demo / "unimodal-b", "1111")
    finished_run(demo / "naive", "2222")
    finished_run(demo / "ume", "1111")
    assert main(["guide", str(demo)]) == 2
    err = capsys.readouterr().err
    assert "trained on different data" in err and "data 2222: naive" in err and "Traceback" not in err, err


# --- rows of docs/reliability.md that no other test covered ----------------------------------------

def test_epochs_zero_is_refused_by_name():
    with pytest.raises(ConfigError, match=r"train\.epochs: Input should be greater than or equal to 1 \(found 0\)"):
        resolve_config(None, ["train.epochs=0"])


def test_device_cuda_without_a_gpu_is_one_message(tmp_path, capsys, monkeypatch):
    import torch

    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    assert main(["train", *TINY_TRAIN, "--set", "train.device=cuda", "--out", str(tmp_path / "run")]) == 2
    err = capsys.readouterr().err
    assert "train.device=cuda but no CUDA device is available; use train.device=auto or cpu" in err and "Traceback" not in err, err


def manifest_folder(tmp_path):
    import sys
    sys.path.insert(0, str(Path(__file__).parent))
    from test_folder_data import make_samples, write_manifest
    return write_manifest(tmp_path / "d", make_samples(n=15))


def test_string_and_rank_4_npy_files_in_a_manifest_are_named(tmp_path):
    import numpy as np
    from latefusion.config import DataConfig
    from latefusion.data import DATASETS, build_dataset
    from latefusion.data.checks import check_bundle
    from latefusion.data.folder import DataFormatError

    folder = manifest_folder(tmp_path)
    np.save(folder / "s1.npy", np.array(["a"] * 6))
    np.save(folder / "s2.npy", np.zeros((1, 2, 2, 2), np.float32))
    messages = {p.kind: p.message for p in check_bundle(DATASETS.get("folder")(DataConfig(name="folder", path=str(folder))))}
    assert messages["non-numeric"] == "line 3 (id 's1'), modality 'vector': s1.npy holds <U1 values; expected real numbers (bool, integer or float)"
    assert messages["wrong-shape"].endswith("s2.npy has shape (1, 2, 2, 2), the other samples (6,); every sample of a modality needs the same shape")
    for i in range(15):  # every sample of rank 4: the modality itself is refused
        np.save(folder / f"s{i}.npy", np.zeros((1, 2, 2, 2), np.float32))
    with pytest.raises(DataFormatError, match=r"modality 'vector' has samples of shape \(1, 2, 2, 2\); the encoders take .* at most 3 dimensions"):
        build_dataset(DataConfig(name="folder", path=str(folder)))


def test_stale_temporary_files_are_removed_when_the_folder_is_taken(tmp_path):
    from latefusion.runs import RunDir

    run = RunDir(tmp_path / "run")
    (run.path / "checkpoints").mkdir(parents=True)
    run.cache.mkdir()
    stale = [run.path / ".result.json.x1.tmp", run.path / "checkpoints" / ".last.pt.x2.tmp", run.cache / ".teacher-a.pt.x3.tmp"]
    for path in stale:
        path.write_bytes(b"half a file")
    (run.path / "notes.tmp").write_text("not ours: no leading dot")
    with run.lock():
        assert not any(path.exists() for path in stale)
    assert (run.path / "notes.tmp").is_file()


def test_a_kill_between_the_metrics_row_and_last_pt_resumes_to_identical_metrics(tmp_path, tiny_config, monkeypatch):
    import importlib
    training = importlib.import_module("latefusion.train")  # the module; `latefusion.train` is also the function

    config = tiny_config("data.batch_size=100", "train.checkpoint_every_steps=null")
    training.train(config, tmp_path / "whole")
    save = training.save_checkpoint

    def killed_after_epoch_1(path, state):
        if Path(path).name == "last.pt" and state["epoch"] == 2 and state["step"] == 0:
            raise KeyboardInterrupt("killed after the metrics row of epoch 1, before its last.pt")
        save(path, state)
    monkeypatch.setattr(training, "save_checkpoint", killed_after_epoch_1)
    with pytest.raises(KeyboardInterrupt):
        training.train(config, tmp_path / "resumed")
    from latefusion.runs import RunDir
    resumed = RunDir(tmp_path / "resumed")
    assert len(resumed.metrics_file.read_text().splitlines()) == 2  # epochs 0 and 1 written; last.pt still says epoch 1
    monkeypatch.setattr(training, "save_checkpoint", save)
    training.train(config, tmp_path / "resumed", resume=True)
    whole = RunDir(tmp_path / "whole")

    def comparable(run):
        return {k: v for k, v in run.result().items() if k not in ("wall_time_s", "environment")}, run.metrics_file.read_text()
    assert comparable(resumed) == comparable(whole)


def test_probe_on_a_read_only_run_returns_results_without_saving(tmp_path, tiny_config, monkeypatch):
    import latefusion.probe as probe
    from latefusion.train import train

    train(tiny_config("train.epochs=1"), tmp_path / "run")
    # What a read-only folder (or a full disk) answers to the write; as root, chmod would not refuse it.
    refused = OSError(errno.EROFS, "Read-only file system")
    monkeypatch.setattr(storage.tempfile, "mkstemp", lambda **kwargs: (_ for _ in ()).throw(refused))
    results = probe.probe_run(tmp_path / "run")
    assert set(results) == {"a", "b"} and not (tmp_path / "run" / "probe.json").exists()


def test_umt_refuses_teachers_trained_on_other_data(tmp_path, tiny_config):
    from latefusion.train import train

    teachers = {}
    for m in ("a", "b"):
        teachers[m] = str(tmp_path / f"unimodal-{m}")
        train(tiny_config("train.epochs=1", "method.name=unimodal", f"method.options.modality={m}"), teachers[m])
    umt = tiny_config("train.epochs=1", "data.options.seed=1", "method.name=umt", *(f"method.options.teachers.{m}={p}" for m, p in teachers.items()))
    with pytest.raises(ConfigError, match=r"teachers\.a: .*unimodal-a was trained on other data .* than this run"):
        train(umt, tmp_path / "umt")
    assert not (tmp_path / "umt" / "checkpoints").exists()


def test_a_references_file_of_another_shape_is_named(tmp_path):
    from latefusion.runs import RunDir

    run = RunDir(tmp_path / "umt")
    run.path.mkdir()
    run.references_file.write_text('{"teachers": {"a": "unimodal-a"}}')
    with pytest.raises(RunFolderError, match=r"references.json is not a references file"):
        run.references()
