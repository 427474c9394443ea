"""`latefusion predict`: a finished run's predictions on data, as CSV, agreeing with the run's own
saved test predictions, and refused on data of other modalities or classes; on new data without
labels, the predictions the same samples get with labels, and named errors for what the run cannot take."""

import csv
import wave

import numpy as np
import pytest
import torch
from PIL import Image

from latefusion.cli import main
from latefusion.config import DataConfig
from latefusion.resolve import resolve_config
from latefusion.data import DataSpec, Modality, build_dataset
from latefusion.data.folder import FolderOptions, unlabeled_samples
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


# New data without labels: a folder run predicts every sample of a manifest folder or .npz file that
# has no label (and no split) column, read to the run's shapes, as it predicts the same samples labeled.

CLASSES = ["bird", "cat", "dog"]
RATE = 4000


def sample(i):
    """Sample i's class and its cue in each modality: a bright band in an 8x8 image, a tone of 0.25 s
    (a whole number of periods, so resampling it is exact), a vector."""
    rng = np.random.default_rng(i)
    label = i % 3
    image = rng.uniform(0, 0.5, (8, 8))
    image[2 * label : 2 * label + 2] += 0.5
    return label, image, 300 + 400 * label, rng.uniform(0, 2 * np.pi), rng.standard_normal(6) + 2.0 * np.eye(6)[label]


