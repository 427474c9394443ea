"""The field's own benchmarks, CREMA-D, Kinetics-Sounds and AVE, on tiny raw copies of their releases
built on the fly (real wav, FLV and mp4 written with PyAV): prepare -> `latefusion train` (naive, one
epoch, tiny) -> probe, what prepare reports for damaged or missing files, and the split rules."""

from __future__ import annotations

import json
from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest

from latefusion.cli import main
from latefusion.data.carve import carve_validation
from latefusion.data.cremad import CremaDOptions, CremaDRecipe, frames_per_second
from latefusion.data.kinetics_sounds import KineticsSoundsOptions, KineticsSoundsRecipe, read_class_list
from latefusion.errors import DataError
from latefusion.runs import RunDir

from test_datasets import CONFIGS, TINY, prepare_cli, shard_arrays, shard_ids, shard_labels, tiny_encoders

MODALITIES = ["audio", "visual"]


def train_naive_and_probe(dataset: str, prepared: Path, runs: Path, *extra: str) -> dict:
    sets = [arg for item in [f"data.path={prepared}", *TINY, *tiny_encoders(MODALITIES), *extra] for arg in ("--set", item)]
    assert main(["train", "--config", str(CONFIGS / dataset / "naive.yaml"), "--out", str(runs / "naive"), *sets]) == 0
    assert main(["probe", str(runs / "naive"), "--steps", "20"]) == 0
    assert set(json.loads((runs / "naive" / "probe.json").read_text())["results"]) == set(MODALITIES)
    return RunDir(runs / "naive").result()


def touch_cremad(root: Path, actors: int, emotions=("ANG", "HAP", "SAD")) -> list[str]:
    """Empty files with CREMA-D's names: enough for a scan, which reads no media."""
    names = [f"{1001 + a}_{s}_{e}_XX" for a in range(actors) for s in ("DFA", "ITS") for e in emotions]
    for folder, suffix in (("AudioWAV", "wav"), ("VideoFlash", "flv")):
        (root / folder).mkdir(parents=True, exist_ok=True)
        for name in names:
            (root / folder / f"{name}.{suffix}").touch()
    return names


def carved(recipe, src: Path, options) -> list:
    """The samples of a scan with their splits after validation is carved, as `prepare` does it."""
    scan = recipe.scan(src, options)
    splits = carve_validation([s.split for s in scan.samples], options.val_fraction, options.seed, groups=[s.group for s in scan.samples])
    return [replace(s, split=split) for s, split in zip(scan.samples, splits)]


# --- CREMA-D ----------------------------------------------------------------------------------------

@pytest.mark.parametrize("seed", [0, 1, 2])
def test_cremad_default_split_is_actor_disjoint(tmp_path, seed):
    touch_cremad(tmp_path, actors=20)
    options = CremaDOptions(seed=seed, val_fraction=0.15)
    samples = carved(CremaDRecipe(), tmp_path, options)
    actors = {split: {s.id[:4] for s in samples if s.split == split} for split in ("train", "val", "test")}
    assert all(actors.values())
    assert actors["train"].isdisjoint(actors["val"]) and actors["train"].isdisjoint(actors["test"]) and actors["val"].isdisjoint(actors["test"])
    assert len(actors["test"]) == 4  # 20% of 20 actors
    assert sum(map(len, actors.values())) == 20 and len(samples) == 20 * 6
    assert all(s.group == s.id[:4] for s in samples)
    # Seeded: the same seed draws the same actors, another seed others.
    again = carved(CremaDRecipe(), tmp_path, options)
    assert [(s.id, s.split) for s in again] == [(s.id, s.split) for s in samples]


