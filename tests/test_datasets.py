"""The paper's data sets end to end on tiny raw copies: prepare -> `latefusion train` with the
shipped configs (every method) -> probe; plus what prepare reports for damaged or missing files."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from latefusion.cli import main
from latefusion.runs import RunDir

from raw_layouts import make_ucf101

CONFIGS = Path(__file__).resolve().parents[1] / "configs"
# Tiny ResNets (width 8: 64 pooled features), small crops, one epoch: the pipeline, not the accuracy.
TINY = ["data.batch_size=8", "data.eval_batch_size=64", "data.num_workers=0", "model.feature_dim=64",
        "train.epochs=1", "train.progress=false", "train.device=cpu", "optim.lr=0.01"]


def tiny_encoders(modalities: list[str]) -> list[str]:
    return [f"model.encoders.{m}.options.width=8" for m in modalities]


def train_every_method(dataset: str, prepared: Path, runs: Path, modalities: list[str], extra: list[str]) -> dict:
    """`latefusion train` with configs/<dataset>/<method>.yaml for every method, then `latefusion probe`."""
    common = [f"data.path={prepared}", *TINY, *tiny_encoders(modalities), *extra]

    def train(method: str, out: Path, *more: str) -> dict:
        sets = [arg for item in [*common, *more] for arg in ("--set", item)]
        assert main(["train", "--config", str(CONFIGS / dataset / f"{method}.yaml"), "--out", str(out), *sets]) == 0
        return RunDir(out).result()

    results = {f"unimodal-{m}": train("unimodal", runs / f"unimodal-{m}", f"method.options.modality={m}") for m in modalities}
    members = [f"method.options.{key}.{m}={runs / f'unimodal-{m}'}" for key in ("members", "teachers") for m in modalities]
    results["naive"] = train("naive", runs / "naive")
    results["ume"] = train("ume", runs / "ume", *[s for s in members if ".members." in s])
    results["umt"] = train("umt", runs / "umt", *[s for s in members if ".teachers." in s])
    for name in ("naive", "umt", *(f"unimodal-{m}" for m in modalities)):
        assert main(["probe", str(runs / name), "--steps", "20"]) == 0
        probe = json.loads((runs / name / "probe.json").read_text())["results"]
        assert set(probe) == ({name.removeprefix("unimodal-")} if name.startswith("unimodal") else set(modalities))
    return results


def prepare_cli(dataset: str, src: Path, dst: Path, *options: str) -> dict:
    sets = [arg for item in options for arg in ("--set", item)]
    assert main(["prepare", dataset, "--src", str(src), "--dst", str(dst), "--workers", "2", *sets]) == 0
    return json.loads((dst / "report.json").read_text())


def shard_arrays(prepared: Path, split: str, array: str) -> np.ndarray:
    index = json.loads((prepared / "index.json").read_text())
    return np.concatenate([np.load(prepared / "shards" / e["shard"] / f"{array}.npy") for e in index["splits"][split]])


def shard_ids(prepared: Path, split: str) -> list[str]:
    index = json.loads((prepared / "index.json").read_text())
    return [i for e in index["splits"][split] for i in json.loads((prepared / "shards" / f"{e['shard']}.json").read_text())["ids"]]


def shard_labels(prepared: Path, split: str) -> np.ndarray:
    index = json.loads((prepared / "index.json").read_text())
    return np.concatenate([json.loads((prepared / "shards" / f"{e['shard']}.json").read_text())["labels"] for e in index["splits"][split]])


@pytest.mark.slow
def test_ucf101_prepare_train_probe(tmp_path):
    raw, prepared = tmp_path / "raw", tmp_path / "prepared"
    make_ucf101(raw)
    # Damage: a clip that is not a video, a listed clip whose file is gone; and one with no flow (computed).
    (raw / "UCF-101/Basketball/v_Basketball_g03_c01.avi").write_bytes(b"not a video")
    (raw / "UCF-101/Drumming/v_Drumming_g01_c02.avi").unlink()
    for axis in ("u", "v"):
        for f in (raw / "tvl1_flow" / axis / "v_ApplyEyeMakeup_g03_c02").iterdir():
            f.unlink()
        (raw / "tvl1_flow" / axis / "v_ApplyEyeMakeup_g03_c02").rmdir()

    report = prepare_cli("ucf101", raw, prepared, "size=32", "val_fraction=0.2", "shard_size=4", "flow_frames=4")
    why = {item["id"]: item["why"] for item in report["skipped"]}
    assert set(why) == {"v_Basketball_g03_c01", "v_Drumming_g01_c02"}
    assert "not a readable media file" in why["v_Basketball_g03_c01"] and "v_Basketball_g03_c01.avi" in why["v_Basketball_g03_c01"]
    assert "missing file" in why["v_Drumming_g01_c02"]
    assert [(item["id"], item["note"].split(":")[0]) for item in report["filled"]] == [("v_ApplyEyeMakeup_g03_c02", "no precomputed flow")]
    # 3 classes x 3 train groups x 2 clips, one group carved out as validation; group 1 is test.
    assert report["written"] == {"train": 12 - 1, "val": 6, "test": 6 - 1}
    assert report["listed"] == 24

    # What was stored is what was written: each class's colour and motion, read from the flow JPEGs
    # or (the filled clip) computed from its video: both stored alike.
    from raw_layouts import colour, flow_value, motion

    labels = shard_labels(prepared, "train")
    rgb, flow = shard_arrays(prepared, "train", "rgb"), shard_arrays(prepared, "train", "flow")
    assert rgb.shape[1:] == (3, 32, 32, 3) and flow.shape[1:] == (4, 32, 32, 2)
    for label in range(3):
        np.testing.assert_allclose(rgb[labels == label].mean((0, 1, 2, 3)), colour(label), atol=6)
        np.testing.assert_allclose(flow[labels == label].mean((0, 1, 2, 3)), [flow_value(m) for m in motion(label)], atol=2)
    computed = flow[shard_ids(prepared, "train").index("v_ApplyEyeMakeup_g03_c02")]
    assert [int(np.median(computed[..., axis])) for axis in (0, 1)] == [flow_value(m) for m in motion(0)]

    # flow_source=files: a clip without flow JPEGs is skipped instead.
    strict = prepare_cli("ucf101", raw, tmp_path / "strict", "size=32", "val_fraction=0.2", "flow_frames=4", "flow_source=files")
    assert "no flow frames for v_ApplyEyeMakeup_g03_c02" in {s["id"]: s["why"] for s in strict["skipped"]}["v_ApplyEyeMakeup_g03_c02"]
    assert not strict["filled"]
    # Validation holds whole groups, none of them in train.
    val_ids, train_ids = shard_ids(prepared, "val"), shard_ids(prepared, "train")
    assert {i.split("_g")[1][:2] for i in val_ids}.isdisjoint({i.split("_g")[1][:2] for i in train_ids})

    results = train_every_method("ucf101", prepared, tmp_path / "runs", ["rgb", "flow"],
                                 ["data.options.rgb.crop=32", "data.options.flow.crop=32"])
    assert results["ume"]["n_test"] == 5 and results["naive"]["n_val"] == 6


@pytest.mark.slow
def test_vggsound_prepare_train_probe(tmp_path):
    from raw_layouts import colour, dominant_frequency, make_vggsound, tone, write_video

    raw, prepared = tmp_path / "raw", tmp_path / "prepared"
    make_vggsound(raw)
    with (raw / "vggsound.csv").open("a") as csv:
        csv.write('gone-id,0,"rain, on a roof",train\n')  # listed, never downloaded
        csv.write('bad-line,zero,"rain, on a roof",train\n')  # a start second that is not a number
        csv.write('silent,0,"rain, on a roof",train\n')  # a clip with no audio track
    write_video(raw / "video" / "silent_000000.mp4", 2, audio=False)

    report = prepare_cli("vggsound", raw, prepared, "size=32", "clip_seconds=1", "val_fraction=0.25", "shard_size=4")
    why = {item["id"]: item["why"] for item in report["skipped"]}
    assert set(why) == {"gone-id_000000", "vggsound.csv:17", "silent_000000"}
    assert "missing file: neither" in why["gone-id_000000"] and "gone-id_000000.mp4" in why["gone-id_000000"]
    assert "'zero'" in why["vggsound.csv:17"] and "no audio track" in why["silent_000000"]
    assert sum(report["written"].values()) == 15 and report["written"]["test"] == 3 and report["written"]["val"] >= 3

    # Audio resampled 22.05 -> 16 kHz keeps each class's tone; frames keep its colour (mp4 and JPEG alike).
    labels = shard_labels(prepared, "train")
    audio, visual = shard_arrays(prepared, "train", "audio"), shard_arrays(prepared, "train", "visual")
    assert audio.shape[1:] == (16000,) and visual.shape[1:] == (3, 32, 32, 3)
    for wave, label in zip(audio, labels):
        assert abs(dominant_frequency(wave, 16000) - tone(label)) < 5
    for frames, label in zip(visual, labels):
        np.testing.assert_allclose(frames.mean((0, 1, 2)), colour(label), atol=8)

    results = train_every_method("vggsound", prepared, tmp_path / "runs", ["audio", "visual"],
                                 ["data.options.visual.crop=32", "data.options.audio.seconds=0.5"])
    assert results["umt"]["n_test"] == 3


@pytest.mark.slow
def test_kinetics400_prepare_train_probe(tmp_path):
    from raw_layouts import make_kinetics, write_video

    raw, prepared = tmp_path / "raw", tmp_path / "prepared"
    make_kinetics(raw)
    write_video(raw / "train" / "bowling" / "k1y2_000020_000030.mp4", 1, audio=False)  # no audio track
    (raw / "train" / "abseiling" / "k0y3_000030_000040.mp4").unlink()  # listed, not downloaded

    report = prepare_cli("kinetics400", raw, prepared, "size=32", "clip_seconds=1", "val_fraction=0.2")
    assert [(s["id"], "missing file" in s["why"]) for s in report["skipped"]] == [("k0y3_000030_000040", True)]
    assert [(s["id"], s["note"]) for s in report["filled"]] == [("k1y2_000020_000030", "no audio track: stored as silence (missing_audio=silence)")]
    assert report["written"]["test"] == 3 and report["written"]["train"] + report["written"]["val"] == 8
    silent = shard_arrays(prepared, "train", "audio"), shard_arrays(prepared, "val", "audio")
    assert sum(int((np.abs(a).max(axis=1) == 0).sum()) for a in silent) == 1

    skipping = prepare_cli("kinetics400", raw, tmp_path / "skipping", "size=32", "clip_seconds=1", "missing_audio=skip")
    assert {s["id"] for s in skipping["skipped"]} == {"k0y3_000030_000040", "k1y2_000020_000030"} and not skipping["filled"]

    results = train_every_method("kinetics400", prepared, tmp_path / "runs", ["audio", "visual"],
                                 ["data.options.visual.crop=32", "data.options.audio.seconds=0.5"])
    assert results["naive"]["n_test"] == 3


@pytest.mark.slow
def test_modelnet40_prepare_train_probe(tmp_path):
    from raw_layouts import make_modelnet40, view_value

    raw, prepared = tmp_path / "raw", tmp_path / "prepared"
    make_modelnet40(raw)
    (raw / "bed/train/bed_0002.obj.shaded_v007.png").unlink()
    (raw / "chair/train/chair_0003.obj.shaded_v001.png").write_bytes(b"\x89PNG truncated")

    report = prepare_cli("modelnet40", raw, prepared, "size=32")
    why = {item["id"]: item["why"] for item in report["skipped"]}
    assert set(why) == {"bed_0002", "chair_0003"}
    assert "lacks view(s) [7]" in why["bed_0002"] and "chair_0003.obj.shaded_v001.png: not a readable image" in why["chair_0003"]
    assert report["written"] == {"train": 8, "val": 2, "test": 3}
    labels = shard_labels(prepared, "test")
    for view in (0, 6, 11):
        values = shard_arrays(prepared, "test", f"view{view:02d}")
        assert [int(round(v.mean())) for v in values] == [view_value(label, view) for label in labels]

    results = train_every_method("modelnet40", prepared, tmp_path / "runs", ["front", "rear"], ["data.options.image.crop=32"])
    assert results["ume"]["modalities"] == ["front", "rear"]