def write_folder(folder, indices, columns=("id", "label", "split", "image", "audio", "vector"), rate=RATE, labels=True):
    """A manifest folder of samples `indices` (s24 on in test), in that order, with `columns`; without
    `labels`, every label cell empty."""
    folder.mkdir()
    with open(folder / "manifest.csv", "w", newline="") as handle:
        writer = csv.writer(handle)
        writer.writerow(columns)
        for i in indices:
            label, image, frequency, phase, vector = sample(i)
            sid = f"s{i}"
            Image.fromarray((image.clip(0, 1) * 255).astype(np.uint8)).save(folder / f"{sid}.png")
            tone = 0.3 * np.sin(2 * np.pi * frequency * np.arange(rate // 4) / rate + phase)
            with wave.open(str(folder / f"{sid}.wav"), "wb") as clip:
                clip.setnchannels(1), clip.setsampwidth(2), clip.setframerate(rate)
                clip.writeframes((tone * 32767).astype("<i2").tobytes())
            np.save(folder / f"{sid}.npy", vector.astype(np.float32))
            cells = {"id": sid, "label": CLASSES[label] if labels else "", "split": "test" if i >= 24 else "train",
                     "image": f"{sid}.png", "audio": f"{sid}.wav", "vector": f"{sid}.npy"}
            writer.writerow([cells[c] for c in columns])
    return folder


@pytest.fixture(scope="module")
def folder_run(tmp_path_factory):
    """A run trained on a labeled folder, and its predictions of every sample (train, val, test) by id."""
    root = tmp_path_factory.mktemp("folder-run")
    data = write_folder(root / "labeled", range(30))
    run = root / "run"
    # Trained enough that the probabilities move off a third: reading the audio at another rate than the
    # run's changes them by about 0.02, read at the run's by 4e-5 (int16 rounding at each rate).
    train(resolve_config(None, ["data.name=folder", f"data.path={data}", "train.epochs=4", "train.progress=false",
                                "model.feature_dim=16", "data.batch_size=8", "optim.lr=0.01"]), run)
    out = root / "labeled.csv"
    assert main(["predict", str(run), "--split", "train", "val", "test", "--out", str(out)]) == 0
    return run, data, {row["id"]: row for row in csv.DictReader(out.open())}


def probabilities(row):
    return [float(row[f"p_{name}"]) for name in CLASSES]


@pytest.mark.parametrize("columns, rate, labels, atol", [
    (("vector", "id", "audio", "image"), RATE, True, 1e-5),           # no label or split column, columns in another order
    (("id", "label", "split", "image", "audio", "vector"), RATE, False, 1e-5),  # a label column of empty cells
    (("id", "image", "audio", "vector"), 2 * RATE, True, 2e-4),       # audio at twice the rate: resampled to the run's
])
def test_unlabeled_manifest_gets_the_predictions_of_the_same_samples_labeled(folder_run, tmp_path, capsys, columns, rate, labels, atol):
    run, _, labeled = folder_run
    order = list(range(29, -1, -1))
    data = write_folder(tmp_path / "new", order, columns, rate, labels)
    out = tmp_path / "new.csv"
    assert main(["predict", str(run), "--data", str(data), "--out", str(out)]) == 0
    assert f"wrote {out}: 30 predictions by {run} (every sample of {data}, which gives no labels)" in capsys.readouterr().out
    rows = list(csv.DictReader(out.open()))
    assert list(rows[0]) == ["id", "predicted", *(f"p_{name}" for name in CLASSES)]
    assert [row["id"] for row in rows] == [f"s{i}" for i in order]
    assert [row["predicted"] for row in rows] == [labeled[row["id"]]["predicted"] for row in rows]
    assert np.allclose([probabilities(row) for row in rows], [probabilities(labeled[row["id"]]) for row in rows], atol=atol, rtol=0)


def test_unlabeled_npz_gets_the_predictions_of_the_same_samples_labeled(folder_run, tmp_path):
    run, data, labeled = folder_run
    bundle = build_dataset(DataConfig(name="folder", path=str(data)))
    splits = [bundle.splits[s] for s in ("train", "val", "test")]
    ids = [i for split in splits for i in split.sample_ids()]
    np.savez(tmp_path / "new.npz", id=np.array(ids), **{m: torch.cat([split.inputs[m] for split in splits]).numpy() for m in ("image", "audio", "vector")})
    assert main(["predict", str(run), "--data", str(tmp_path / "new.npz"), "--out", str(tmp_path / "new.csv")]) == 0
    rows = list(csv.DictReader((tmp_path / "new.csv").open()))
    assert [row["id"] for row in rows] == ids and "label" not in rows[0]
    assert np.allclose([probabilities(row) for row in rows], [probabilities(labeled[i]) for i in ids], atol=1e-5, rtol=0)


def test_unlabeled_images_and_audio_are_brought_to_the_runs_form(tmp_path):
    """Greyscale images repeated to RGB where the run's are RGB, at the run's image_size; audio
    resampled to the rate of the run's audio encoder and zero-padded to the run's clip length."""
    data = write_folder(tmp_path / "new", range(2), ("id", "image", "audio", "vector"), rate=2 * RATE)
    spec = DataSpec("folder", [Modality("image", "image", (3, 4, 4)), Modality("audio", "audio", (RATE // 2,)), Modality("vector", "vector", (6,))],
                    3, CLASSES, {"audio": {"name": "audio-cnn", "options": {"sample_rate": RATE}}})
    split = unlabeled_samples(data, FolderOptions(image_size=4), spec)
    image, audio = split.inputs["image"], split.inputs["audio"]
    assert image.shape == (2, 3, 4, 4) and torch.equal(image[:, 0], image[:, 1]) and torch.equal(image[:, 0], image[:, 2])
    assert audio.shape == (2, RATE // 2) and not audio[:, RATE // 4:].any()
    for i in range(2):
        _, _, frequency, phase, _ = sample(i)
        tone = 0.3 * np.sin(2 * np.pi * frequency * np.arange(RATE // 4) / RATE + phase)
        assert np.allclose(audio[i, : RATE // 4].numpy(), tone, atol=1e-3)
    assert split.sample_ids() == ["s0", "s1"] and torch.equal(split.inputs["vector"][1], torch.from_numpy(np.load(data / "s1.npy")))


def predict_error(run, data, capsys, *extra):
    out = data.parent / "p.csv"
    assert main(["predict", str(run), "--data", str(data), "--out", str(out), *extra]) == 2
    assert not out.exists()
    err = capsys.readouterr().err
    assert "Traceback" not in err
    return err


def test_unlabeled_data_the_run_cannot_take_are_named(folder_run, tmp_path, capsys):
    run, _, _ = folder_run
    no_id = write_folder(tmp_path / "no-id", range(3), ("image", "audio", "vector"))
    assert f"{no_id / 'manifest.csv'}: missing column(s) ['id']; expected columns id and one per modality" in predict_error(run, no_id, capsys)
    no_audio = write_folder(tmp_path / "no-audio", range(3), ("id", "image", "vector"))
    assert (f"{no_audio / 'manifest.csv'}: no column for the run's modality(ies) ['audio']; the run's modalities are "
            "['image', 'audio', 'vector']") in predict_error(run, no_audio, capsys)
    swapped = write_folder(tmp_path / "swapped", range(3), ("id", "audio", "image", "vector"))
    manifest = swapped / "manifest.csv"
    manifest.write_text(manifest.read_text().replace("id,audio,image", "id,image,audio"))
    assert "modality 'image' holds audio files; the run's model takes image samples of shape (1, 8, 8)" in predict_error(run, swapped, capsys)

    bad = write_folder(tmp_path / "bad", range(5), ("id", "image", "audio", "vector"))
    np.save(bad / "s1.npy", np.zeros(7, np.float32))
    Image.fromarray(np.zeros((6, 10), np.uint8)).save(bad / "s2.png")
    (bad / "manifest.csv").write_text((bad / "manifest.csv").read_text().replace("s3.wav", ""))
    np.save(bad / "s4.npy", np.array([0, 1, np.nan, 0, 0, 0], np.float32))
    err = predict_error(run, bad, capsys)
    assert f"{bad}: 4 problem(s) with single samples:" in err
    assert "line 3 (id 's1'), modality 'vector': s1.npy has shape (7,), the run's model takes (6,)\n" in err
    assert "line 4 (id 's2'), modality 'image': s2.png has shape (1, 6, 10), the run's model takes (1, 8, 8); set data.options.image_size" in err
    assert "line 5 (id 's3'), modality 'audio': no file given" in err
    assert "line 6 (id 's4'), modality 'vector': holds NaN or Inf values" in err

    good = write_folder(tmp_path / "good", range(3), ("id", "image", "audio", "vector"))
    assert f"--split val: {good} labels no sample, so it has no splits" in predict_error(run, good, capsys, "--split", "val")
    np.savez(tmp_path / "wide.npz", image=np.zeros((2, 1, 8, 8)), audio=np.zeros((2, RATE // 4)), vector=np.zeros((2, 7)))
    assert "wide.npz: array 'vector' holds samples of shape (7,); the run's model takes (6,)" in predict_error(run, tmp_path / "wide.npz", capsys)


def test_predict_help_says_how_to_give_new_data_without_labels(capsys):
    with pytest.raises(SystemExit):
        main(["predict", "--help"])
    text = " ".join(capsys.readouterr().out.split())
    assert "New data without labels: a manifest folder (an id column and the run's modality columns; no label or split column needed)" in text
