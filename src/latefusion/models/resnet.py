"""ResNet18 (He et al., 2016), written here so the core install stays torch-only, for every input the
paper's data sets give:

  (C, H, W)     a spectrogram (C = 1), a rendered view (C = 3) or stacked optical flow (C = 2L)
  (T, C, H, W)  frames of a clip: each frame through the 2D network, features averaged over time
  (H, W)        treated as one channel

`width` scales every stage (64 is the standard network; tests use 8). Features are the pooled last
stage (8 x width channels), projected to `out_dim` by a linear layer when the sizes differ. Only
reshape/flatten are used on activations, so the encoder runs in channels_last memory format as is.

`weights: PATH` starts training from an ImageNet-pretrained ResNet18 that you downloaded (nothing is
fetched here), in torchvision's or timm's key names (both name the layers conv1, bn1, layerK.J.*,
downsample, fc). It is read with `torch.load(weights_only=True)` once, before the first step
(`load_pretrained`), never when a trained run is loaded: the run's own checkpoint holds the weights.
Inputs with other than 3 channels get the RGB filters of the first convolution averaged over colour
and repeated per channel: a spectrogram (1 channel), or a stack of 2L optical-flow channels (the
cross-modality initialisation of two-stream networks, Wang et al., "Temporal Segment Networks", 2016).
The classifier (`fc`) is not used.
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Annotated

import torch
from pydantic import Field
from torch import Tensor, nn

from ..config import MAX_CHANNELS
from ..errors import ConfigError
from .registry import ENCODERS


class BasicBlock(nn.Module):
    def __init__(self, in_channels: int, channels: int, stride: int) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(in_channels, channels, 3, stride, 1, bias=False)
        self.bn1 = nn.BatchNorm2d(channels)
        self.conv2 = nn.Conv2d(channels, channels, 3, 1, 1, bias=False)
        self.bn2 = nn.BatchNorm2d(channels)
        self.relu = nn.ReLU(inplace=True)
        self.shortcut = nn.Identity()
        if stride != 1 or in_channels != channels:
            self.shortcut = nn.Sequential(nn.Conv2d(in_channels, channels, 1, stride, bias=False), nn.BatchNorm2d(channels))

    def forward(self, x: Tensor) -> Tensor:
        out = self.relu(self.bn1(self.conv1(x)))
        out = self.bn2(self.conv2(out))
        return self.relu(out + self.shortcut(x))


# The last stage has 8 x width channels.
StemWidth = Annotated[int, Field(gt=0, le=MAX_CHANNELS // 8)]


@ENCODERS.register("resnet18")
class ResNet18(nn.Module):
    def __init__(self, input_shape: tuple[int, ...], out_dim: int, width: StemWidth = 64, weights: str | None = None) -> None:
        super().__init__()
        if len(input_shape) not in (2, 3, 4):
            raise ConfigError(f"resnet18 takes (H, W), (C, H, W) or (T, C, H, W) inputs, not shape {input_shape}")
        if weights is not None and width != 64:
            raise ConfigError(f"resnet18: pretrained weights ({weights}) are for width 64, not width {width}")
        self.weights_file = weights
        self.input_dims = len(input_shape)
        channels = 1 if len(input_shape) == 2 else input_shape[-3]
        self.stem = nn.Sequential(
            nn.Conv2d(channels, width, 7, 2, 3, bias=False), nn.BatchNorm2d(width), nn.ReLU(inplace=True), nn.MaxPool2d(3, 2, 1),
        )
        stages, in_channels = [], width
        for i in range(4):
            out_channels = width * 2**i
            stride = 1 if i == 0 else 2
            stages.append(nn.Sequential(BasicBlock(in_channels, out_channels, stride), BasicBlock(out_channels, out_channels, 1)))
            in_channels = out_channels
        self.stages = nn.Sequential(*stages)
        self.project = nn.Identity() if in_channels == out_dim else nn.Linear(in_channels, out_dim)
        self.out_dim = out_dim
        for module in self.modules():
            if isinstance(module, nn.Conv2d):
                nn.init.kaiming_normal_(module.weight, mode="fan_out", nonlinearity="relu")
        # Zero the last BN of each residual branch: every block starts as the identity (Goyal et al., 2017).
        for module in self.modules():
            if isinstance(module, BasicBlock):
                nn.init.zeros_(module.bn2.weight)

    def forward(self, x: Tensor) -> Tensor:
        if self.input_dims == 2:
            x = x.unsqueeze(1)
        batch = x.shape[0]
        if self.input_dims == 4:
            x = x.flatten(0, 1)  # every frame of every clip through the same 2D network
        features = self.stages(self.stem(x)).mean(dim=(2, 3))
        features = features.reshape(batch, -1, features.shape[1]).mean(1)  # average over a clip's frames
        return self.project(features)

    def load_pretrained(self) -> None:
        """Copy the weights of `self.weights_file` into this network (see the module docstring)."""
        path = Path(self.weights_file)
        if not path.is_file():
            raise ConfigError(f"resnet18 weights file {path} does not exist")
        try:
            state = torch.load(path, map_location="cpu", weights_only=True)
        except Exception as error:  # whatever torch.load raises for a file that is not a tensor checkpoint
            raise ConfigError(f"resnet18 weights file {path} could not be read as a tensor checkpoint ({type(error).__name__}: "
                              f"{str(error).splitlines()[0][:200]})") from None
        state = state.get("state_dict", state.get("model", state)) if isinstance(state, dict) else state
        if not isinstance(state, dict):
            raise ConfigError(f"resnet18 weights file {path} holds a {type(state).__name__}, not a state dict")
        ours = self.state_dict()
        mapped = {}
        for key, value in state.items():
            name = torchvision_to_ours(key.removeprefix("module."))
            if name is not None:
                mapped[name] = value
        stem = mapped.get("stem.0.weight")
        if stem is not None and stem.shape[1] == 3 and ours["stem.0.weight"].shape[1] != 3:
            channels = ours["stem.0.weight"].shape[1]
            mapped["stem.0.weight"] = stem.mean(1, keepdim=True).repeat(1, channels, 1, 1)
        wanted = {k for k in ours if not k.startswith("project.")}
        missing, unexpected = sorted(wanted - mapped.keys()), sorted(mapped.keys() - wanted)
        wrong = sorted(k for k in wanted & mapped.keys() if mapped[k].shape != ours[k].shape)
        if missing or unexpected or wrong:
            raise ConfigError(f"resnet18 weights file {path} does not fit a ResNet18 in torchvision's or timm's key names: "
                              f"missing {missing[:5]}{' ...' if len(missing) > 5 else ''}, unexpected {unexpected[:5]}"
                              f"{' ...' if len(unexpected) > 5 else ''}, wrong shape {wrong[:5]}")
        self.load_state_dict({**ours, **mapped})


def torchvision_to_ours(key: str) -> str | None:
    """torchvision/timm ResNet key -> this module's key; None for the classifier."""
    if key.startswith("fc."):
        return None
    key = re.sub(r"^conv1\.", "stem.0.", key)
    key = re.sub(r"^bn1\.", "stem.1.", key)
    key = re.sub(r"^layer(\d)\.", lambda m: f"stages.{int(m.group(1)) - 1}.", key)
    return key.replace(".downsample.", ".shortcut.")
