"""`latefusion compare` puts runs of different settings side by side; `latefusion report` refuses to
average as seeds folders whose runs differ beyond the seed keys, naming the keys."""

import pytest
import yaml

from latefusion.cli import main
from latefusion.compare import compare_runs
from latefusion.errors import RunFolderError
from latefusion.seeds import check_same_settings, seed_folders
from latefusion.storage import read_json

FAST = ["data.name=synthetic-unimodal", "data.options.train_size=64", "data.options.val_size=32", "data.options.test_size=32",
        "data.batch_size=16", "train.epochs=1", "train.progress=false", "train.device=cpu"]


def sets(*settings):
    return [arg for s in settings for arg in ("--set", s)]


def test_compare_shows_the_differing_keys_scores_and_probes(tmp_path, capsys):
    a, b = tmp_path / "lr-small", tmp_path / "lr-large"
    assert main(["train", *sets(*FAST, "optim.lr=0.001"), "--out", str(a)]) == 0
    assert main(["train", *sets(*FAST, "optim.lr=0.01", "method.name=ogm_ge"), "--out", str(b)]) == 0
    assert main(["probe", str(a), "--steps", "5"]) == 0
    capsys.readouterr()

    assert main(["compare", str(a), str(b)]) == 0
    folder, _, header, rule, row_a, row_b = capsys.readouterr().out.splitlines()
    assert folder == f"runs in {tmp_path}"  # the runs are named from the folder they share
    assert header.split() == ["run", "method.name", "optim.lr", "val", "acc", "test", "acc", "val", "F1", "test", "F1", "probe:a", "probe:b"]
    result, probe = read_json(a / "result.json"), read_json(a / "probe.json")
    assert row_a.split() == [a.name, "naive", "0.001", *(f"{result[k] * 100:.1f}" for k in ("val_acc", "test_acc", "val_macro_f1", "test_macro_f1")),
                             *(f"{probe['results'][m]['test_acc'] * 100:.1f}" for m in ("a", "b"))]
    assert row_b.split()[1:3] == ["ogm_ge", "0.01"] and row_b.split()[-2:] == ["-", "-"]  # not probed
    assert compare_runs([a, b]).differing == ["method.name", "optim.lr"]  # train.epochs etc. are the same: not shown


def test_compare_refuses_a_folder_that_is_not_a_finished_run(tmp_path, capsys):
    (tmp_path / "empty").mkdir()
    assert main(["compare", str(tmp_path / "empty")]) == 2
    assert "is not a run folder" in capsys.readouterr().err


def test_compare_takes_a_several_seed_demo_folder_as_its_runs_seed_by_seed(tmp_path, capsys):
    for k in (0, 1):
        assert main(["train", *sets(*FAST, f"train.seed={k}"), "--out", str(tmp_path / "demo" / f"seed-{k}" / "naive")]) == 0
    capsys.readouterr()
    assert main(["compare", str(tmp_path / "demo")]) == 0
    folder, _, header, _, *rows = capsys.readouterr().out.splitlines()
    assert folder == f"runs in {tmp_path / 'demo'}" and header.split()[:2] == ["run", "train.seed"]
    assert [row.split()[:2] for row in rows] == [[f"seed-{k}/naive", str(k)] for k in (0, 1)]


def write_run(folder, **changes):
    config = {"data": {"name": "synthetic-unimodal", "options": {"seed": changes.get("data_seed", 0)}},
              "train": {"seed": changes.get("seed", 0), "epochs": changes.get("epochs", 3)},
              "method": {"name": "umt", "options": {"teachers": {"a": str(folder.parent / "unimodal-a")}}}}
    folder.mkdir(parents=True)
    (folder / "config.yaml").write_text(yaml.safe_dump(config))


def test_seed_folders_differing_only_in_the_seed_keys_are_seeds(tmp_path):
    for k in (0, 1):
        write_run(tmp_path / f"seed-{k}" / "umt", seed=k, data_seed=k)  # teachers point into each seed's own folder
    assert [p.name for p in seed_folders(tmp_path)] == ["seed-0", "seed-1"]


def test_seed_folders_differing_in_other_keys_are_refused_by_key(tmp_path):
    write_run(tmp_path / "seed-0" / "umt", seed=0)
    write_run(tmp_path / "seed-1" / "umt", seed=1, epochs=5)
    with pytest.raises(RunFolderError, match=r"differ beyond the seed keys \(train.seed, data.options.seed\), in train.epochs:\n"
                                             r"  umt: train.epochs: 3 in seed-0, 5 in seed-1"):
        seed_folders(tmp_path)
    with pytest.raises(RunFolderError, match="in train.epochs"):
        check_same_settings({"x": tmp_path / "seed-0", "y": tmp_path / "seed-1"})


def test_report_refuses_to_average_demo_seeds_of_different_settings(tmp_path, capsys):
    out = tmp_path / "demo"
    assert main(["demo", *sets(*FAST), "--seeds", "2", "--out", str(out)]) == 0
    capsys.readouterr()
    assert main(["report", str(out)]) == 0  # true repeats: averaged
    config = out / "seed-1" / "naive" / "config.yaml"
    config.write_text(config.read_text().replace("lr: 0.001", "lr: 0.002"))
    assert main(["report", str(out)]) == 2
    error = capsys.readouterr().err
    assert "cannot average seed-0, seed-1 as seeds" in error and "in optim.lr" in error and "naive: optim.lr: 0.001 in seed-0, 0.002 in seed-1" in error