def test_cremad_split_lists_warns_about_shared_actors(tmp_path):
    names = touch_cremad(tmp_path, actors=4)
    lists = tmp_path / "ogm"
    lists.mkdir()
    # OGM-GE's lists split by clip: actor 1001 is in both; one listed clip has no file; one clip is unlisted.
    train = [n for n in names if n.startswith(("1001_DFA", "1002", "1003"))]
    test = [n for n in names if n.startswith(("1001_ITS", "1004"))][:-1]
    (lists / "train.csv").write_text("".join(f"{n},{n.split('_')[2]}\n" for n in train))
    (lists / "test.csv").write_text("\ufeff" + "".join(f"{n},{n.split('_')[2]}\n" for n in test) + "1090_DFA_ANG_XX,ANG\n")
    scan = CremaDRecipe().scan(tmp_path, CremaDOptions(split_lists=str(lists)))
    assert len(scan.warnings) == 1 and "1 actors in both train and test" in scan.warnings[0]
    assert {s.id: s.split for s in scan.samples} == {**{n: "train" for n in train}, **{n: "test" for n in test}}
    why = {s["id"]: s["why"] for s in scan.skipped}
    assert set(why) == {names[-1], "1090_DFA_ANG_XX"}
    assert "neither train.csv nor test.csv" in why[names[-1]] and "has no file" in why["1090_DFA_ANG_XX"]
    # A relative DIR is also looked for under RAW.
    relative = CremaDRecipe().scan(tmp_path, CremaDOptions(split_lists="ogm"))
    assert [(s.id, s.split) for s in relative.samples] == [(s.id, s.split) for s in scan.samples] and len(relative.warnings) == 1
    with pytest.raises(DataError, match="train.csv is missing"):
        CremaDRecipe().scan(tmp_path, CremaDOptions(split_lists=str(tmp_path / "nowhere")))


def test_cremad_scan_reports_foreign_names_and_a_missing_folder(tmp_path):
    touch_cremad(tmp_path, actors=1)
    (tmp_path / "AudioWAV" / "1001_DFA_XYZ_XX.wav").touch()  # not one of the 6 emotions
    (tmp_path / "VideoFlash" / "readme.flv").touch()
    scan = CremaDRecipe().scan(tmp_path, CremaDOptions())
    assert {s["id"] for s in scan.skipped} == {"1001_DFA_XYZ_XX", "readme"}
    assert scan.class_names == ["ANG", "DIS", "FEA", "HAP", "NEU", "SAD"]
    assert {s.label for s in scan.samples} == {0, 3, 5}
    with pytest.raises(DataError, match="VideoFlash-nowhere is missing"):
        CremaDRecipe().scan(tmp_path, CremaDOptions(video="VideoFlash-nowhere"))


class FakeFrame:
    def __init__(self, index: int, time: float) -> None:
        self.index, self.time = index, time

    def to_ndarray(self, width: int, height: int, format: str) -> np.ndarray:
        return np.full((height, width, 3), self.index, np.uint8)


def test_cremad_frames_at_one_per_second_wrap_around():
    frames = [FakeFrame(i, 0.04 + i / 10) for i in range(25)]  # 2.5 s at 10 fps, starting at 0.04 s
    picked = frames_per_second(frames, 4, 2)[:, 0, 0, 0].tolist()
    assert picked == [5, 15, 0, 10]  # 0.5 s, 1.5 s, then 2.5 s and 3.5 s of a 2.5 s clip wrap to 0.0 s and 1.0 s
    assert frames_per_second(frames[:3], 1, 2)[:, 0, 0, 0].tolist() == [2]  # 0.3 s long: 0.5 s wraps to 0.2 s


