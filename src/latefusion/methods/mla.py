"""MLA: Multimodal Learning with Alternating uni-modal adaptation (Zhang, Yoon, Bansal & Yao,
"Multimodal Representation Learning by Alternating Unimodal Adaptation", CVPR 2024).

All modalities share one linear head. Training never fuses: on each batch the loop takes one
optimiser step per modality, in turn, each on that modality's loss alone (`head(encoder_m(x_m))`), so
no modality can leave the work to another. So that the shared head does not forget the modality it
fitted a step earlier, its weight gradient is projected away from the features it has already
seen (gradient modification, an orthogonal-weight-modification projector P):

    grad(W) <- grad(W) P
    P <- P - (P r)(P r)^T / (alpha + r^T P r)       r: mean feature of the batch just used

At test time the modalities' logits are fused with per-sample weights that favour the more certain
one:  w_m = softmax over modalities of (-entropy(softmax(logits_m))),  fused = sum_m w_m logits_m.

Where each detail comes from:
  * the shared head, one step per modality per batch, the projection of the head's gradient, and
    the entropy-weighted test-time fusion: the paper;
  * the projector's recursive update and its regulariser alpha (here a constant 0.1): the official
    code (Cecile-hi/Multimodal-Learning-with-Alternating-Unimodal-Adaptation, `utils/utils.py`
    GSPlugin), which anneals alpha from 0.1 to 0.01 within each epoch;
  * our departures from that code [design choice], each because the code does not do what the paper
    says: it updates P with the current batch before projecting (we project with what was seen
    before, then absorb the batch), it divides P by its Frobenius norm after each update (which
    shrinks the head's learning rate by about sqrt(feature_dim); we do not), its projection never
    runs (it looks for a parameter named "module.weight" in the head, whose weight is named
    "weight"), and its entropy is taken with a softmax across the batch instead of across classes
    (we compute it per sample, across classes);
  * `fusion: fixed` (weights given per modality, equal by default) is the code's non-dynamic option.
"""

from __future__ import annotations

from typing import Literal

import torch
import torch.nn.functional as F
from pydantic import Field
from torch import Tensor, nn

from .. import distributed
from ..config import Section
from ..data import Inputs
from ..errors import ConfigError
from ..style import Style
from .base import Method, StepInfo, StepOutput
from .registry import METHODS


class MLAOptions(Section):
    fusion: Literal["entropy", "fixed"] = "entropy"
    fixed_weights: dict[str, float] = Field(default_factory=dict, description="fusion: fixed; modality -> weight (default equal)")
    projection: bool = Field(True, description="project the shared head's gradient (gradient modification)")
    projection_alpha: float = Field(0.1, gt=0, description="regulariser of the projector update")


def entropy_weights(logits: Tensor) -> Tensor:
    """(modalities, batch, classes) logits -> (modalities, batch) fusion weights, larger for lower entropy."""
    log_p = logits.float().log_softmax(-1)
    entropy = -(log_p.exp() * log_p).sum(-1)
    return (-entropy).softmax(0)


class SharedHeadModel(nn.Module):
    """One encoder per modality, one linear head shared by all; `forward` is MLA's test-time fusion."""

    def __init__(self, encoders: dict[str, nn.Module], num_classes: int, fusion: str, fixed_weights: dict[str, float]) -> None:
        super().__init__()
        dims = {m: e.out_dim for m, e in encoders.items()}
        if len(set(dims.values())) != 1:
            raise ConfigError(f"mla shares one head across modalities, so every encoder needs the same output size; got {dims}")
        self.encoders = nn.ModuleDict(encoders)
        self.modalities = list(encoders)
        self.head = nn.Linear(next(iter(dims.values())), num_classes)
        self.fusion = fusion
        self.register_buffer("fixed_weights", torch.tensor([fixed_weights.get(m, 1.0) for m in self.modalities]))

    def modality_logits(self, inputs: Inputs) -> Tensor:
        """(modalities, batch, classes)."""
        return torch.stack([self.head(self.encoders[m](inputs[m])) for m in self.modalities])

    def fusion_weights(self, logits: Tensor) -> Tensor:
        if self.fusion == "entropy":
            return entropy_weights(logits)
        weights = self.fixed_weights / self.fixed_weights.sum()
        return weights[:, None].expand(logits.shape[:2])

    def forward(self, inputs: Inputs) -> Tensor:
        logits = self.modality_logits(inputs)
        return (self.fusion_weights(logits)[..., None] * logits).sum(0)


@METHODS.register("mla")
class MLA(Method):
    name = "mla"
    Options = MLAOptions
    style = Style("MLA", "#999999", "*", (0, (5, 1)), "oo")
    leaves_parameters_unused = True  # each step trains one modality's encoder

    def __init__(self, config, spec) -> None:
        super().__init__(config, spec)
        self.require_modalities(2)
        unknown = set(self.options.fixed_weights) - set(self.modalities())
        if unknown:
            raise ConfigError(f"method.options.fixed_weights names modalities {sorted(unknown)} that data set {spec.name!r} lacks; it has {spec.modality_names}")
        # Saved in checkpoints: the head's memory of the features it has fitted.
        self.register_buffer("projector", torch.eye(config.model.feature_dim))
        self.steps_per_batch = len(self.modalities())

    def build_model(self) -> nn.Module:
        encoders = dict(super().build_model().encoders)  # the late-fusion model's encoders; its head is not used
        return SharedHeadModel(encoders, self.spec.num_classes, self.options.fusion, self.options.fixed_weights)

    def loss(self, model: nn.Module, inputs: Inputs, labels: Tensor, step: StepInfo) -> StepOutput:
        m = self.modalities()[step.substep]  # one step per modality on each batch, in turn
        features = model.encoders[m](inputs[m])
        loss = F.cross_entropy(model.head(features), labels)
        mean_feature = distributed.mean_tensor(features.detach().float().mean(0))  # over the global batch
        return StepOutput(loss, {"loss": loss.detach(), f"ce_{m}": loss.detach()}, {"mean_feature": mean_feature})

    def backward(self, model: nn.Module, output: StepOutput) -> None:
        output.loss.backward()
        if not self.options.projection:
            return
        weight = model.head.weight
        weight.grad = (weight.grad.float() @ self.projector).to(weight.dtype)  # P is symmetric
        r = output.saved["mean_feature"]
        k = self.projector @ r
        self.projector -= torch.outer(k, k) / (self.options.projection_alpha + r @ k)
