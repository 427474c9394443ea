"""The prepared format (resume, refusals, validation carving), augmentation and the ResNet18 encoder."""

from __future__ import annotations

import json

import pytest
import torch

from latefusion.cli import main
from latefusion.errors import DataError
from latefusion.config import ConfigError, EncoderConfig, RunConfig, read_yaml
from latefusion.resolve import resolve_config
from latefusion.data import build_dataset
from latefusion.data.augment import AudioAugment, AudioTransform, FlowTransform, FrameTransform, ImageAugment
from latefusion.data.carve import carve_validation
from latefusion.data.files import DataFormatError
from latefusion.data.prepared import prepare
from latefusion.methods import METHODS
from latefusion.models import build_encoder
from latefusion.models.input_stage import build_input_stage

from test_datasets import CONFIGS


def test_prepare_resumes_and_refuses_other_settings(tmp_path):
    from raw_layouts import make_modelnet40

    raw, dst = tmp_path / "raw", tmp_path / "prepared"
    make_modelnet40(raw, train=2, test=1)
    first = prepare("modelnet40", raw, dst, {"size": 8, "shard_size": 2}, workers=1, progress=False)
    assert first["shards"] == {"total": 5, "written": 5, "reused": 0}  # train 4, val 2, test 3 in shards of 2
    # An interrupted run: one shard never got its manifest, and the index was never written.
    (dst / "shards" / "train-00001.json").unlink()
    (dst / "index.json").unlink()
    with pytest.raises(DataError, match="prepare stopped before it finished; rerun"):
        build_dataset(RunConfig.model_validate({"data": {"name": "modelnet40", "path": str(dst)}}).data)
    second = prepare("modelnet40", raw, dst, {"size": 8, "shard_size": 2}, workers=1, progress=False)
    assert second["shards"] == {"total": 5, "written": 1, "reused": 4} and second["written"] == first["written"]
    with pytest.raises(DataError, match="prepared with other settings"):
        prepare("modelnet40", raw, dst, {"size": 16, "shard_size": 2}, workers=1, progress=False)
    with pytest.raises(ConfigError, match="unknown key"):
        prepare("modelnet40", raw, tmp_path / "other", {"sise": 16})
    with pytest.raises(DataError, match="is a 'modelnet40' folder"):
        build_dataset(RunConfig.model_validate({"data": {"name": "ucf101", "path": str(dst)}}).data)


def modelnet_config(dst):
    return RunConfig.model_validate({"data": {"name": "modelnet40", "path": str(dst)}}).data


def test_prepare_records_checksums_repairs_damaged_shards_and_retries_changed_raw_files(tmp_path, capsys):
    from raw_layouts import make_modelnet40

    raw, dst = tmp_path / "raw", tmp_path / "prepared"
    make_modelnet40(raw, train=2, test=1)
    options = {"size": 8, "shard_size": 2}
    good = next(raw.rglob("*_0101.obj.shaded_v001.png"))  # a test object's first view
    original = good.read_bytes()
    good.write_bytes(original[:40])  # a download cut short: prepare leaves its object out
    first = prepare("modelnet40", raw, dst, options, workers=1, progress=False)
    assert first["written"]["test"] == 2 and [x["id"] for x in first["skipped"]] == [good.name.split(".")[0]]
    manifest = json.loads((dst / "shards" / "train-00000.json").read_text())
    assert set(manifest["files"]) == {f"view{v:02d}" for v in range(12)}
    assert manifest["files"]["view00"]["bytes"] == (dst / "shards" / "train-00000" / "view00.npy").stat().st_size

    view = dst / "shards" / "train-00000" / "view03.npy"
    healthy = view.read_bytes()
    view.write_bytes(healthy[:-10])  # cut short: seen when the folder is opened
    with pytest.raises(DataFormatError, match=r"train-00000: view03\.npy holds \d+ bytes, prepare wrote \d+; rerun"):
        build_dataset(modelnet_config(dst))
    flipped = bytearray(healthy)
    flipped[-1] ^= 1
    view.write_bytes(bytes(flipped))  # same size, other bytes: only the checksums see it
    build_dataset(modelnet_config(dst))
    assert main(["check-data", "modelnet40", "--set", f"data.path={dst}"]) == 1
    assert "damaged-shard (1):\n    train: shards/train-00000/view03.npy differs from what prepare wrote (checksum); rerun" in capsys.readouterr().out

    good.write_bytes(original)  # the download repaired
    second = prepare("modelnet40", raw, dst, options, workers=1, progress=False)
    assert second["shards"] == {"total": 5, "written": 2, "reused": 3}  # the damaged shard, and the one of the repaired object
    assert second["written"]["test"] == 3 and second["skipped"] == []
    assert view.read_bytes() == healthy
    assert main(["check-data", "modelnet40", "--set", f"data.path={dst}"]) == 0


