"""Per-modality encoders. Each maps a batch of one modality to a (batch, out_dim) feature matrix."""

from __future__ import annotations

import math

import torch
from torch import Tensor, nn

from ..config import MAX_CHANNELS, Channels, Layers
from ..errors import ConfigError
from .registry import ENCODERS


@ENCODERS.register("mlp")
class MLPEncoder(nn.Module):
    """Flattens its input and applies `depth` Linear-ReLU layers."""

    def __init__(self, input_shape: tuple[int, ...], out_dim: int, hidden: Channels = 128, depth: Layers = 2) -> None:
        super().__init__()
        layers: list[nn.Module] = [nn.Flatten()]
        width = math.prod(input_shape)
        for i in range(depth):
            layers += [nn.Linear(width, out_dim if i == depth - 1 else hidden), nn.ReLU()]
            width = hidden
        self.net = nn.Sequential(*layers)
        self.out_dim = out_dim

    def forward(self, x: Tensor) -> Tensor:
        return self.net(x)


@ENCODERS.register("cnn")
class SmallCNN(nn.Module):
    """Conv-BN-ReLU blocks, each halving the resolution, then global average pooling and a linear map.
    Takes (C, H, W) inputs; a (H, W) input is treated as one channel."""

    def __init__(self, input_shape: tuple[int, ...], out_dim: int, width: Channels = 32, blocks: Layers = 3) -> None:
        super().__init__()
        if width * 2 ** (blocks - 1) > MAX_CHANNELS:
            raise ConfigError(f"cnn: width {width} doubled over {blocks} blocks is {width * 2 ** (blocks - 1):,} channels in the last block, "
                              f"over the limit of {MAX_CHANNELS} (latefusion.config.MAX_CHANNELS); use a smaller width or fewer blocks")
        channels = input_shape[0] if len(input_shape) == 3 else 1
        layers: list[nn.Module] = []
        for i in range(blocks):
            out = width * 2**i
            layers += [nn.Conv2d(channels, out, 3, padding=1, bias=False), nn.BatchNorm2d(out), nn.ReLU()]
            if i < blocks - 1:
                layers.append(nn.MaxPool2d(2, ceil_mode=True))
            channels = out
        self.features = nn.Sequential(*layers)
        self.project = nn.Sequential(nn.Flatten(), nn.Linear(channels, out_dim), nn.ReLU())
        self.out_dim = out_dim

    def forward(self, x: Tensor) -> Tensor:
        if x.dim() == 3:
            x = x.unsqueeze(1)
        return self.project(torch.mean(self.features(x), dim=(2, 3), keepdim=True))
