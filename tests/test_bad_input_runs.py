"""Bad input, third round (issue 20): run folders, the command line and a new user's first hour. A run
folder moved while it trains, a report killed between its two files, references.json and result.json
edited by hand, a logger that is not installed, modality names that share a folder, plugins that exit
or import nothing, `--help`, a complete plug-in file, and `latefusion compare`'s width and formats."""

from __future__ import annotations

import csv
import io
import json
import os
import re
import shutil
import signal
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

import paused_run
from latefusion import cli
from latefusion.cli import main
from latefusion.data import from_arrays
from latefusion.data.folder import DataFormatError
from latefusion.errors import RunFolderError, RunFolderMovedError
from latefusion.pipeline import run_pipeline
from latefusion.resolve import resolve_config
from latefusion.runs import RunDir, resolve_references
from latefusion.storage import load_checkpoint

ROOT = Path(__file__).resolve().parents[1]
FAST = ["data.name=synthetic-unimodal", "data.options.train_size=64", "data.options.val_size=32", "data.options.test_size=32",
        "data.batch_size=16", "train.epochs=1", "train.progress=false", "train.device=cpu"]


def sets(*settings):
    return [arg for s in settings for arg in ("--set", s)]


def child_env():
    return {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONPATH": os.pathsep.join(p for p in sys.path if p)}


@pytest.fixture(scope="module")
def demo_once(tmp_path_factory):
    out = tmp_path_factory.mktemp("runs") / "demo"
    config = resolve_config(None, ["data.name=synthetic-unimodal", "data.options.train_size=200", "data.options.val_size=100",
                                   "data.options.test_size=100", "train.epochs=2", "train.progress=false", "train.device=cpu"])
    run_pipeline(config, out, log=lambda *_: None)
    return out


@pytest.fixture
def demo(demo_once, tmp_path):
    """A fresh copy of the demo folder, for a test to change."""
    return Path(shutil.copytree(demo_once, tmp_path / "demo"))


# ------------------------------------------------------------------ a run folder moved while it trains

# 200 samples in batches of 8: 25 steps an epoch, a step checkpoint every 5 (the pause comes after the first).
MOVE_SETTINGS = ["data.name=synthetic-unimodal", "data.options.train_size=200", "data.options.val_size=50",
                 "data.options.test_size=50", "data.batch_size=8", "train.epochs=2", "train.checkpoint_every_steps=5",
                 "train.progress=false", "train.device=cpu"]


@pytest.mark.slow
def test_a_run_folder_moved_while_it_trains_stops_by_name_and_resumes_where_it_now_is(tmp_path):
    out, moved, pause = tmp_path / "run", tmp_path / "elsewhere" / "run", tmp_path / "pause"
    with paused_run.running([sys.executable, "-m", "latefusion.cli", "train", *sets(*MOVE_SETTINGS), "--out", str(out)], pause) as process:
        paused_at = paused_run.wait_until_paused(process, pause)
        moved.parent.mkdir()
        out.rename(moved)
        paused_run.release(pause)
        _, stderr = process.communicate(timeout=120)
    assert process.returncode == 2, stderr
    assert "Traceback" not in stderr
    assert f"{out} was moved or removed while this process was writing it" in stderr
    assert f"it is now at {moved}; continue it there: latefusion train --out {moved} --resume" in stderr
    assert not out.exists()  # the old path was not made again
    assert not list(moved.rglob("*.tmp"))
    state = load_checkpoint(RunDir(moved).last)
    assert (state["epoch"], state["step"]) == paused_at  # the moved folder holds the last checkpoint, whole

    assert main(["train", "--out", str(moved), "--resume"]) == 0
    result = RunDir(moved).result()
    assert result["epochs_run"] == 2 and not out.exists()


def test_writes_under_a_pinned_folder_that_moved_are_refused(tmp_path):
    """The check itself, in one process: the run folder's lock pins it; once it is moved, a write
    through the atomic writer is refused by name and the old path is not made again."""
    from latefusion.storage import write_json

    run = RunDir(tmp_path / "run")
    with pytest.raises(RunFolderMovedError, match=f"it is now at {tmp_path / 'moved'}"):
        with run.lock():
            write_json(run.path / "before.json", {})
            run.path.rename(tmp_path / "moved")
            write_json(run.result_file, {})
    assert not run.path.exists() and (tmp_path / "moved" / "before.json").is_file()
    with pytest.raises(RunFolderMovedError, match=r"old path\. It was removed\.$"):
        with run.lock():
            shutil.rmtree(run.path)
            write_json(run.path / "checkpoints" / "x.json", {})
    assert not run.path.exists()


# ------------------------------------------------------------------ report files killed between the two

KILL_AT = '''
import os, signal, sys
from pathlib import Path
import latefusion.report as report

real_replace, target = os.replace, sys.argv[2]

def replace(src, dst, *args, **kwargs):
    name = Path(dst).name
    if name == target:  # SIGKILL: no handler, no clean-up runs
        os.kill(os.getpid(), signal.SIGKILL)
    real_replace(src, dst, *args, **kwargs)

os.replace = replace
report.write_report([sys.argv[1]])
'''


def change_a_result(demo: Path) -> None:
    """The next report differs: naive fusion's test accuracy is now 99% (the report reads summary.json)."""
    summary = json.loads((demo / "summary.json").read_text())
    summary["methods"]["naive"]["test_acc"] = 0.99
    (demo / "summary.json").write_text(json.dumps(summary))


def kill_report_write_at(demo: Path, name: str) -> None:
    done = subprocess.run([sys.executable, "-c", KILL_AT, str(demo), name], env=child_env(), capture_output=True, text=True, timeout=300)
    assert done.returncode == -signal.SIGKILL, done.stderr


def test_a_kill_between_report_html_and_report_md_leaves_one_set(demo):
    from latefusion.report import write_report

    write_report([demo])
    old = {name: (demo / name).read_bytes() for name in ("report.html", "report.md")}
    change_a_result(demo)
    # Killed as report.md is written, after report.html: the old report, both files.
    kill_report_write_at(demo, ".report.md.staged")  # (before, report.md itself: report.html was new, report.md old)
    assert {name: (demo / name).read_bytes() for name in old} == old
    # Killed between the two renames that publish the set: the next report write (or any completion)
    # finishes the set it had committed, before anything else.
    from latefusion.storage import complete_file_set

    kill_report_write_at(demo, "report.md")
    assert (demo / "report.md").read_bytes() == old["report.md"] and (demo / ".file-set.json").is_file()
    complete_file_set(demo)
    html, markdown = (demo / "report.html").read_text(), (demo / "report.md").read_text()
    assert "99.0" in html and "99.0" in markdown and not (demo / ".file-set.json").exists()
    assert not [p for p in demo.iterdir() if p.name.endswith(".staged")]
    written = write_report([demo])
    assert "99.0" in written.markdown.read_text()


# ------------------------------------------------------------------ references.json edited by hand

def test_a_reference_edited_to_an_absolute_path_is_refused(demo, tmp_path):
    umt = RunDir(demo / "umt")
    elsewhere = Path(shutil.copytree(demo / "unimodal-a", tmp_path / "elsewhere" / "unimodal-a"))
    references = json.loads(umt.references_file.read_text())
    option = next(iter(references))
    references[option]["a"]["path"] = str(elsewhere)  # the same checkpoint, outside the run's own record
    umt.references_file.write_text(json.dumps(references))
    with pytest.raises(RunFolderError, match=rf"references\.json: {option}\.a: the path {elsewhere} is absolute; latefusion "
                                             r"records paths relative to the run folder"):
        resolve_references(umt, {"a": str(demo / "unimodal-a")}, option)


# ------------------------------------------------------------------ a logger that is not installed

def test_a_logger_that_is_not_installed_is_refused_before_anything_is_written(tmp_path, monkeypatch, capsys):
    import importlib.util

    import latefusion.loggers as loggers

    real = importlib.util.find_spec
    monkeypatch.setattr(loggers.importlib.util, "find_spec", lambda name, *a: None if name == "tensorboard" else real(name, *a))
    out = tmp_path / "run"
    assert main(["train", *sets(*FAST, "train.loggers=[jsonl,tensorboard]"), "--out", str(out)]) == 2
    assert "the `tensorboard` package is not installed" in capsys.readouterr().err
    assert not out.exists()  # nothing written: a plain retry is not refused as "already holds a run"
    assert main(["train", *sets(*FAST, "train.loggers=[jsonl,csv]"), "--out", str(out)]) == 0
    assert (out / "metrics.csv").is_file()


# ------------------------------------------------------------------ modality names that share a folder

@pytest.mark.parametrize("names", [("vec", "vec/"), ("a-b", "a:b"), ("x", "x\\")])
def test_modality_names_that_would_share_a_run_folder_are_refused(names):
    g = np.random.default_rng(0)
    splits = {split: {**{name: g.normal(size=(n, 3)) for name in names}, "label": [("cat", "dog")[i % 2] for i in range(n)]}
              for split, n in (("train", 40), ("test", 10))}
    with pytest.raises(DataFormatError, match=re.escape(f"{names[1]!r} cannot name a modality") + r".*nor hold '/', '\\' or ':'"):
        from_arrays(**splits)


def test_a_manifest_column_naming_a_folder_is_refused(tmp_path):
    from latefusion.config import DataConfig
    from latefusion.data import build_dataset

    rows = [f"s{i},{'cat' if i % 2 else 'dog'},{'test' if i % 5 == 4 else 'train'},{i},{i % 3}" for i in range(40)]
    (tmp_path / "manifest.csv").write_text("\n".join(["id,label,split,vec,vec/", *rows]) + "\n")
    with pytest.raises(DataFormatError, match=r"'vec/' cannot name a modality"):
        build_dataset(DataConfig(name="folder", path=str(tmp_path)))


# ------------------------------------------------------------------ plugins that exit or import nothing

def test_a_plugin_calling_sys_exit_is_named(tmp_path, monkeypatch, capsys):
    (tmp_path / "lf_exiting_plugin.py").write_text("import sys\nsys.exit(3)\n")
    monkeypatch.syspath_prepend(str(tmp_path))
    assert cli.main(["list", "--import", "lf_exiting_plugin"]) == 2
    assert "--import lf_exiting_plugin: the plugin called sys.exit(3) while it was imported" in capsys.readouterr().err
    assert cli.main(["list", "--import", str(tmp_path / "lf_exiting_plugin.py")]) == 2
    assert "the plugin called sys.exit(3)" in capsys.readouterr().err


def test_importing_a_plain_folder_is_named(tmp_path, monkeypatch, capsys):
    (tmp_path / "lf_plain_folder").mkdir()
    (tmp_path / "lf_plain_folder" / "encoders.py").write_text("")
    monkeypatch.syspath_prepend(str(tmp_path))
    assert cli.main(["list", "--import", "lf_plain_folder"]) == 2
    err = capsys.readouterr().err
    assert "--import lf_plain_folder: a folder without __init__.py" in err and "lf_plain_folder.encoders" in err
    monkeypatch.chdir(tmp_path)
    assert cli.main(["list", "--import", "lf_plain_folder/"]) == 2
    assert "--import lf_plain_folder/: a folder" in capsys.readouterr().err


# ------------------------------------------------------------------ result.json edited by hand

def test_a_result_with_a_number_as_text_is_named_by_compare(demo, capsys):
    result_file = demo / "naive" / "result.json"
    result = json.loads(result_file.read_text())
    result["val_acc"] = "0.9"
    result_file.write_text(json.dumps(result))
    assert main(["compare", str(demo)]) == 2
    err = capsys.readouterr().err
    assert f"{result_file}: 'val_acc' is '0.9' (text); expected a number from 0 to 1" in err and "Traceback" not in err


@pytest.mark.parametrize("field, value, expected", [("test_acc", 1.5, "a number from 0 to 1"), ("n_val", -3, "a whole number"),
                                                     ("best_epoch", 2.5, "a whole number"), ("fingerprints", [], "a mapping"),
                                                     ("test_acc_by_modality", {"a": "x"}, "a mapping of modality to numbers from 0 to 1")])
def test_result_fields_are_checked_when_read(demo, field, value, expected):
    run = RunDir(demo / "naive")
    result = json.loads(run.result_file.read_text())
    result[field] = value
    run.result_file.write_text(json.dumps(result))
    with pytest.raises(RunFolderError, match=rf"'{field}' is .*; expected {expected}"):
        run.result()


def test_a_result_that_is_not_an_object_is_named(demo):
    run = RunDir(demo / "naive")
    run.result_file.write_text("[1, 2]")
    with pytest.raises(RunFolderError, match=r"result\.json: it holds a list; expected an object"):
        run.result()


# ------------------------------------------------------------------ --help and a complete plug-in file

def test_help_names_no_source_file(capsys):
    commands = ["prepare", "train", "check-data", "probe", "predict", "guide", "demo", "report", "compare", "config", "list",
                "methods", "encoders", "datasets"]
    for argv in (["--help"], *([command, "--help"] for command in commands)):
        with pytest.raises(SystemExit):
            main(argv)
        out = capsys.readouterr().out
        assert not re.search(r"\b\w+\.py\b", out), out  # a source file of latefusion (plugins.py) means nothing to a user


EXAMPLE = ROOT / "docs" / "examples" / "my_plugin.py"


def test_the_plugin_example_of_the_docs_imports_and_trains(tmp_path):
    """docs/examples/my_plugin.py, as a user would use it: `--import` of the file, then its encoder and
    its method in a tiny run; `latefusion list` shows both."""
    listed = subprocess.run([sys.executable, "-m", "latefusion.cli", "list", "--import", str(EXAMPLE)], env=child_env(),
                            capture_output=True, text=True, timeout=300)
    assert listed.returncode == 0, listed.stderr
    assert "small-mlp" in listed.stdout and "label_smoothing" in listed.stdout
    done = subprocess.run([sys.executable, "-m", "latefusion.cli", "train", "--import", str(EXAMPLE),
                           *sets(*FAST, "model.encoders.a.name=small-mlp", "model.encoders.b.name=small-mlp",
                                 "model.encoders.a.options.hidden=16", "method.name=label_smoothing", "method.options.smoothing=0.2"),
                           "--out", str(tmp_path / "run")], env=child_env(), capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr
    result = RunDir(tmp_path / "run").result()
    assert result["method"] == "label_smoothing" and 0 <= result["test_acc"] <= 1
    refused = subprocess.run([sys.executable, "-m", "latefusion.cli", "train", "--import", str(EXAMPLE),
                              *sets(*FAST, "method.name=label_smoothing", "method.options.smoothing=2"), "--out", str(tmp_path / "bad")],
                             env=child_env(), capture_output=True, text=True, timeout=300)
    assert refused.returncode == 2 and "smoothing" in refused.stderr  # its Options are checked like a built-in method's


# ------------------------------------------------------------------ compare: width and formats

def test_compare_of_a_demo_fits_100_columns_and_shows_what_differs(demo_once, capsys):
    demo = demo_once
    assert main(["compare", str(demo)]) == 0
    out = capsys.readouterr().out
    assert max(len(line) for line in out.splitlines()) <= 100, out
    assert "{}" not in out  # an empty options section is no difference from none
    assert str(demo / "unimodal-a") not in out and "../unimodal-a" in out  # the runs a run learned from, from its folder
    assert f"runs in {demo}" in out
    for run in ("naive", "ume", "umt", "unimodal-a", "unimodal-b"):
        assert any(line.split()[:1] == [run] for line in out.splitlines())


def test_compare_shows_the_encoders_chosen_automatically(tmp_path, capsys):
    g, n = np.random.default_rng(0), 60
    data = tmp_path / "data.npz"  # an image modality (the data set suggests cnn) and a vector one
    np.savez(data, img=g.normal(size=(n, 8, 8)), vec=g.normal(size=(n, 3)), label=np.arange(n) % 2, split=np.array(["train"] * 45 + ["test"] * 15))
    auto, chosen = tmp_path / "auto", tmp_path / "chosen"
    tiny = ["data.batch_size=16", "train.epochs=1", "train.progress=false", "train.device=cpu"]
    assert main(["train", "--data", str(data), *sets(*tiny), "--out", str(auto)]) == 0
    assert main(["train", "--data", str(data), *sets(*tiny, "model.encoders.img.name=mlp"), "--out", str(chosen)]) == 0
    capsys.readouterr()
    assert main(["compare", str(auto), str(chosen)]) == 0
    header, _, row_auto, row_chosen = capsys.readouterr().out.splitlines()[2:]  # after "runs in FOLDER" and a blank line
    assert header.split()[:2] == ["run", "model.encoders.img.name"]  # the vector modality's encoder is the same: not shown
    assert row_auto.split()[:2] == ["auto", "cnn"] and row_chosen.split()[:2] == ["chosen", "mlp"]  # the data set's choice, not "-"


def test_compare_writes_csv_and_json(demo_once, capsys):
    demo = demo_once
    assert main(["compare", str(demo), "--format", "json"]) == 0
    runs = json.loads(capsys.readouterr().out)
    by_run = {Path(r["run"]).name: r for r in runs}
    assert set(by_run) == {"naive", "ume", "umt", "unimodal-a", "unimodal-b"}
    assert by_run["umt"]["settings"]["method.name"] == "umt"
    assert by_run["umt"]["scores"]["test_acc"] == RunDir(demo / "umt").result()["test_acc"]  # fractions, as result.json holds them
    assert main(["compare", str(demo), "--format", "csv"]) == 0
    rows = list(csv.DictReader(io.StringIO(capsys.readouterr().out)))
    assert [Path(r["run"]).name for r in rows] == [Path(r["run"]).name for r in runs]
    assert float(rows[0]["test_acc"]) == runs[0]["scores"]["test_acc"] and "method.name" in rows[0]