def test_prepare_writing_no_sample_is_an_error(tmp_path):
    from raw_layouts import make_modelnet40

    raw = tmp_path / "raw"
    make_modelnet40(raw, train=1, test=1)
    for image in raw.rglob("*v001.png"):
        image.write_bytes(b"not a png")
    with pytest.raises(DataFormatError, match=r"prepare modelnet40: no sample of .* could be prepared \(6 left out\); .*report\.json says why"):
        prepare("modelnet40", raw, tmp_path / "prepared", {"size": 8}, workers=1, progress=False)
    assert not (tmp_path / "prepared" / "index.json").exists()


def test_validation_is_carved_by_whole_groups_and_seeded():
    splits, groups = ["train"] * 40 + ["test"], [f"g{i // 4}" for i in range(40)] + ["g0"]
    carved = carve_validation(splits, 0.25, seed=0, groups=groups)
    val_groups = {g for g, s in zip(groups, carved) if s == "val"}
    assert carved.count("val") == 12  # three groups of 4: the first to reach 25%
    assert val_groups == {"g1", "g7", "g8"}  # the groups prepare carved before carving served the folder data too
    assert val_groups.isdisjoint({g for g, s in zip(groups, carved) if s == "train"})
    assert carved == carve_validation(splits, 0.25, seed=0, groups=groups)
    assert val_groups != {g for g, s in zip(groups, carve_validation(splits, 0.25, seed=1, groups=groups)) if s == "val"}
    assert carved[-1] == "test"
    # Without groups every sample is its own: exactly the share, at least one sample.
    assert carve_validation(splits, 0.25, seed=0).count("val") == 10
    assert carve_validation(["train"] * 5, 0.01, seed=0).count("val") == 1


def test_flow_flip_mirrors_the_image_and_negates_x():
    torch.manual_seed(0)
    flow = torch.full((64, 2, 16, 16, 2), 128, dtype=torch.uint8)
    flow[..., 0] = 168  # motion to the right (+40 / 128)
    flow[:, :, :, :8, 1] = 200  # y channel: bright on the left half
    transform = FlowTransform(ImageAugment(crop=16, scale_min=1.0), train=True)
    batch = transform(flow)
    assert batch.shape == (64, 4, 16, 16) and batch.dtype == torch.int16
    out = build_input_stage(transform.stage)(batch)
    x_sign = out[:, 0].mean((1, 2)).sign()
    assert set(x_sign.tolist()) == {-1.0, 1.0}  # both flipped and unflipped samples
    left_brighter = out[:, 1, :, :4].mean((1, 2)) > out[:, 1, :, -4:].mean((1, 2))
    assert torch.equal(left_brighter, x_sign > 0)  # a flipped sample is mirrored and moves left
    evaluation = FlowTransform(ImageAugment(crop=8), train=False)
    assert torch.equal(evaluation(flow), evaluation(flow)) and (evaluation(flow)[:, 0] > 128).all()


def test_frames_share_a_crop_and_evaluation_is_deterministic():
    frames = torch.randint(0, 256, (4, 3, 20, 20, 3), dtype=torch.uint8)
    frames[:, 1] = frames[:, 0]
    train = FrameTransform(ImageAugment(crop=12), train=True)(frames)
    assert train.shape == (4, 3, 3, 12, 12) and train.dtype == torch.uint8 and torch.equal(train[:, 0], train[:, 1])
    evaluation = FrameTransform(ImageAugment(crop=12), train=False)
    assert torch.equal(evaluation(frames), evaluation(frames))
    assert evaluation(frames[:, 0]).shape == (4, 3, 12, 12)  # single images (views)


