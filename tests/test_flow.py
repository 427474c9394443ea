"""Optical flow computed during prepare (data/flow.py): the estimator on known motion, the stored
format, and UCF101 without flow JPEGs and Kinetics-400 as RGB + flow end to end."""

from __future__ import annotations

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from latefusion.cli import main
from latefusion.data.flow import estimate_flow, flow_stack, median_filter, quantise

from test_datasets import CONFIGS, prepare_cli, shard_arrays, shard_ids, shard_labels, train_every_method


def texture(height: int, width: int, dx: float = 0.0, dy: float = 0.0, seed: int = 0) -> torch.Tensor:
    """A random sum of sinusoids in 0..255, sampled at (x - dx, y - dy): the same picture moved by
    (dx, dy) pixels, right and down, exactly, subpixel shifts included."""
    rng = np.random.default_rng(seed)
    y, x = np.mgrid[:height, :width].astype(np.float64)
    image = np.zeros((height, width))
    for _ in range(12):
        period, angle, phase = rng.uniform(6, 40), rng.uniform(0, np.pi), rng.uniform(0, 2 * np.pi)
        image += np.sin(2 * np.pi / period * (np.cos(angle) * (x - dx) + np.sin(angle) * (y - dy)) + phase)
    return torch.from_numpy(128 + 100 * image / np.abs(image).max()).float()


@pytest.mark.parametrize("dx, dy", [(3.0, -2.0), (-6.5, 1.5), (0.4, 0.0), (0.0, -9.0)])
def test_a_known_translation_is_recovered_with_x_right_and_y_down(dx, dy):
    first, second = texture(72, 96), texture(72, 96, dx, dy)
    with torch.inference_mode():
        flow = estimate_flow(first[None], second[None])[0]
    inner = flow[:, 16:-16, 16:-16]  # away from the borders, where content enters or leaves the frame
    assert inner[0].median().item() == pytest.approx(dx, abs=0.1)
    assert inner[1].median().item() == pytest.approx(dy, abs=0.1)
    end_point_error = (inner - torch.tensor([dx, dy]).view(2, 1, 1)).norm(dim=0)
    assert end_point_error.mean() < 0.1


def test_pairs_of_a_batch_are_independent():
    frames = torch.stack([texture(48, 64, dx=k) for k in range(4)])  # moves 1 px right per frame
    with torch.inference_mode():
        batched = estimate_flow(frames[:-1], frames[1:])
        one = estimate_flow(frames[1:2], frames[2:3])
    torch.testing.assert_close(batched[1:2], one, atol=1e-3, rtol=0)
    reverse = estimate_flow(frames[1:2], frames[:1])  # backwards in time: moves left
    assert reverse[0, 0, 8:-8, 8:-8].median().item() == pytest.approx(-1.0, abs=0.1)


def test_stored_as_the_tv_l1_releases_store_flow():
    # [-20, 20] pixels mapped linearly onto 0..255 and clipped, as TSN's dense_flow writes its JPEGs.
    pixels = torch.tensor([-35.0, -20.0, -10.0, 0.0, 5.0, 20.0, 35.0])
    assert quantise(pixels).tolist() == [0, 0, 64, 128, 159, 255, 255]
    # Three frames moving (2, -1) per frame -> two fields of (size, size, 2), x first, resized, values kept.
    frames = np.stack([texture(60, 80, 2.0 * k, -1.0 * k).round().clamp(0, 255).byte().numpy() for k in range(3)])
    stored = flow_stack(frames, size=32)
    assert stored.shape == (2, 32, 32, 2) and stored.dtype == np.uint8
    assert np.median(stored[:, 4:-4, 4:-4, 0]) == 140 and np.median(stored[:, 4:-4, 4:-4, 1]) == 121  # +2 and -1 px
    still = flow_stack(np.repeat(frames[:1], 3, axis=0), size=16)
    assert set(np.unique(still)) <= {127, 128}


def test_median_filter_is_the_exact_3x3_median():
    x = torch.randn(2, 2, 9, 13)
    patches = F.unfold(F.pad(x, (1, 1, 1, 1), mode="replicate"), 3).view(2, 2, 9, -1)
    assert torch.equal(median_filter(x), patches.median(dim=2).values.view_as(x))


