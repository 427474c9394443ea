"""`latefusion predict`: a finished run's predictions on data, as CSV, agreeing with the run's own
saved test predictions, and refused on data of other modalities or classes."""

import csv

import numpy as np

from latefusion.cli import main
from latefusion.runs import RunDir
from latefusion.train import train


def test_predict_writes_the_runs_own_test_predictions_with_probabilities(tmp_path, tiny_config, capsys):
    run = tmp_path / "naive"
    train(tiny_config("train.epochs=1"), run)
    out = tmp_path / "predictions.csv"
    assert main(["predict", str(run), "--split", "val", "test", "--out", str(out)]) == 0
    assert f"wrote {out}: 400 predictions" in capsys.readouterr().out
    rows = list(csv.DictReader(out.open()))
    assert [r["split"] for r in rows] == ["val"] * 200 + ["test"] * 200
    names = RunDir(run).spec().class_names or [str(k) for k in range(RunDir(run).spec().num_classes)]
    saved = RunDir(run).predictions()["test"]
    test_rows = rows[200:]
    assert [r["predicted"] for r in test_rows] == [names[k] for k in saved.predicted]
    assert [r["label"] for r in test_rows] == [names[k] for k in saved.labels]
    probabilities = np.array([[float(r[f"p_{name}"]) for name in names] for r in rows])
    assert np.allclose(probabilities.sum(1), 1, atol=1e-4)  # six decimals per class
    assert [names[k] for k in probabilities.argmax(1)] == [r["predicted"] for r in rows]


def test_predict_refuses_data_the_run_was_not_trained_on(tmp_path, tiny_config, capsys):
    run = tmp_path / "naive"
    train(tiny_config("train.epochs=1"), run)
    assert main(["predict", str(run), "--set", "data.options.num_classes=5", "--out", str(tmp_path / "p.csv")]) == 2
    err = capsys.readouterr().err
    assert "cannot predict with" in err and "classes 5" in err and "Traceback" not in err
    assert not (tmp_path / "p.csv").exists()