def test_audio_takes_a_random_window_for_training_and_the_middle_for_evaluation():
    wave = torch.randint(-3000, 3000, (6, 16000), dtype=torch.int16)
    options = AudioAugment(seconds=0.5)
    evaluation = AudioTransform(options, 16000, train=False)
    window = evaluation(wave)
    assert window.dtype == torch.int16 and torch.equal(window, wave[:, 4000:12000])
    spec = build_input_stage(evaluation.stage)(window)
    assert spec.shape == (6, *evaluation.shape((16000,))) == (6, 1, 129, 63)
    torch.manual_seed(0)
    assert not torch.equal(AudioTransform(options, 16000, train=True)(wave), window)
    with pytest.raises(DataError, match="prepared clips hold 16000"):
        AudioTransform(AudioAugment(seconds=2), 16000, train=False)(wave)


@pytest.mark.parametrize("shape", [(1, 33, 40), (33, 40), (3, 3, 32, 32), (10, 24, 24)])
def test_resnet18_takes_every_input_kind_and_channels_last(shape):
    encoder = build_encoder(EncoderConfig(name="resnet18", options={"width": 4}), shape, 16).eval()
    x = torch.randn(2, *shape)
    out = encoder(x)
    assert out.shape == (2, 16)
    # float32 convolutions summed in another order (another memory layout, another frame order): relative 1e-4
    if len(shape) == 3:
        torch.testing.assert_close(encoder(x.contiguous(memory_format=torch.channels_last)), out, rtol=1e-4, atol=1e-5)
    if len(shape) == 4:  # frames are pooled: the clip's order does not matter
        torch.testing.assert_close(encoder(x.flip(1)), out, rtol=1e-4, atol=1e-5)


def test_standard_resnet18_size():
    encoder = build_encoder(EncoderConfig(name="resnet18"), (3, 224, 224), 512)
    assert sum(p.numel() for p in encoder.parameters()) == 11_176_512  # torchvision's resnet18 without its fc layer


CONFIG_FILES = sorted(p for p in CONFIGS.rglob("*.yaml") if p.name != "base.yaml")  # the recipes; base.yaml: their shared part
# configs/<data set>[/<variant>]/<method>.yaml -> its modalities
MODALITIES = {"vggsound": ["audio", "visual"], "kinetics400": ["audio", "visual"], "kinetics400/rgb_flow": ["rgb", "flow"],
              "ucf101": ["rgb", "flow"], "modelnet40": ["front", "rear"],
              "crema-d": ["audio", "visual"], "kinetics-sounds": ["audio", "visual"], "ave": ["audio", "visual"]}


def folder(path) -> str:
    return path.parent.relative_to(CONFIGS).as_posix()


@pytest.mark.parametrize("path", CONFIG_FILES, ids=[f"{folder(p)}/{p.stem}" for p in CONFIG_FILES])
def test_every_shipped_config_validates(path):
    config = resolve_config(path)
    assert config.data.name == folder(path).split("/")[0]
    METHODS.get(config.method.name).Options.model_validate(config.method.options)
    assert list(config.model.encoders) == MODALITIES[folder(path)]


def test_configs_of_a_data_set_differ_only_in_method():
    datasets = sorted({folder(p) for p in CONFIG_FILES})
    assert datasets == ["ave", "crema-d", "kinetics-sounds", "kinetics400", "kinetics400/rgb_flow", "modelnet40", "ucf101", "vggsound"]
    for dataset in datasets:
        raws = {p.stem: read_yaml(p) for p in CONFIGS.glob(f"{dataset}/*.yaml") if p.name != "base.yaml"}
        assert sorted(raws) == sorted(["naive", "ume", "umt", "unimodal", *{"vggsound": ["ogm_ge"], "crema-d": ["ogm_ge"]}.get(dataset, [])])
        shared = [{k: v for k, v in raw.items() if k != "method"} for raw in raws.values()]
        assert all(s == shared[0] for s in shared), dataset