@pytest.mark.slow
def test_ucf101_without_flow_jpegs_prepare_train_probe(tmp_path):
    from raw_layouts import colour, flow_value, make_ucf101, motion

    raw, prepared = tmp_path / "raw", tmp_path / "prepared"
    make_ucf101(raw, groups=3, precomputed_flow=False)
    report = prepare_cli("ucf101", raw, prepared, "size=32", "val_fraction=0.3", "flow_frames=4")
    assert not report["skipped"] and sum(report["written"].values()) == 18
    written = {i for split in ("train", "val", "test") for i in shard_ids(prepared, split)}
    assert {item["id"] for item in report["filled"]} == written
    assert all(item["note"].startswith("no precomputed flow: flow computed during prepare") for item in report["filled"])

    labels = shard_labels(prepared, "train")
    rgb, flow = shard_arrays(prepared, "train", "rgb"), shard_arrays(prepared, "train", "flow")
    assert flow.shape[1:] == (4, 32, 32, 2) and flow.dtype == np.uint8
    for label in range(3):
        np.testing.assert_allclose(rgb[labels == label].mean((0, 1, 2, 3)), colour(label), atol=6)
        medians = np.median(flow[labels == label][:, :, 4:-4, 4:-4], axis=(0, 1, 2, 3))
        np.testing.assert_allclose(medians, [flow_value(m) for m in motion(label)], atol=1)

    results = train_every_method("ucf101", prepared, tmp_path / "runs", ["rgb", "flow"],
                                 ["data.options.rgb.crop=32", "data.options.flow.crop=32"])
    assert results["umt"]["n_test"] == 6


@pytest.mark.slow
def test_ucf101_flow_source_compute_ignores_the_jpegs(tmp_path):
    from raw_layouts import flow_value, make_ucf101, motion, write_image

    raw = tmp_path / "raw"
    make_ucf101(raw, groups=2)
    for jpeg in (raw / "tvl1_flow").rglob("*.jpg"):
        write_image(jpeg, 128, "L")  # JPEGs that say "no motion": computing must not read them
    report = prepare_cli("ucf101", raw, tmp_path / "prepared", "size=32", "val_fraction=0", "flow_frames=4", "flow_source=compute")
    assert len(report["filled"]) == sum(report["written"].values()) == 12
    assert all(item["note"].startswith("flow_source=compute: flow computed during prepare") for item in report["filled"])
    labels, flow = shard_labels(tmp_path / "prepared", "train"), shard_arrays(tmp_path / "prepared", "train", "flow")
    for label in range(3):
        medians = np.median(flow[labels == label][:, :, 4:-4, 4:-4], axis=(0, 1, 2, 3))
        np.testing.assert_allclose(medians, [flow_value(m) for m in motion(label)], atol=1)


@pytest.mark.slow
def test_kinetics400_rgb_flow_prepare_train_probe(tmp_path, capsys):
    from raw_layouts import flow_value, make_kinetics, motion

    raw, prepared = tmp_path / "raw", tmp_path / "prepared"
    make_kinetics(raw)
    report = prepare_cli("kinetics400", raw, prepared, "size=32", "modalities=rgb_flow", "flow_frames=3", "val_fraction=0.2")
    assert not report["skipped"] and not report["filled"] and report["written"]["test"] == 3
    labels = shard_labels(prepared, "test")
    flow = shard_arrays(prepared, "test", "flow")
    assert shard_arrays(prepared, "test", "rgb").shape[1:] == (3, 32, 32, 3) and flow.shape[1:] == (3, 32, 32, 2)
    for label, clip in zip(labels, flow):
        np.testing.assert_allclose(np.median(clip[:, 4:-4, 4:-4], axis=(0, 1, 2)), [flow_value(m) for m in motion(label)], atol=1)

    results = train_every_method("kinetics400/rgb_flow", prepared, tmp_path / "runs", ["rgb", "flow"],
                                 ["data.options.rgb.crop=32", "data.options.flow.crop=32"])
    assert results["naive"]["modalities"] == ["rgb", "flow"] and results["naive"]["n_test"] == 3
    # An audio-visual config on an RGB + flow folder is refused, naming what the folder holds.
    assert main(["train", "--config", str(CONFIGS / "kinetics400" / "naive.yaml"), "--out", str(tmp_path / "wrong"),
                 "--set", f"data.path={prepared}"]) == 2
    assert "prepared with modalities=rgb_flow" in capsys.readouterr().err
