"""`latefusion prepare folder`: your own manifest, video clips included, in the prepared format; the
folder data set reading a large folder (or one with video) through a prepared copy in a cache."""

from __future__ import annotations

import csv
import json
import signal
import subprocess
import sys
import time
import wave
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from latefusion.cli import main
from latefusion.config import ConfigError, DataConfig
from latefusion.data import build_dataset
from latefusion.data.files import DataFormatError
from latefusion.data import prepared as prepared_module
from latefusion.data.prepared import prepare

av = pytest.importorskip("av", reason="video clips are written and read with PyAV (the `video` extra)")

RATE = 8000
COLUMNS = ["id", "label", "split", "vector", "image", "sound", "grid", "weather.temp", "weather.wind", "clip", "track"]


def write_clip(path: Path, frames: int = 6, size: int = 32, audio_seconds: float = 0.5, seed: int = 0) -> None:
    """A tiny real video (MPEG-4 in mp4, with an AAC audio track unless `audio_seconds` is 0)."""
    rng = np.random.default_rng(seed)
    with av.open(str(path), "w") as container:
        video = container.add_stream("mpeg4", rate=8)
        video.width = video.height = size
        video.pix_fmt = "yuv420p"
        audio = None
        if audio_seconds:
            audio = container.add_stream("aac", rate=RATE)
            audio.layout = "mono"
        for _ in range(frames):
            image = rng.integers(0, 255, (size, size, 3), dtype=np.uint8)
            for packet in video.encode(av.VideoFrame.from_ndarray(image, format="rgb24")):
                container.mux(packet)
        for packet in video.encode():
            container.mux(packet)
        if audio is not None:
            n = int(audio_seconds * RATE)
            tone = (0.3 * np.sin(2 * np.pi * (300 + 50 * seed) * np.arange(n) / RATE)).astype(np.float32)
            frame = av.AudioFrame.from_ndarray(tone[None], format="flt", layout="mono")
            frame.sample_rate = RATE
            for packet in [*audio.encode(frame), *audio.encode()]:
                container.mux(packet)


def write_wav(path: Path, samples: np.ndarray) -> None:
    with wave.open(str(path), "wb") as out:
        out.setnchannels(1), out.setsampwidth(2), out.setframerate(RATE)
        out.writeframes((samples * 32767).astype("<i2").tobytes())


