"""Late fusion: one encoder per named modality, features fused only at the classifier.

A uni-modal model is the same class with a single modality, so every run, whatever its method,
exposes `model.encoders[modality]` for probing and distillation. `LateFusion` is the fused-model
protocol's late-fusion form (`LateFusionModel`, models/protocol.py); the heads are its `FusionHead`s.
"""

from __future__ import annotations

import torch
from torch import Tensor, nn

from ..data import Inputs
from ..errors import ConfigError


class ConcatHead(nn.Module):
    """Concatenated features -> one linear layer."""

    def __init__(self, feature_dims: dict[str, int], num_classes: int) -> None:
        super().__init__()
        self.feature_dims = dict(feature_dims)
        self.linear = nn.Linear(sum(feature_dims.values()), num_classes)

    def forward(self, features: dict[str, Tensor]) -> Tensor:
        return self.linear(torch.cat([features[m] for m in self.feature_dims], dim=1))

    def modality_logits(self, features: dict[str, Tensor]) -> dict[str, Tensor]:
        """Each modality's share of the fused logits (its weight columns; the bias split evenly)."""
        weights = torch.split(self.linear.weight, list(self.feature_dims.values()), dim=1)
        bias = self.linear.bias / len(self.feature_dims)
        return {m: features[m] @ w.T + bias for m, w in zip(self.feature_dims, weights)}


class SumHead(nn.Module):
    """One linear layer per modality; the fused logits are their sum."""

    def __init__(self, feature_dims: dict[str, int], num_classes: int) -> None:
        super().__init__()
        self.linears = nn.ModuleDict({m: nn.Linear(d, num_classes) for m, d in feature_dims.items()})

    def forward(self, features: dict[str, Tensor]) -> Tensor:
        return torch.stack(list(self.modality_logits(features).values())).sum(0)

    def modality_logits(self, features: dict[str, Tensor]) -> dict[str, Tensor]:
        return {m: linear(features[m]) for m, linear in self.linears.items()}


HEADS = {"concat": ConcatHead, "sum": SumHead}


class EncoderModel(nn.Module):
    """A model with one encoder per modality: the `modalities`, `encoders` and `features` of the
    fused-model protocol (protocol.py). A subclass says what it makes of the features: `scores`, and
    `forward` (by default the fused scores)."""

    def __init__(self, encoders: dict[str, nn.Module]) -> None:
        super().__init__()
        self.encoders = nn.ModuleDict(encoders)
        self.modalities = list(encoders)

    def features(self, inputs: Inputs) -> dict[str, Tensor]:
        return {m: self.encoders[m](inputs[m]) for m in self.modalities}

    def forward(self, inputs: Inputs) -> Tensor:
        return self.scores(inputs)[0]

    def scores(self, inputs: Inputs) -> tuple[Tensor, dict[str, Tensor]]:
        raise NotImplementedError


def shared_width(encoders: dict[str, nn.Module], method: str) -> int:
    """The one feature size of encoders whose features share a head (MLA, ReconBoost)."""
    dims = {m: e.out_dim for m, e in encoders.items()}
    if len(set(dims.values())) != 1:
        raise ConfigError(f"{method} shares one head across modalities, so every encoder needs the same output size; got {dims}")
    return next(iter(dims.values()))


class LateFusion(EncoderModel):
    def __init__(self, encoders: dict[str, nn.Module], num_classes: int, fusion: str = "concat") -> None:
        super().__init__(encoders)
        self.head = HEADS[fusion]({m: e.out_dim for m, e in encoders.items()}, num_classes)

    def forward(self, inputs: Inputs) -> Tensor:
        return self.head(self.features(inputs))

    def scores(self, inputs: Inputs) -> tuple[Tensor, dict[str, Tensor]]:
        """The fused logits and each modality's share of them, from one pass of the encoders."""
        features = self.features(inputs)
        return self.head(features), self.head.modality_logits(features)