@pytest.mark.slow
def test_cremad_prepare_train_probe(tmp_path, capsys):
    from raw_layouts import colour, dominant_frequency, make_cremad, tone

    raw, prepared = tmp_path / "raw", tmp_path / "prepared"
    names = make_cremad(raw, actors=5, mp4=("1002_DFA_HAP_XX",))
    (raw / "VideoFlash" / "1003_DFA_ANG_XX.flv").write_bytes(b"FLV\x01 cut short")  # damaged video
    (raw / "VideoFlash" / "1004_DFA_SAD_XX.flv").unlink()  # video missing
    wav = raw / "AudioWAV" / "1005_DFA_NEU_XX.wav"
    wav.write_bytes(wav.read_bytes()[:44])  # a header and no samples, as a few files of the release are

    report = prepare_cli("crema-d", raw, prepared, "size=32", "frames=2", "val_fraction=0.25", "test_fraction=0.2")
    why = {item["id"]: item["why"] for item in report["skipped"]}
    assert set(why) == {"1003_DFA_ANG_XX", "1004_DFA_SAD_XX", "1005_DFA_NEU_XX"}
    assert "1003_DFA_ANG_XX.flv: not a readable media file" in why["1003_DFA_ANG_XX"]
    assert "missing file" in why["1004_DFA_SAD_XX"] and "1004_DFA_SAD_XX.flv" in why["1004_DFA_SAD_XX"]
    assert "1005_DFA_NEU_XX.wav" in why["1005_DFA_NEU_XX"]
    assert report["listed"] == 30 and sum(report["written"].values()) == 27
    groups = report["groups"]
    assert [len(groups[s]) for s in ("train", "val", "test")] == [3, 1, 1] and not report["warnings"]
    for split in ("train", "val", "test"):  # the shards hold the actors the report names, and only those
        assert {i[:4] for i in shard_ids(prepared, split)} == set(groups[split])

    # Audio: 16 kHz wav -> 22.05 kHz, tiled to 3 s, tone kept; frames: FLV and mp4 alike, colour kept.
    audio, visual, labels = shard_arrays(prepared, "train", "audio"), shard_arrays(prepared, "train", "visual"), shard_labels(prepared, "train")
    assert audio.shape[1:] == (66150,) and visual.shape[1:] == (2, 32, 32, 3)
    for wave, label in zip(audio, labels):
        assert abs(dominant_frequency(wave, 22050) - tone(label)) < 5
    for frames, label in zip(visual, labels):
        np.testing.assert_allclose(frames.mean((0, 1, 2)), colour(label % 3), atol=8)
    assert "1002_DFA_HAP_XX" in names

    result = train_naive_and_probe("crema-d", prepared, tmp_path / "runs", "data.options.visual.crop=32")
    assert result["n_test"] == len(shard_ids(prepared, "test"))

    # OGM-GE's lists: a warning on stderr and in the report.
    lists = tmp_path / "ogm"
    lists.mkdir()
    (lists / "train.csv").write_text("".join(f"{n},{n.split('_')[2]}\n" for n in names[:20]))
    (lists / "test.csv").write_text("".join(f"{n},{n.split('_')[2]}\n" for n in names[20:]))
    capsys.readouterr()
    listed = prepare_cli("crema-d", raw, tmp_path / "ogm-prepared", "size=32", f"split_lists={lists}")
    assert "warning: prepare crema-d: the split lists" in capsys.readouterr().err
    assert listed["warnings"] and listed["written"]["test"] == 10 - 2  # 1004 missing, 1005 empty


# --- Kinetics-Sounds ----------------------------------------------------------------------------------

def test_kinetics_sounds_packaged_list_has_31_classes():
    names, where = read_class_list(Path("."), None)
    assert len(names) == 31 == len(set(names)) and "kinetics_sounds_31.txt" in where
    assert names == sorted(names) and "playing bagpipes" in names and "tapping pen" in names


def test_kinetics_sounds_refuses_classes_the_annotations_lack(tmp_path):
    from raw_layouts import make_kinetics_annotations

    make_kinetics_annotations(tmp_path)
    with pytest.raises(DataError, match="'blowing nose'"):  # the packaged 31 classes are not in this tiny Kinetics
        KineticsSoundsRecipe().scan(tmp_path, KineticsSoundsOptions())
    (tmp_path / "classes.txt").write_text("# two of them\nBowling\njugling balls\n")
    with pytest.raises(DataError, match="did you mean 'juggling balls'"):
        KineticsSoundsRecipe().scan(tmp_path, KineticsSoundsOptions(classes="classes.txt"))
    (tmp_path / "classes.txt").write_text("bowling\nbowling\n")
    with pytest.raises(DataError, match="more than once"):
        KineticsSoundsRecipe().scan(tmp_path, KineticsSoundsOptions(classes=str(tmp_path / "classes.txt")))


