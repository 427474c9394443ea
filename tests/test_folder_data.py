"""Bring-your-own data: a data set converted on the fly to both documented forms, then the CLI."""

import csv
import json
import pickle
import re
import wave

import numpy as np
import pytest
from PIL import Image

from latefusion.cli import main
from latefusion.config import DataConfig
import torch

from latefusion.data import DATASETS, build_dataset
from latefusion.data.checks import check_bundle
from latefusion.data.folder import DataFormatError, read_image_file
from latefusion.data.media import read_image

CLASSES = ["bird", "cat", "dog"]
RATE = 4000


def make_samples(n=90, seed=0):
    """Three classes; each modality carries a noisy class cue: an image with a bright band, a tone, a vector.
    The last fifth is test; no val split: the loader carves one."""
    rng = np.random.default_rng(seed)
    samples = []
    for i in range(n):
        label = i % 3
        image = rng.uniform(0, 0.5, (8, 8))
        image[2 * label : 2 * label + 2] += 0.5
        t = np.arange(RATE // 4) / RATE
        tone = 0.3 * np.sin(2 * np.pi * (300 + 400 * label) * t) + 0.05 * rng.standard_normal(len(t))
        vector = rng.standard_normal(6) + 2.0 * np.eye(6)[label]
        split = "test" if i >= n * 4 // 5 else "train"
        samples.append((f"s{i}", CLASSES[label], split, image, tone, vector))
    return samples


def write_manifest(folder, samples):
    folder.mkdir()
    with open(folder / "manifest.csv", "w", newline="") as handle:
        writer = csv.writer(handle)
        writer.writerow(["id", "label", "split", "image", "audio", "vector"])
        for sid, label, split, image, tone, vector in samples:
            Image.fromarray((image.clip(0, 1) * 255).astype(np.uint8)).save(folder / f"{sid}.png")
            with wave.open(str(folder / f"{sid}.wav"), "wb") as out:
                out.setnchannels(1), out.setsampwidth(2), out.setframerate(RATE)
                out.writeframes((tone * 32767).astype("<i2").tobytes())
            np.save(folder / f"{sid}.npy", vector.astype(np.float32))
            writer.writerow([sid, label, split, f"{sid}.png", f"{sid}.wav", f"{sid}.npy"])
    return folder


def write_npz(path, samples):
    np.savez(path, image=np.stack([s[3] for s in samples]).astype(np.float32)[:, None],
             vector=np.stack([s[5] for s in samples]), label=np.array([s[1] for s in samples]),
             split=np.array([s[2] for s in samples]), id=np.array([s[0] for s in samples]))
    return path


def test_manifest_reads_every_file_type(tmp_path):
    bundle = build_dataset(DataConfig(name="folder", path=str(write_manifest(tmp_path / "d", make_samples()))))
    assert bundle.class_names == CLASSES
    shapes = {m.name: (m.kind, m.shape) for m in bundle.modalities}
    assert shapes == {"image": ("image", (1, 8, 8)), "audio": ("audio", (RATE // 4,)), "vector": ("vector", (6,))}
    assert bundle.encoders["audio"] == {"name": "audio-cnn", "options": {"sample_rate": RATE}}
    sizes = {s: len(bundle.splits[s]) for s in ("train", "val", "test")}
    assert sizes == {"train": 61, "val": 11, "test": 18}  # 15% of the 72 train samples carved as val


@pytest.mark.slow
@pytest.mark.parametrize("form", ["manifest", "npz"])
def test_cli_train_and_demo_on_own_data(tmp_path, form, capsys):
    samples = make_samples()
    data = write_manifest(tmp_path / "d", samples) if form == "manifest" else write_npz(tmp_path / "d.npz", samples)
    fast = ["--set", "train.epochs=2", "--set", "train.progress=false", "--set", "model.feature_dim=16"]
    assert main(["train", "--data", str(data), "--out", str(tmp_path / "run"), *fast]) == 0
    result = json.loads((tmp_path / "run" / "result.json").read_text())
    assert 0 <= result["test_acc"] <= 1 and result["n_test"] == 18
    assert json.loads((tmp_path / "run" / "data.json").read_text())["class_names"] == CLASSES
    assert main(["demo", "--data", str(data), "--out", str(tmp_path / "demo"), *fast]) == 0
    summary = json.loads((tmp_path / "demo" / "summary.json").read_text())
    modalities = ["image", "audio", "vector"] if form == "manifest" else ["image", "vector"]
    assert summary["modalities"] == modalities and set(summary["probe"]["naive"]) == set(modalities)
    capsys.readouterr()
    assert main(["guide", str(tmp_path / "demo")]) == 0
    # Two epochs on 60 samples: the guide says the runs cannot support a verdict, and why.
    out = capsys.readouterr().out
    assert out.startswith("Verdict: INCONCLUSIVE") and "Inconclusive (leaning U" in out, out


def expect_format_error(folder, pattern, **options):
    with pytest.raises(DataFormatError, match=pattern):
        build_dataset(DataConfig(name="folder", path=str(folder), options=options))


def test_bad_manifests_get_specific_messages(tmp_path):
    folder = write_manifest(tmp_path / "d", make_samples(n=12))
    manifest = folder / "manifest.csv"
    good = manifest.read_text()

    def expect(text, pattern):
        manifest.write_text(text)
        expect_format_error(folder, pattern)

    expect(good.replace("id,label,split", "id,labels,split"), r"missing column\(s\) \['label'\]")
    expect(good.replace("s4,cat,train", "s4,cat,holdout"), r"unknown split value\(s\) \['holdout'\] \(first at sample 's4'\)")
    expect(good.replace("vector\n", "image\n", 1), r"column\(s\) \['image'\] appear more than once")
    expect(good.replace("vector\n", "vec.tor\n", 1), r"column 'vec\.tor' holds no numbers \(first cell 's0\.npy'\); a column named "
           r"<modality>\.<feature> is a number column .* a file column's name cannot contain '\.'")
    expect(good.replace("vector\n", "training\n", 1), r"'training' cannot name a modality")
    expect(good.replace("bird", "cat").replace("dog", "cat"), r"the train split holds 1 class\(es\) \['cat'\]; a classifier needs at least two")
    manifest.write_bytes(good.replace("s1,", "s\xe9,").encode("latin-1"))
    expect_format_error(folder, r"manifest\.csv: not UTF-8 text \(byte 0xe9 at offset \d+\); save it as UTF-8")
    manifest.write_bytes(b"\xef\xbb\xbf" + good.encode())  # a UTF-8 byte order mark, as spreadsheet programs write it
    assert build_dataset(DataConfig(name="folder", path=str(folder))).class_names == CLASSES


def test_images_read_as_before(tmp_path):
    grey = np.arange(64, dtype=np.uint8).reshape(8, 8) * 4
    rgb = np.random.default_rng(0).integers(0, 256, (6, 5, 3), dtype=np.uint8)
    Image.fromarray(grey).save(tmp_path / "grey.png")
    Image.fromarray(rgb).save(tmp_path / "rgb.png")
    np.testing.assert_array_equal(read_image_file(tmp_path / "grey.png"), grey[None].astype(np.float32) / 255)
    np.testing.assert_array_equal(read_image_file(tmp_path / "rgb.png"), rgb.transpose(2, 0, 1).astype(np.float32) / 255)
    assert read_image(tmp_path / "rgb.png", 4).shape == (4, 4, 3) and read_image(tmp_path / "rgb.png", 4, "L").shape == (4, 4)
    assert read_image(tmp_path / "grey.png").shape == (8, 8, 3) and read_image(tmp_path / "grey.png", mode=None).shape == (8, 8)


def damage(folder, outside):
    """A manifest with one bad input of each kind; returns the (kind, place) each should be reported as."""
    (folder / "s1.npy").write_bytes((folder / "s1.npy").read_bytes()[:-8])  # train[1]
    (folder / "s2.wav").write_bytes(b"RIFF....not audio")  # train[2]
    (folder / "s3.png").unlink()  # train[3]
    (folder / "s4.png").write_bytes(b"\x89PNG\r\n junk")  # train[4]
    np.save(folder / "s5.npy", np.zeros(7, np.float32))  # train[5]
    np.save(folder / "s6.npy", np.ones(6, np.complex64))  # train[6]
    (outside / "v.npy").write_bytes((folder / "s7.npy").read_bytes())
    (folder / "link.npy").symlink_to(outside / "v.npy")
    text = (folder / "manifest.csv").read_text()
    text = text.replace("s7.npy", "link.npy").replace("s8.npy", "../outside/v.npy").replace("s9.npy", str(outside / "v.npy"))
    text = text.replace("s10,", "s0,").replace("s13,cat,test", "s11,cat,test").replace("s14,dog,test", "s14,horse,test")
    (folder / "manifest.csv").write_text(text)
    return {
        ("truncated-file", "train[1]"), ("unreadable-file", "train[2]"), ("missing-file", "train[3]"), ("unreadable-file", "train[4]"),
        ("wrong-shape", "train[5]"), ("non-numeric", "train[6]"), ("outside-folder", "train[7]"), ("outside-folder", "train[8]"),
        ("outside-folder", "train[9]"), ("duplicate-id", "train[10]"), ("leaked-id", "train[11]"), ("unseen-label", "test[1]"),
    }


def test_check_data_lists_every_bad_sample_and_skip_bad_drops_them(tmp_path, capsys):
    samples = make_samples(n=15)
    samples = [(sid, label, "val" if sid == "s12" else split, *rest) for sid, label, split, *rest in samples]
    folder = write_manifest(tmp_path / "d", samples)
    (tmp_path / "outside").mkdir()
    expected = damage(folder, tmp_path / "outside")
    assert main(["check-data", str(folder)]) == 1
    report = capsys.readouterr().out
    reported = {(kind, where) for kind, where in re.findall(r"\n  ([a-z-]+) \(\d+\):|\n    (\S+): ", report) if kind or where}
    problems = check_bundle(DATASETS.get("folder")(DataConfig(name="folder", path=str(folder))))
    assert {(p.kind, p.where) for p in problems} == expected and reported
    messages = {(p.kind, p.where): p.message for p in problems}
    assert messages["truncated-file", "train[1]"] == "line 3 (id 's1'), modality 'vector': s1.npy holds 16 of the 24 data bytes its header declares"
    assert messages["missing-file", "train[3]"] == "line 5 (id 's3'), modality 'image': s3.png does not exist"
    assert messages["unreadable-file", "train[2]"].startswith("line 4 (id 's2'), modality 'audio': s2.wav is not a WAV file")
    assert messages["wrong-shape", "train[5]"].endswith("s5.npy has shape (7,), the other samples (6,); every sample of a modality needs the same shape")
    assert "holds complex64 values" in messages["non-numeric", "train[6]"]
    assert messages["unreadable-file", "train[4]"].startswith("line 6 (id 's4'), modality 'image': s4.png is not a readable image (cannot identify")
    assert messages["outside-folder", "train[7]"].startswith("line 9 (id 's7'), modality 'vector': link.npy leads outside the data folder (to ")
    assert "../outside/v.npy leads outside the data folder" in messages["outside-folder", "train[8]"]
    assert "v.npy is an absolute path; set data.options.allow_outside_paths=true" in messages["outside-folder", "train[9]"]
    assert messages["duplicate-id", "train[10]"] == "line 12 (id 's0'): the same id as line 2 (id 's0') in split 'train'"
    assert messages["unseen-label", "test[1]"] == "line 16 (id 's14'): label 'horse' appears in test but never in train; a classifier cannot learn it"
    for kind, where in expected:
        assert f"\n  {kind} (" in report and f"\n    {where}: " in report

    kept = build_dataset(DataConfig(name="folder", path=str(folder), skip_bad=True))
    assert [len(kept.splits[s]) for s in ("train", "val", "test")] == [1, 1, 1]
    assert check_bundle(kept) == [] and kept.splits["train"].sample_ids() == ["s0"]
    assert "skip_bad: dropped 12 bad samples (train 11, test 1)" in capsys.readouterr().err
    with pytest.raises(DataFormatError, match=r"11 problem\(s\) with single samples:\n  line 3 \(id 's1'\)"):
        build_dataset(DataConfig(name="folder", path=str(folder), check=False))

    allowed = check_bundle(DATASETS.get("folder")(DataConfig(name="folder", path=str(folder), options={"allow_outside_paths": True})))
    assert not any(p.kind == "outside-folder" for p in allowed) and len(allowed) == len(expected) - 3


def test_kept_samples_declare_what_the_split_declares(tmp_path):
    bundle = build_dataset(DataConfig(name="folder", path=str(write_manifest(tmp_path / "d", make_samples(n=12)))))
    split = bundle.splits["train"]
    split.augments = True
    kept = split.subset([0, 2])
    assert kept.augments and kept.sample_ids() == [split.sample_ids()[0], split.sample_ids()[2]]
    assert torch.equal(kept.labels, split.labels[[0, 2]]) and kept.check() == []
    assert kept.content_hash() != split.content_hash() != split.subset([0, 3]).content_hash()
    assert pickle.loads(pickle.dumps(kept)).sample_ids() == kept.sample_ids()


def test_numeric_and_text_labels(tmp_path):
    def classes(labels):
        path = tmp_path / "l.npz"
        n = len(labels)
        np.savez(path, x=np.arange(2 * n, dtype=np.float32), label=np.array(labels * 2), split=np.array(["train"] * n + ["test"] * n))
        return build_dataset(DataConfig(name="folder", path=str(path))).class_names

    assert classes(["1", "1.0", "2", " 2", "-10", "-2"] * 2) == ["-10", "-2", "1", "2"]
    assert classes([1.0, 2.5, 1, -3] * 3) == ["-3", "1", "2.5"]
    assert classes(["cat", "cat ", "dog", "dog"] * 2) == ["cat", "dog"]
    assert classes(["10", "9", "x", "10.0"] * 2) == ["9", "10", "10.0", "x"]  # not all numbers: text, numbers first by value


def test_npz_arrays_that_are_not_samples_of_numbers_are_refused_by_name(tmp_path):
    def expect(pattern, **arrays):
        path = tmp_path / "bad.npz"
        base = {"x": np.zeros((4, 2), np.float32), "label": np.array([0, 1, 0, 1]), "split": np.array(["train"] * 4)}
        np.savez(path, **{**base, **arrays})
        expect_format_error(path, pattern)

    expect(r"array 'x' holds complex64 values", x=np.zeros((4, 2), np.complex64))
    expect(r"array 'x' holds datetime64\[D\] values", x=np.zeros((4, 2), "datetime64[D]"))
    expect(r"array 'x' holds \[\('a', '<i4'\)\] values", x=np.zeros(4, [("a", "<i4")]))
    expect(r"array 'x' holds Python objects", x=np.array([1, "a", None, 2.0], dtype=object))
    expect(r"`label` has shape \(\); expected one value per sample", label=np.array(3))
    expect(r"`label` holds complex128 values", label=np.zeros(4, complex))
    expect(r"modality 'x' has samples of shape \(1, 2, 2, 2\); the encoders take .* at most 3 dimensions", x=np.zeros((4, 1, 2, 2, 2)))
    expect(r"'a\.b' cannot name a modality", **{"a.b": np.zeros((4, 2))})


@pytest.mark.slow
def test_inputs_that_pass_check_data_train(tmp_path):
    """A one-feature modality (a scalar .npy and a 1-D .npz array) and wav clips shorter than one STFT window."""
    folder = tmp_path / "d"
    folder.mkdir()
    rows = ["id,label,split,feature,audio"]
    rng = np.random.default_rng(0)
    for i in range(24):
        np.save(folder / f"{i}.npy", np.float32(i % 2 + rng.normal()))
        with wave.open(str(folder / f"{i}.wav"), "wb") as out:
            out.setnchannels(1), out.setsampwidth(2), out.setframerate(RATE)
            out.writeframes((rng.normal(size=10 + i) * 3000).astype("<i2").tobytes())
        rows.append(f"{i},{i % 2},{'test' if i >= 18 else 'train'},{i}.npy,{i}.wav")
    (folder / "manifest.csv").write_text("\n".join(rows) + "\n")
    npz = tmp_path / "d.npz"
    np.savez(npz, feature=rng.normal(size=24).astype(np.float32), label=np.arange(24) % 2, split=np.array(["train"] * 18 + ["test"] * 6))
    fast = ["--set", "train.epochs=1", "--set", "train.progress=false", "--set", "model.feature_dim=8"]
    for data, name in ((folder, "folder"), (npz, "npz")):
        assert main(["check-data", str(data)]) == 0
        assert main(["train", "--data", str(data), "--out", str(tmp_path / name), *fast]) == 0
    assert json.loads((tmp_path / "folder" / "data.json").read_text())["modalities"][0]["shape"] == [1]
