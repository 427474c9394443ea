"""The fused-model protocol: what every model a method trains exposes, whatever its fusion.

The loop, the evaluation, the probes, the teachers and the methods read a model only through these
names (`tests/test_method_protocol.py` checks every registered method's model against them):

  modalities          the modality names, in the order of every per-modality output below.
  encoders[m]         modality m's encoder: maps a batch of `inputs[m]` to a (batch, out_dim) feature
                      matrix and exposes `out_dim`. The probes freeze it; UMT and G2D distil into it;
                      gradient-modulating methods (OGM-GE, G2D) scale its gradients.
  features(inputs)    {m: encoders[m](inputs[m])}: what the classifier sees, one pass of each encoder.
  scores(inputs)      (fused, {m: own}): `fused`, (batch, classes), is the model's output, whose
                      argmax is its prediction; `own[m]`, (batch, classes), is modality m's own scores:
                      its share of the fused logits (late fusion), its logits from the shared head
                      (MLA), its member's logits (UME). Per-modality accuracy and the imbalance come
                      from these. One pass of the encoders.
  model(inputs)       = scores(inputs)[0].

A late-fusion model (`LateFusionModel`: `LateFusion`, what `Method.build_model` builds) also has

  head                the fusion head: head(features) -> the fused logits, and
                      head.modality_logits(features) -> {m: modality m's share of them}, the share
                      defined by the head's own weights (ConcatHead: its weight columns of m, bias split
                      evenly; SumHead: m's own linear layer). Methods that reshape a late-fusion
                      model's loss (UMT, G2D, OGM-GE, PMR, AGM, G-Blending, MMPareto) call it.

The other model classes: MLA's `SharedHeadModel` (methods/mla.py) has one linear `head` shared by
all modalities and applied to one modality's features at a time; UME's `UniModalEnsemble`
(methods/ume.py) has no head of its own, each member has one.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Protocol, runtime_checkable

from torch import Tensor, nn

from ..data import Inputs


@runtime_checkable
class FusedModel(Protocol):
    modalities: list[str]
    encoders: Mapping[str, nn.Module]

    def features(self, inputs: Inputs) -> dict[str, Tensor]: ...

    def scores(self, inputs: Inputs) -> tuple[Tensor, dict[str, Tensor]]: ...

    def __call__(self, inputs: Inputs) -> Tensor: ...


@runtime_checkable
class FusionHead(Protocol):
    def __call__(self, features: dict[str, Tensor]) -> Tensor: ...

    def modality_logits(self, features: dict[str, Tensor]) -> dict[str, Tensor]: ...


@runtime_checkable
class LateFusionModel(FusedModel, Protocol):
    head: FusionHead