@pytest.mark.slow
def test_kinetics_sounds_prepare_train_probe(tmp_path):
    from raw_layouts import dominant_frequency, make_kinetics, tone, write_video

    raw, prepared = tmp_path / "raw", tmp_path / "prepared"
    make_kinetics(raw)
    write_video(raw / "train" / "bowling" / "k1y2_000020_000030.mp4", 1, audio=False)  # no audio track
    (raw / "train" / "juggling balls" / "k2y3_000030_000040.mp4").write_bytes(b"\x00\x00\x00\x18ftypmp42 cut")  # damaged
    classes = tmp_path / "ks.txt"
    classes.write_text("juggling_balls\nbowling\n")  # list order gives the indices; underscores are spaces

    report = prepare_cli("kinetics-sounds", raw, prepared, "size=32", "clip_seconds=1", "val_fraction=0.2", f"classes={classes}")
    why = {item["id"]: item["why"] for item in report["skipped"]}
    assert set(why) == {"k1y2_000020_000030", "k2y3_000030_000040"}
    assert "no audio track (missing_audio=skip)" in why["k1y2_000020_000030"] and "not a readable media file" in why["k2y3_000030_000040"]
    assert report["listed"] == 8 and report["written"]["test"] == 2 and sum(report["written"].values()) == 6
    index = json.loads((prepared / "index.json").read_text())
    assert index["class_names"] == ["juggling balls", "bowling"]
    ids = [i for split in ("train", "val", "test") for i in shard_ids(prepared, split)]
    assert all(i.startswith(("k1", "k2")) for i in ids)  # abseiling (k0) is no Kinetics-Sounds class here
    labels = shard_labels(prepared, "test")
    for wave, label in zip(shard_arrays(prepared, "test", "audio"), labels):
        assert abs(dominant_frequency(wave, 16000) - tone(2 - label)) < 5  # juggling balls = K400 label 2 -> 0

    result = train_naive_and_probe("kinetics-sounds", prepared, tmp_path / "runs", "data.options.visual.crop=32", "data.options.audio.seconds=0.5")
    assert result["n_test"] == 2


# --- AVE ------------------------------------------------------------------------------------------------

@pytest.mark.slow
def test_ave_prepare_train_probe(tmp_path):
    from raw_layouts import colour, dominant_frequency, make_ave, tone

    raw, prepared = tmp_path / "raw", tmp_path / "prepared"
    videos = make_ave(raw)
    with (raw / "trainSet.txt").open("a") as lines:
        lines.write(f"Dog&{videos['train'][0]}&good&0&1\n")  # also listed as a Church bell video
        lines.write("Dog&gone-video&good&0&10\n")  # listed, not downloaded
        lines.write("Dog&missing fields\n")
    (raw / "AVE" / f"{videos['test'][1]}.mp4").write_bytes(b"not a video")

    report = prepare_cli("ave", raw, prepared, "size=32", "clip_seconds=1")
    why = {item["id"]: item["why"] for item in report["skipped"]}
    assert set(why) == {videos["train"][0], "gone-video", "trainSet.txt:12", videos["test"][1]}
    assert "listed more than once (Church bell in trainSet.txt, Dog in trainSet.txt)" in why[videos["train"][0]]
    assert "missing file" in why["gone-video"] and "expected Category&VideoID" in why["trainSet.txt:12"]
    assert "not a readable media file" in why[videos["test"][1]]
    assert report["written"] == {"train": 8, "val": 3, "test": 2}  # the official splits; nothing carved
    index = json.loads((prepared / "index.json").read_text())
    assert index["class_names"] == ["Church bell", "Dog", "Male speech, man speaking"]
    categories = ["Church bell", "Male speech, man speaking", "Dog"]  # make_ave's label order
    for split in ("train", "val"):
        labels = shard_labels(prepared, split)
        made = [categories.index(index["class_names"][k]) for k in labels]
        audio, visual = shard_arrays(prepared, split, "audio"), shard_arrays(prepared, split, "visual")
        assert audio.shape[1:] == (16000,) and visual.shape[1:] == (3, 32, 32, 3)
        for wave, frames, label in zip(audio, visual, made):
            assert abs(dominant_frequency(wave, 16000) - tone(label)) < 5
            np.testing.assert_allclose(frames.mean((0, 1, 2)), colour(label), atol=8)

    result = train_naive_and_probe("ave", prepared, tmp_path / "runs", "data.options.visual.crop=32", "data.options.audio.seconds=1")
    assert result["n_val"] == 3 and result["n_test"] == 2


def test_datasets_command_lists_the_field_benchmarks(capsys, monkeypatch):
    from latefusion.data import DATASETS

    # Only the package's data sets: other tests register their own (tests/file_dataset.py), which
    # need files this listing does not give them.
    monkeypatch.setattr(DATASETS, "_entries", {k: v for k, v in DATASETS._entries.items() if v.__module__.startswith("latefusion.")})
    assert main(["datasets"]) == 0
    out = capsys.readouterr().out
    for name in ("crema-d", "kinetics-sounds", "ave"):
        assert any(line.split()[:1] == [name] for line in out.splitlines()), name
