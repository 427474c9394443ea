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
    for value in (HUGE, str(bound + 1), "1.0e+20"):
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
    from latefusion.guide import guide_from_runs

    unimodal = {"a": finished_run(tmp_path / "unimodal-a", "1111"), "b": finished_run(tmp_path / "unimodal-b", "2222")}
    with pytest.raises(RunFolderError) as caught:
        guide_from_runs(unimodal, finished_run(tmp_path / "naive", "1111"), finished_run(tmp_path / "ume", "1111"),
                        umt=finished_run(tmp_path / "umt", "3333"))
    message = str(caught.value)
    assert "trained on different data" in message and "data 2222: unimodal:b" in message and "data 3333: umt" in message, message
    assert "data 1111: unimodal:a" in message and "naive" in message and "ume" in message


def test_guide_refuses_data_that_changed_since_training(tmp_path):
    from latefusion.guide import same_data

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
