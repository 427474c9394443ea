"""`encoder.options.weights`: an ImageNet-pretrained ResNet18 from a local file in torchvision's key
names, loaded safely into every kind of input, refused by name when it does not fit, and never needed
again once a run has trained."""

from __future__ import annotations

import re

import pytest
import torch

from latefusion.errors import ConfigError
from latefusion.methods import load_model
from latefusion.models.resnet import ResNet18
from latefusion.resolve import resolve_config
from latefusion.train import train


def torchvision_state(seed: int = 0) -> dict[str, torch.Tensor]:
    """A ResNet18 state dict as torchvision names it (conv1, bn1, layerK.J, downsample, fc), with
    random values, written here from the layout of torchvision's model, not through latefusion's mapping."""
    g = torch.Generator().manual_seed(seed)
    state = {"conv1.weight": torch.randn(64, 3, 7, 7, generator=g)}

    def bn(prefix: str, channels: int) -> None:
        for name in ("weight", "bias", "running_mean", "running_var"):
            state[f"{prefix}.{name}"] = torch.rand(channels, generator=g) + (0.5 if name == "running_var" else 0)
        state[f"{prefix}.num_batches_tracked"] = torch.tensor(7)

    bn("bn1", 64)
    in_channels = 64
    for layer, channels in enumerate((64, 128, 256, 512), 1):
        for block in range(2):
            prefix = f"layer{layer}.{block}"
            first = in_channels if block == 0 else channels
            state[f"{prefix}.conv1.weight"] = torch.randn(channels, first, 3, 3, generator=g)
            bn(f"{prefix}.bn1", channels)
            state[f"{prefix}.conv2.weight"] = torch.randn(channels, channels, 3, 3, generator=g)
            bn(f"{prefix}.bn2", channels)
            if block == 0 and layer > 1:
                state[f"{prefix}.downsample.0.weight"] = torch.randn(channels, first, 1, 1, generator=g)
                bn(f"{prefix}.downsample.1", channels)
        in_channels = channels
    state["fc.weight"], state["fc.bias"] = torch.randn(1000, 512, generator=g), torch.randn(1000, generator=g)
    return state


@pytest.fixture
def weights_file(tmp_path):
    path = tmp_path / "resnet18-f37072fd.pth"
    torch.save(torchvision_state(), path)
    return path


@pytest.mark.parametrize("shape, channels", [((3, 32, 32), 3), ((2, 3, 32, 32), 3), ((1, 32, 32), 1), ((10, 32, 32), 10)])
def test_torchvision_weights_arrive_in_every_input_kind(weights_file, shape, channels):
    source = torchvision_state()
    encoder = ResNet18(shape, 16, weights=str(weights_file))
    encoder.load_pretrained()
    state = encoder.state_dict()
    stem = source["conv1.weight"] if channels == 3 else source["conv1.weight"].mean(1, keepdim=True).repeat(1, channels, 1, 1)
    torch.testing.assert_close(state["stem.0.weight"], stem)
    torch.testing.assert_close(state["stem.1.running_var"], source["bn1.running_var"])
    torch.testing.assert_close(state["stages.3.1.conv2.weight"], source["layer4.1.conv2.weight"])
    torch.testing.assert_close(state["stages.2.0.shortcut.1.weight"], source["layer3.0.downsample.1.weight"])


def test_a_file_that_does_not_fit_is_refused_by_name(tmp_path, weights_file):
    encoder = ResNet18((3, 32, 32), 16, weights=str(weights_file))
    broken = torchvision_state()
    del broken["layer2.0.conv1.weight"]
    broken["head.weight"] = torch.zeros(1)
    torch.save({"state_dict": broken}, tmp_path / "broken.pth")
    encoder.weights_file = str(tmp_path / "broken.pth")
    with pytest.raises(ConfigError, match=re.escape("broken.pth does not fit") + r".*missing \['stages.1.0.conv1.weight'\].*unexpected \['head.weight'\]"):
        encoder.load_pretrained()
    (tmp_path / "text.pth").write_text("not a checkpoint")
    encoder.weights_file = str(tmp_path / "text.pth")
    with pytest.raises(ConfigError, match="text.pth could not be read as a tensor checkpoint"):
        encoder.load_pretrained()
    encoder.weights_file = str(tmp_path / "absent.pth")
    with pytest.raises(ConfigError, match="absent.pth does not exist"):
        encoder.load_pretrained()
    with pytest.raises(ConfigError, match="width 64, not width 8"):
        ResNet18((3, 32, 32), 16, width=8, weights=str(weights_file))


def test_a_run_starts_from_the_weights_and_never_needs_the_file_again(tmp_path, weights_file):
    from latefusion.data import DataBundle, Modality, TensorSplit

    g = torch.Generator().manual_seed(0)
    splits = {s: TensorSplit({"image": torch.randn(16, 3, 32, 32, generator=g)}, torch.randint(2, (16,), generator=g)) for s in ("train", "val", "test")}
    bundle = DataBundle("pictures", [Modality("image", "image", (3, 32, 32))], 2, splits=splits)
    config = resolve_config(None, ["method.name=unimodal", "method.options.modality=image", "model.encoders.image.name=resnet18",
                                   f"model.encoders.image.options.weights={weights_file}", "train.epochs=1", "train.progress=false",
                                   "optim.lr=0.000001", "data.batch_size=16", "model.feature_dim=16"])
    train(config, tmp_path / "run", bundle=bundle)
    weights_file.unlink()
    model = load_model(tmp_path / "run")
    # One tiny step away from the pretrained filters, not from a random initialisation.
    trained = model.encoders["image"].state_dict()["stem.0.weight"]
    assert (trained - torchvision_state()["conv1.weight"]).abs().max() < 1e-3
