"""MMCosine: Multi-Modal Cosine loss (Xu, Feng, Zhang & Hu, "MMCosine: Multi-Modal Cosine Loss
Towards Balanced Audio-Visual Fine-Grained Learning", ICASSP 2023).

Late fusion whose head scores each modality by the cosine between its feature and each class's
weight vector, both L2-normalised modality by modality, and sums the scaled cosines:

    cos_m[k] = <f_m / |f_m|, W_m[k] / |W_m[k]|>         f_m: modality m's encoder output;
                                                        W_m[k]: class k's weights for modality m
    logits   = s * sum_m cos_m                          (no bias)
    L        = CE(logits, y)

No modality can win the fused logits through the norm of its features or of its head's weights (the
imbalance the paper measures in the weight norms): every modality's contribution to a class logit
lies in [-s, s]. Each modality's share of the logits is s * cos_m. Predictions are the same logits.

Where each detail comes from:
  * the modality-wise L2 normalisation of features and class weights, the bias dropped, the scaled
    cosines summed into the fused logits and trained with cross-entropy: the paper, as the official
    code computes it (GeWu-Lab/MMCosine_ICASSP23 `main_CD.py` lines 112-118: the columns of the
    concatenation head's weight belonging to each modality, normalised per class);
  * s = 10: the official code's default and README command (`--scaling 10`);
  * predictions from the cosine logits [design choice]: the model is evaluated as it is trained, as
    GeWu-Lab/BalanceBenchmark (`balancemm/trainer/MMCosine_trainer.py`, `validation_step`) does.
    The official evaluation (`main_CD.py` lines 184-196) predicts with the model's plain output,
    the unnormalised features times the same weights plus a bias the cosine loss never trained,
    while its per-modality accuracies use the cosine logits;
  * its own head, one bias-free weight matrix per modality, whatever `model.fusion` says
    [design choice]: without a bias, the concatenation head's column blocks and the sum head's
    per-modality layers are the same thing once each block is normalised;
  * where BalanceBenchmark differs: its default s is 15, and it applies the cosine logits only
    inside a modulation window (`modulation_starts..ends`, 0..80), training on the plain fused
    logits outside it; we follow the paper and the official code, which use them throughout;
  * any number of modalities: the paper's sum over modalities; the official code has two.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from pydantic import Field
from torch import Tensor, nn

from ..config import Section
from ..style import Style
from .base import Method
from .registry import METHODS


class MMCosineOptions(Section):
    scaling: float = Field(10.0, gt=0, description="s: the scale of each modality's cosine logits (official default 10)")


class CosineHead(nn.Module):
    """One bias-free weight matrix per modality; logits = s * the sum over modalities of the cosines
    between the modality's feature and its class weight vectors."""

    def __init__(self, feature_dims: dict[str, int], num_classes: int, scaling: float) -> None:
        super().__init__()
        self.linears = nn.ModuleDict({m: nn.Linear(d, num_classes, bias=False) for m, d in feature_dims.items()})
        self.scaling = scaling

    def modality_logits(self, features: dict[str, Tensor]) -> dict[str, Tensor]:
        return {m: self.scaling * F.normalize(features[m], dim=1) @ F.normalize(linear.weight, dim=1).T
                for m, linear in self.linears.items()}

    def forward(self, features: dict[str, Tensor]) -> Tensor:
        return torch.stack(list(self.modality_logits(features).values())).sum(0)


@METHODS.register("mmcosine")
class MMCosine(Method):
    name = "mmcosine"
    Options = MMCosineOptions
    group = "baseline"
    style = Style("MMCosine", "#44AA99", "<", (0, (3, 1)), "--")

    def __init__(self, config, spec) -> None:
        super().__init__(config, spec)
        self.require_modalities(2)

    def build_model(self) -> nn.Module:
        model = super().build_model()  # the late-fusion encoders; the head is replaced by the cosine head
        model.head = CosineHead({m: e.out_dim for m, e in model.encoders.items()}, self.spec.num_classes, self.options.scaling)
        return model