def make_folder(root: Path, n: int = 8, video: bool = True, bad: bool = False) -> Path:
    """`n` samples of two classes with every column kind: a .npy vector, a PNG, a WAV, a 2-D .npy, two
    number columns, and (with `video`) a clip and its audio track. With `bad`, five more samples, each
    with one named problem."""
    root.mkdir(parents=True)
    rng = np.random.default_rng(1)
    rows = []
    for i in range(n):
        sid = f"s{i:02d}"
        np.save(root / f"{sid}.npy", rng.standard_normal(5).astype(np.float32))
        np.save(root / f"{sid}-grid.npy", rng.standard_normal((4, 4)).astype(np.float32))
        Image.fromarray(rng.integers(0, 255, (8, 8, 3), dtype=np.uint8)).save(root / f"{sid}.png")
        write_wav(root / f"{sid}.wav", 0.2 * rng.standard_normal(RATE // 4 + 40 * i))
        if video:
            write_clip(root / f"{sid}.mp4", seed=i)
        rows.append([sid, ["cat", "dog"][i % 2], "test" if i >= n - 2 else "train", f"{sid}.npy", f"{sid}.png", f"{sid}.wav",
                     f"{sid}-grid.npy", f"{rng.normal():.4f}", f"{rng.normal():.4f}", f"{sid}.mp4", f"{sid}.mp4#audio"])
    if bad:
        first = rows[0]
        (root / "garbage.mp4").write_bytes(b"not a video at all" * 10)
        write_clip(root / "silent.mp4", audio_seconds=0)
        write_clip(root / "short.mp4", frames=2)
        rows += [["b-missing", "cat", "test", "gone.npy", *first[4:]],  # in test: the validation carved from train stays the same
                 ["b-silent", "dog", "test", *first[3:9], "silent.mp4", "silent.mp4#audio"],
                 ["b-short", "cat", "test", *first[3:9], "short.mp4", first[10]],
                 ["b-garbage", "dog", "test", *first[3:9], "garbage.mp4", first[10]],
                 ["b-number", "cat", "test", *first[3:7], "n/a", *first[8:]]]
    columns = COLUMNS if video else COLUMNS[:-2]
    with open(root / "manifest.csv", "w", newline="") as handle:
        writer = csv.writer(handle)
        writer.writerow(columns)
        writer.writerows(row[: len(columns)] for row in rows)
    return root


PREPARE = {"shard_size": 3, "video_frames": 3, "video_size": 16}


def by_id(bundle, modality: str) -> dict[str, np.ndarray]:
    """Each sample's input (as the evaluation transform gives it), by id, over every split."""
    values = {}
    for split in bundle.splits.values():
        split = split.deterministic()
        inputs, _ = split.__getitems__(list(range(len(split))))
        values.update(zip(split.sample_ids(), inputs[modality].numpy()))
    return values


def test_prepare_folder_stores_every_column_kind_as_the_folder_reader_reads_it(tmp_path):
    data = make_folder(tmp_path / "data", bad=True)
    report = prepare("folder", data, tmp_path / "prepared", PREPARE, workers=2, progress=False)
    skipped = {s["id"]: (s["kind"], s["why"]) for s in report["skipped"]}
    assert {k: kind for k, (kind, _) in skipped.items()} == {
        "b-missing": "missing-file", "b-silent": "no-audio-track", "b-short": "too-short", "b-garbage": "unreadable-file",
        "b-number": "non-numeric"}
    assert "fewer than the 3 asked (data.options.video_frames)" in skipped["b-short"][1]
    assert "modality 'track': silent.mp4#audio has no audio track" in skipped["b-silent"][1]
    assert report["written"] == {"train": 5, "val": 1, "test": 2}

    prepared = build_dataset(DataConfig(name="folder", path=str(tmp_path / "prepared")))
    shapes = {m.name: (m.kind, m.shape) for m in prepared.modalities}
    assert shapes["clip"] == ("frames", (3, 3, 16, 16)) and prepared.encoders["clip"]["name"] == "resnet18"
    assert shapes["track"][0] == "audio" and prepared.encoders["track"]["options"] == {"sample_rate": RATE}
    assert shapes["image"] == ("image", (3, 8, 8)) and shapes["grid"] == ("image", (4, 4)) and shapes["weather"] == ("vector", (2,))

    # The same samples without their video columns, read into memory: the same values, the same splits.
    plain = make_folder(tmp_path / "plain", video=False)
    memory = build_dataset(DataConfig(name="folder", path=str(plain)))
    assert {s: memory.splits[s].sample_ids() for s in memory.splits} == {s: prepared.splits[s].sample_ids() for s in prepared.splits}
    assert memory.class_names == prepared.class_names == ["cat", "dog"]
    for modality in ("vector", "image", "sound", "grid", "weather"):
        assert prepared.modality(modality) == memory.modality(modality)  # kinds, shapes, and the train statistics
        read, stored = by_id(memory, modality), by_id(prepared, modality)
        assert all(np.array_equal(read[k], stored[k]) for k in read), modality


def test_the_audio_track_is_the_clips_sound(tmp_path):
    data = make_folder(tmp_path / "data", n=6)
    prepare("folder", data, tmp_path / "prepared", PREPARE, workers=1, progress=False)
    bundle = build_dataset(DataConfig(name="folder", path=str(tmp_path / "prepared")))
    for sample_id, track in by_id(bundle, "track").items():
        seed = int(sample_id[1:])
        spectrum = np.abs(np.fft.rfft(track))
        assert abs(np.argmax(spectrum) * RATE / len(track) - (300 + 50 * seed)) < 10  # the tone written into that clip


def run_prepare(src: Path, dst: Path, *extra: str, env=None) -> subprocess.Popen:
    sets = [x for key, value in {**PREPARE, "shard_size": 1}.items() for x in ("--set", f"{key}={value}")]
    return subprocess.Popen([sys.executable, "-m", "latefusion.cli", *extra, "prepare", "folder", "--src", str(src), "--dst", str(dst),
                             "--workers", "1", *sets], stdout=subprocess.PIPE, stderr=subprocess.STDOUT, env=env)


def folder_contents(root: Path) -> dict[str, bytes]:
    return {str(p.relative_to(root)): p.read_bytes() for p in sorted(root.rglob("*")) if p.is_file() and p.name != "report.json"}


@pytest.mark.slow
def test_a_killed_prepare_reruns_to_the_same_folder(tmp_path):
    data = make_folder(tmp_path / "data", n=10)
    slow = tmp_path / "slow_decoding.py"  # a plugin that makes each sample take a while, so the kill lands mid-way
    slow.write_text("import time\nfrom latefusion.data.folder_prepare import FolderRecipe\nplain = FolderRecipe.decode\n"
                    "FolderRecipe.decode = lambda self, *a: (time.sleep(0.3), plain(self, *a))[1]\n")
    killed = run_prepare(data, tmp_path / "killed", "--import", str(slow))
    deadline = time.monotonic() + 60
    while not (tmp_path / "killed" / "shards" / "train-00002.json").exists():
        assert killed.poll() is None and time.monotonic() < deadline, killed.stdout.read().decode()
        time.sleep(0.05)
    killed.send_signal(signal.SIGKILL)
    killed.wait()
    assert not (tmp_path / "killed" / "index.json").exists()  # the kill landed before the end
    with pytest.raises(Exception, match="prepare stopped before it finished; rerun"):
        build_dataset(DataConfig(name="folder", path=str(tmp_path / "killed")))

    for dst in ("killed", "clean"):
        finished = run_prepare(data, tmp_path / dst)
        out = finished.communicate()[0].decode()
        assert finished.returncode == 0, out
    assert "shards reused" in out or "reused from an earlier run" in out
    assert folder_contents(tmp_path / "killed") == folder_contents(tmp_path / "clean")


def test_a_rerun_stopped_after_a_change_leaves_no_index(tmp_path, monkeypatch):
    data = make_folder(tmp_path / "data", n=6, video=False)
    dst = tmp_path / "prepared"
    prepare("folder", data, dst, PREPARE, workers=1, progress=False)
    np.save(data / "s01.npy", np.ones(5, np.float32))  # one sample changed: its shard must be written again

    def killed(*args) -> None:
        raise KeyboardInterrupt  # stopped as it starts writing the shard

    with monkeypatch.context() as patch:
        patch.setattr(prepared_module, "write_shard", killed)
        with pytest.raises(KeyboardInterrupt):
            prepare("folder", data, dst, PREPARE, workers=1, progress=False)
    assert not (dst / "index.json").exists()  # never an index describing the shards as they were
    report = prepare("folder", data, dst, PREPARE, workers=1, progress=False)
    assert report["shards"]["written"] == 1
    assert np.array_equal(by_id(build_dataset(DataConfig(name="folder", path=str(dst), options={"standardize_numbers": False})),
                                "vector")["s01"], np.ones(5))


def test_a_damaged_shard_is_caught_and_repaired(tmp_path, capsys):
    data = make_folder(tmp_path / "data", n=6, video=False)
    dst = tmp_path / "prepared"
    prepare("folder", data, dst, PREPARE, workers=1, progress=False)
    array = dst / "shards" / "train-00000" / "image.npy"
    healthy = array.read_bytes()
    flipped = bytearray(healthy)
    flipped[-1] ^= 1
    array.write_bytes(bytes(flipped))
    assert main(["check-data", str(dst)]) == 1
    assert "damaged-shard (1):\n    train: shards/train-00000/image.npy differs from what prepare wrote (checksum)" in capsys.readouterr().out
    array.write_bytes(healthy[:-7])
    with pytest.raises(DataFormatError, match=r"train-00000: image\.npy holds \d+ bytes, prepare wrote \d+; rerun"):
        build_dataset(DataConfig(name="folder", path=str(dst)))
    assert prepare("folder", data, dst, PREPARE, workers=1, progress=False)["shards"]["written"] == 1
    assert array.read_bytes() == healthy


def test_the_cache_is_named_reused_and_made_again_when_the_data_change(tmp_path, capsys):
    data = make_folder(tmp_path / "data", n=6)
    config = DataConfig(name="folder", path=str(data), options={**{k: v for k, v in PREPARE.items() if k != "shard_size"},
                                                                "cache_dir": str(tmp_path / "cache")})
    first = build_dataset(config)
    said = capsys.readouterr().err
    copies = list((tmp_path / "cache" / "prepared").glob("data-*/index.json"))
    assert len(copies) == 1 and "is read through a prepared copy: writing about" in said and str(copies[0].parent) in said
    assert "video column(s) ['clip']" in said
    build_dataset(config)
    assert "the data are unchanged since it was made" in capsys.readouterr().err

    np.save(data / "s02.npy", np.full(5, 7.0, np.float32))  # the data change: the copy is brought up to date
    changed = build_dataset(config.model_copy(update={"options": {**config.options, "standardize_numbers": False}}))
    assert "writing about" in capsys.readouterr().err
    assert np.array_equal(by_id(changed, "vector")["s02"], np.full(5, 7.0))
    assert list((tmp_path / "cache" / "prepared").glob("data-*/index.json")) == copies  # the same copy, not a second one
    assert first.name == changed.name == f"folder:{data.resolve()}"

    with pytest.raises(ConfigError, match="lies inside the data folder"):
        build_dataset(config.model_copy(update={"options": {**config.options, "cache_dir": str(data / "cache")}}))


def test_a_folder_over_the_threshold_is_prepared_and_bad_samples_need_skip_bad(tmp_path, capsys):
    data = make_folder(tmp_path / "data", n=6, video=False)
    with open(data / "manifest.csv", "a", newline="") as handle:
        csv.writer(handle).writerow(["gone", "cat", "train", "gone.npy", "s00.png", "s00.wav", "s00-grid.npy", "1", "2"])
    options = {"cache_dir": str(tmp_path / "cache"), "prepare_above": 5}
    with pytest.raises(DataFormatError, match=r"(?s)1 sample\(s\) could not be used .*\n  train 'gone': missing-file: .*pass --skip-bad"):
        build_dataset(DataConfig(name="folder", path=str(data), options=options))
    assert "7 samples, over data.options.prepare_above=5" in capsys.readouterr().err
    bundle = build_dataset(DataConfig(name="folder", path=str(data), options=options, skip_bad=True))
    assert sum(len(s) for s in bundle.splits.values()) == 6
    assert "skip_bad: 1 sample(s)" in capsys.readouterr().err


def test_the_id_label_and_split_columns_can_have_other_names(tmp_path):
    data = make_folder(tmp_path / "data", n=6, video=False)
    text = (data / "manifest.csv").read_text().replace("id,label,split,", "name,class,subset,", 1)
    (data / "manifest.csv").write_text(text)
    with pytest.raises(DataFormatError, match=r"missing column\(s\) \['id', 'label', 'split'\]"):
        build_dataset(DataConfig(name="folder", path=str(data)))
    names = {"id_column": "name", "label_column": "class", "split_column": "subset"}
    bundle = build_dataset(DataConfig(name="folder", path=str(data), options=names))
    assert bundle.class_names == ["cat", "dog"] and bundle.splits["test"].sample_ids() == ["s04", "s05"]
    with pytest.raises(DataFormatError, match=r"missing column\(s\) \['kind'\]; expected columns name,kind,subset \(data.options"):
        build_dataset(DataConfig(name="folder", path=str(data), options={**names, "label_column": "kind"}))
    report = prepare("folder", data, tmp_path / "prepared", {**names, "shard_size": 4}, workers=1, progress=False)
    assert report["written"]["test"] == 2


def test_prepare_lists_the_folder_recipe(capsys):
    with pytest.raises(SystemExit):
        main(["prepare", "--help"])
    assert "folder" in capsys.readouterr().out


@pytest.mark.slow
def test_demo_and_train_on_video_clips_and_on_a_prepared_folder(tmp_path, capsys):
    data = make_folder(tmp_path / "data", n=10)
    fast = ["--set", "train.epochs=1", "--set", "train.progress=false", "--set", "model.feature_dim=8",
            "--set", f"data.options.cache_dir={tmp_path / 'cache'}", "--set", "data.options.video_size=16"]
    assert main(["demo", "--data", str(data), "--out", str(tmp_path / "demo"), *fast]) == 0
    summary = json.loads((tmp_path / "demo" / "summary.json").read_text())
    modalities = {"vector", "image", "sound", "grid", "weather", "clip", "track"}
    assert set(summary["modalities"]) == modalities and {f"unimodal:{m}" for m in modalities} <= set(summary["methods"])
    assert summary["guide"]["choice"] in ("ume", "umt") and summary["dataset"] == f"folder:{data.resolve()}"
    prepare("folder", data, tmp_path / "prepared", PREPARE, workers=1, progress=False)
    assert main(["train", "--data", str(tmp_path / "prepared"), "--out", str(tmp_path / "run"), *fast[:6]]) == 0
    assert json.loads((tmp_path / "run" / "result.json").read_text())["dataset"] == f"folder:{(tmp_path / 'prepared').resolve()}"


def write_rows(manifest: Path, rows: list[list[str]]) -> None:
    with manifest.open("w", newline="") as handle:
        csv.writer(handle).writerows(rows)


def test_a_changed_number_cell_or_label_rewrites_its_shard(tmp_path):
    data = make_folder(tmp_path / "data", n=6, video=False)
    dst = tmp_path / "prepared"
    prepare("folder", data, dst, PREPARE, workers=1, progress=False)
    manifest = data / "manifest.csv"
    rows = list(csv.reader(manifest.read_text().splitlines()))
    rows[1][7] = "42.0"  # s00's weather.temp
    write_rows(manifest, rows)
    assert prepare("folder", data, dst, PREPARE, workers=1, progress=False)["shards"]["written"] == 1
    options = {"standardize_numbers": False}
    assert by_id(build_dataset(DataConfig(name="folder", path=str(dst), options=options)), "weather")["s00"][0] == 42.0
    rows[6][1] = "cat"  # s05, a test sample, was dog
    write_rows(manifest, rows)
    assert prepare("folder", data, dst, PREPARE, workers=1, progress=False)["shards"]["written"] == 1
    bundle = build_dataset(DataConfig(name="folder", path=str(dst)))
    assert bundle.splits["test"].sample_ids() == ["s04", "s05"] and bundle.splits["test"].labels.tolist() == [0, 0]


def test_standardisation_reads_only_the_vector_array_of_a_prepared_split(tmp_path, monkeypatch):
    from latefusion.data.standardize import train_statistics

    data = make_folder(tmp_path / "data", n=6)
    prepare("folder", data, tmp_path / "prepared", PREPARE, workers=1, progress=False)
    bundle = build_dataset(DataConfig(name="folder", path=str(tmp_path / "prepared")))
    train = bundle.splits["train"]
    alone = train.only(["weather"])
    assert alone.arrays == ["weather"] and set(alone[0][0]) == {"weather"}
    assert np.array_equal(alone[0][0]["weather"], train[0][0]["weather"])
    opened, open_array = set(), prepared_module.PreparedSplit._array
    monkeypatch.setattr(prepared_module.PreparedSplit, "_array", lambda self, shard, array: opened.add(array) or open_array(self, shard, array))
    train_statistics(train, "weather")
    assert opened == {"weather"}  # not the clips' frames too


def test_shard_rows_are_read_in_runs_with_a_bounded_number_of_open_files(tmp_path):
    from latefusion.data.prepared import ShardArray, ShardFiles

    array = np.arange(60, dtype=np.int16).reshape(10, 2, 3)
    np.save(tmp_path / "a.npy", array)
    local = np.array([0, 1, 2, 5, 5, 9])
    assert np.array_equal(ShardArray(tmp_path / "a.npy").rows(local), array[local])
    files = ShardFiles(limit=2)
    for k in range(3):
        np.save(tmp_path / f"{k}.npy", array)
        files.get(tmp_path / f"{k}.npy")
    files.get(tmp_path / "1.npy")
    assert list(files.open) == [tmp_path / "2.npy", tmp_path / "1.npy"]  # 0 was closed, 1 is the most recent
    (tmp_path / "cut.npy").write_bytes((tmp_path / "a.npy").read_bytes()[:-6])
    with pytest.raises(DataFormatError, match=r"cut\.npy: rows 9\.\.9 lie past its end"):
        ShardArray(tmp_path / "cut.npy").rows(np.array([9]))


def test_a_cache_on_a_disk_without_room_is_refused_before_writing(tmp_path, monkeypatch):
    import shutil
    from latefusion.data import folder_prepare
    from latefusion.errors import DataError

    data = make_folder(tmp_path / "data", n=6, video=False)
    monkeypatch.setattr(folder_prepare.shutil, "disk_usage", lambda path: shutil._ntuple_diskusage(10**9, 10**9 - 1000, 1000))
    with pytest.raises(DataError, match=r"needs about .* which has 1000 bytes free; set data.options.cache_dir"):
        build_dataset(DataConfig(name="folder", path=str(data), options={"cache_dir": str(tmp_path / "cache"), "prepare": "always"}))
    assert not list((tmp_path / "cache").rglob("*.npy"))


def test_pyav_is_asked_for_only_by_the_files_it_decodes(tmp_path, monkeypatch):
    data = make_folder(tmp_path / "data", n=6, video=False)
    rows = list(csv.reader((data / "manifest.csv").read_text().splitlines()))
    monkeypatch.setitem(sys.modules, "av", None)  # import av raises ImportError
    build_dataset(DataConfig(name="folder", path=str(data)))  # .png, .wav and .npy need no PyAV
    rows[-1][5] = "s05.flac"  # a later cell of the wav column
    write_rows(data / "manifest.csv", rows)
    with pytest.raises(DataFormatError, match=r"line 7 \(id 's05'\): modality 'sound': s05\.flac is \.flac audio, which is decoded by PyAV, "
                                              r"not installed: pip install 'latefusion\[video\]'"):
        build_dataset(DataConfig(name="folder", path=str(data)))


@pytest.mark.slow
def test_processes_building_the_same_cache_wait_for_one_another(tmp_path):
    data = make_folder(tmp_path / "data", n=6, video=False)
    build = ("import time, sys\nfrom latefusion.data.folder_prepare import FolderRecipe\nplain = FolderRecipe.decode\n"
             "FolderRecipe.decode = lambda self, *a: (time.sleep(0.5), plain(self, *a))[1]\n"
             "from latefusion.config import DataConfig\nfrom latefusion.data import build_dataset\n"
             f"build_dataset(DataConfig(name='folder', path={str(data)!r}, options={{'cache_dir': {str(tmp_path / 'cache')!r}, "
             "'prepare': 'always'}))\n")
    runs = [subprocess.Popen([sys.executable, "-c", build], stderr=subprocess.PIPE, text=True) for _ in range(2)]
    said = [run.communicate()[1] for run in runs]
    assert [run.returncode for run in runs] == [0, 0], said
    assert sorted("writing about" in text for text in said) == [False, True]  # one made the copy, the other waited and read it
    assert sum("the data are unchanged since it was made" in text for text in said) == 1


def test_data_given_as_a_prepared_folder_is_the_data_set_it_was_made_from(tmp_path):
    from raw_layouts import make_modelnet40

    from latefusion.cli import data_overrides

    make_modelnet40(tmp_path / "raw", train=2, test=1)
    prepare("modelnet40", tmp_path / "raw", tmp_path / "modelnet", {"size": 8}, workers=1, progress=False)
    assert data_overrides(str(tmp_path / "modelnet")) == ["data.name=modelnet40", f"data.path={(tmp_path / 'modelnet').resolve()}"]
    data = make_folder(tmp_path / "data", n=6, video=False)
    prepare("folder", data, tmp_path / "mine", PREPARE, workers=1, progress=False)
    assert data_overrides(str(tmp_path / "mine"))[0] == "data.name=folder"
    assert data_overrides(str(data))[0] == "data.name=folder"
