"""The paper's data sets end to end on tiny raw copies: prepare -> `latefusion train` with the
shipped configs (every method) -> probe; plus what prepare reports for damaged or missing files."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from latefusion.cli import main
from latefusion.data.prepared import prepare
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
        probe = json.loads((runs / name / "probe.json").read_text())
        assert set(probe) == ({name.removeprefix("unimodal-")} if name.startswith("unimodal") else set(modalities))
    return results


def prepare_cli(dataset: str, src: Path, dst: Path, *options: str) -> dict:
    sets = [arg for item in options for arg in ("--set", item)]
    assert main(["prepare", dataset, "--src", str(src), "--dst", str(dst), "--workers", "2", *sets]) == 0
    return json.loads((dst / "report.json").read_text())


def shard_arrays(prepared: Path, split: str, array: str) -> np.ndarray:
    index = json.loads((prepared / "index.json").read_text())
    return np.concatenate([np.load(prepared / "shards" / e["shard"] / f"{array}.npy") for e in index["splits"][split]])


def shard_labels(prepared: Path, split: str) -> np.ndarray:
    index = json.loads((prepared / "index.json").read_text())
    return np.concatenate([json.loads((prepared / "shards" / f"{e['shard']}.json").read_text())["labels"] for e in index["splits"][split]])


@pytest.mark.slow
def test_ucf101_prepare_train_probe(tmp_path):
    raw, prepared = tmp_path / "raw", tmp_path / "prepared"
    make_ucf101(raw)
    # Damage: a clip that is not a video, a listed clip whose file is gone, one with no flow.
    (raw / "UCF-101/Basketball/v_Basketball_g03_c01.avi").write_bytes(b"not a video")
    (raw / "UCF-101/Drumming/v_Drumming_g01_c02.avi").unlink()
    for axis in ("u", "v"):
        for f in (raw / "tvl1_flow" / axis / "v_ApplyEyeMakeup_g03_c02").iterdir():
            f.unlink()
        (raw / "tvl1_flow" / axis / "v_ApplyEyeMakeup_g03_c02").rmdir()

    report = prepare_cli("ucf101", raw, prepared, "size=32", "val_fraction=0.2", "shard_size=4", "flow_frames=4")
    why = {item["id"]: item["why"] for item in report["skipped"]}
    assert set(why) == {"v_Basketball_g03_c01", "v_Drumming_g01_c02", "v_ApplyEyeMakeup_g03_c02"}
    assert "not a readable media file" in why["v_Basketball_g03_c01"] and "v_Basketball_g03_c01.avi" in why["v_Basketball_g03_c01"]
    assert "missing file" in why["v_Drumming_g01_c02"]
    assert "no flow frames for v_ApplyEyeMakeup_g03_c02" in why["v_ApplyEyeMakeup_g03_c02"]
    # 3 classes x 3 train groups x 2 clips, one group carved out as validation; group 1 is test.
    assert report["written"] == {"train": 12 - 2, "val": 6, "test": 6 - 1}
    assert report["listed"] == 24

    # What was stored is what was written: each class's colour and horizontal motion.
    from raw_layouts import colour

    labels = shard_labels(prepared, "train")
    rgb, flow = shard_arrays(prepared, "train", "rgb"), shard_arrays(prepared, "train", "flow")
    assert rgb.shape[1:] == (3, 32, 32, 3) and flow.shape[1:] == (4, 32, 32, 2)
    for label in range(3):
        np.testing.assert_allclose(rgb[labels == label].mean((0, 1, 2, 3)), colour(label), atol=6)
        assert abs(flow[labels == label][..., 0].mean() - (128 + 30 * (label - 1))) < 3
    # Validation holds whole groups, none of them in train.
    val_ids = [i for e in json.loads((prepared / "index.json").read_text())["splits"]["val"] for i in json.loads((prepared / "shards" / f"{e['shard']}.json").read_text())["ids"]]
    train_ids = [i for e in json.loads((prepared / "index.json").read_text())["splits"]["train"] for i in json.loads((prepared / "shards" / f"{e['shard']}.json").read_text())["ids"]]
    assert {i.split("_g")[1][:2] for i in val_ids}.isdisjoint({i.split("_g")[1][:2] for i in train_ids})

    results = train_every_method("ucf101", prepared, tmp_path / "runs", ["rgb", "flow"],
                                 ["data.options.rgb.crop=32", "data.options.flow.crop=32"])
    assert results["ume"]["n_test"] == 5 and results["naive"]["n_val"] == 6
