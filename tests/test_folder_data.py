"""Bring-your-own data: a data set converted on the fly to both documented forms, then the CLI."""

import csv
import json
import wave

import numpy as np
import pytest
from PIL import Image

from latefusion.cli import main
from latefusion.config import DataConfig
from latefusion.data import build_dataset
from latefusion.data.folder import DataFormatError

CLASSES = ["bird", "cat", "dog"]
RATE = 4000


def make_samples(n=90, seed=0):
    """Three classes; each modality carries a noisy class cue: an image with a bright band, a tone, a vector."""
    rng = np.random.default_rng(seed)
    samples = []
    for i in range(n):
        label = i % 3
        image = rng.uniform(0, 0.5, (8, 8))
        image[2 * label : 2 * label + 2] += 0.5
        t = np.arange(RATE // 4) / RATE
        tone = 0.3 * np.sin(2 * np.pi * (300 + 400 * label) * t) + 0.05 * rng.standard_normal(len(t))
        vector = rng.standard_normal(6) + 2.0 * np.eye(6)[label]
        split = "test" if i >= 72 else "train"  # no val split: the loader carves one
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
    assert main(["guide", str(tmp_path / "demo")]) == 0
    assert "choice: U" in capsys.readouterr().out


def test_bad_manifests_get_specific_messages(tmp_path):
    samples = make_samples(n=12)
    folder = write_manifest(tmp_path / "d", samples)
    manifest = folder / "manifest.csv"
    good = manifest.read_text()

    def expect(text, pattern):
        manifest.write_text(text)
        with pytest.raises(DataFormatError, match=pattern):
            build_dataset(DataConfig(name="folder", path=str(folder)))

    expect(good.replace("id,label,split", "id,labels,split"), r"missing column\(s\) \['label'\]")
    expect(good.replace("s3.png", "gone.png"), r"line 5 \(id 's3'\): file .*gone\.png for modality 'image' does not exist")
    expect(good.replace("s4,cat,train", "s4,cat,holdout"), r"unknown split value\(s\) \['holdout'\] \(first at sample 's4'\)")
    expect(good.replace("s11,dog,train", "s11,horse,test"), r"label\(s\) \['horse'\] appear in val/test but never in train")
    npy = (folder / "s1.npy").read_bytes()
    (folder / "s1.npy").write_bytes(npy[:-8])
    expect(good, r"line 3 \(id 's1'\): .*s1\.npy holds 16 of the 24 data bytes its header declares \(truncated-file\)")
    (folder / "s1.npy").write_bytes(npy)
    (folder / "s0.wav").write_bytes(b"RIFF....not audio")
    expect(good, r"s0\.wav is not a WAV file .*\(unreadable-file\)")
