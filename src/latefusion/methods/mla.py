"""MLA: Multimodal Learning with Alternating uni-modal adaptation (Zhang, Yoon, Bansal & Yao,
"Multimodal Representation Learning by Alternating Unimodal Adaptation", CVPR 2024).

All modalities share one linear head. Training never fuses: on each batch the loop takes one
optimiser step per modality, in turn, each on that modality's loss alone (`head(encoder_m(x_m))`), so
no modality can leave the work to another. So that a step on one modality does not undo what the
shared head learnt from the others (the paper's gradient modification), the head's weight gradient
on a step of modality m is projected by an orthogonal-weight-modification projector P_m that
remembers the mean features the head was recently given by the other modalities:

    grad(W) <- grad(W) P_m                            (P_m symmetric, eigenvalues in (0, 1])
    after the step, for every other modality n, with r = the batch's mean feature / its norm:
        P_n <- P_n - (P_n r)(P_n r)^T / (alpha + r^T P_n r)     (absorb r: the OWM update)
        P_n <- (1 - forget) P_n + forget I                      (relax toward the identity)

At test time the modalities' logits are fused with per-sample weights that favour the more certain
one:  w_m = softmax over modalities of (-entropy(softmax(logits_m))),  fused = sum_m w_m logits_m.

Why this form [design choice]. The OWM projector without relaxation (`forget: 0`) is
P = alpha (alpha I + sum_t r_t r_t^T)^-1 over every mean feature ever absorbed: each direction the
features keep visiting decays like 1/(number of visits), so the head's update shrinks without bound
and the shared head nearly freezes (bench/mla_projector.py, 512-d, normalised features: largest
eigenvalue 0.98 / 0.63 / 0.23 after 1k / 5k / 20k updates, and still falling; with the unnormalised
features of the previous implementation it fell faster, to 0.0066 after 20k). The relaxation gives P_m a memory of about 1/forget
recent steps and keeps every eigenvalue above about `forget`, whatever the run length (see
tests/test_methods_fidelity.py: 20k updates, the update size stays within 10x of the first
epoch's); one projector per modality, fed by the other modalities' features, protects what the
head learnt from the others (the paper's intent) without also blocking the step on a modality's own
features; normalising r makes alpha independent of the features' scale.

Where each detail comes from:
  * the shared head, one step per modality per batch, the projection of the head's gradient to
    keep what it learnt, and the entropy-weighted test-time fusion: the paper;
  * the recursive OWM update and its regulariser alpha (0.1): the official code
    (Cecile-hi/Multimodal-Learning-with-Alternating-Unimodal-Adaptation, `utils/utils.py` GSPlugin);
  * how the official code differs from ours: it keeps one projector for all modalities, absorbs
    every batch's (unnormalised) mean feature into it, before projecting that same batch's gradient,
    anneals alpha from 0.1 to 0.01 within each epoch, never relaxes P, and divides P by its
    Frobenius norm after each update; and its projection never runs at all (it looks for a parameter
    named "module.weight", which its head does not have). Its entropy is taken with a softmax across
    the batch instead of across classes (we compute it per sample, across classes);
  * how BalanceBenchmark (GeWu-Lab/BalanceBenchmark, its MLA trainer) differs: it adds the
    projected gradient to the gradient instead of replacing it, so the component the projection
    removes is still applied;
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
from ..models.fusion import EncoderModel, shared_width
from ..style import Style
from .base import Method, StepInfo, StepOutput
from .registry import METHODS


class MLAOptions(Section):
    fusion: Literal["entropy", "fixed"] = "entropy"
    fixed_weights: dict[str, float] = Field(default_factory=dict, description="fusion: fixed; modality -> weight (default equal)")
    projection: bool = Field(True, description="project the shared head's gradient (gradient modification)")
    projection_alpha: float = Field(0.1, gt=0, description="regulariser of the projector update")
    projection_forget: float = Field(0.01, ge=0, lt=1, description="per update, how far each projector relaxes toward the identity "
                                     "(0: never forgets, and the shared head freezes as training goes on)")


def absorb(projector: Tensor, feature: Tensor, alpha: float, forget: float) -> None:
    """The OWM update of `projector` (in place) with one mean feature, then the relaxation toward I."""
    r = feature / feature.norm().clamp_min(1e-12)
    k = projector @ r
    projector -= torch.outer(k, k) / (alpha + r @ k)
    if forget:
        projector.mul_(1 - forget).diagonal().add_(forget)


def entropy_weights(logits: Tensor) -> Tensor:
    """(modalities, batch, classes) logits -> (modalities, batch) fusion weights, larger for lower entropy."""
    log_p = logits.float().log_softmax(-1)
    entropy = -(log_p.exp() * log_p).sum(-1)
    return (-entropy).softmax(0)


class SharedHeadModel(EncoderModel):
    """One encoder per modality, one linear head shared by all; `forward` is MLA's test-time fusion.
    The fused-model protocol (models/protocol.py), with `head` one linear layer applied to one
    modality's features at a time."""

    def __init__(self, encoders: dict[str, nn.Module], num_classes: int, fusion: str, fixed_weights: dict[str, float]) -> None:
        super().__init__(encoders)
        self.head = nn.Linear(shared_width(encoders, "mla"), num_classes)
        self.fusion = fusion
        self.register_buffer("fixed_weights", torch.tensor([fixed_weights.get(m, 1.0) for m in self.modalities]))

    def modality_logits(self, inputs: Inputs) -> Tensor:
        """(modalities, batch, classes)."""
        return torch.stack([self.head(f) for f in self.features(inputs).values()])

    def fusion_weights(self, logits: Tensor) -> Tensor:
        if self.fusion == "entropy":
            return entropy_weights(logits)
        weights = self.fixed_weights / self.fixed_weights.sum()
        return weights[:, None].expand(logits.shape[:2])

    def scores(self, inputs: Inputs) -> tuple[Tensor, dict[str, Tensor]]:
        """The fused scores and each modality's logits, every encoder run once."""
        logits = self.modality_logits(inputs)
        return (self.fusion_weights(logits)[..., None] * logits).sum(0), dict(zip(self.modalities, logits))


@METHODS.register("mla")
class MLA(Method):
    name = "mla"
    Options = MLAOptions
    group = "baseline"
    style = Style("MLA", "#999999", "*", (0, (5, 1)), "oo")
    leaves_parameters_unused = True  # each step trains one modality's encoder

    def __init__(self, config, spec) -> None:
        super().__init__(config, spec)
        self.require_modalities(2)
        unknown = set(self.options.fixed_weights) - set(self.modalities())
        if unknown:
            raise ConfigError(f"method.options.fixed_weights names modalities {sorted(unknown)} that data set {spec.name!r} lacks; it has {spec.modality_names}")
        # Saved in checkpoints: per modality, the head's memory of the other modalities' recent features.
        self.register_buffer("projector", torch.eye(config.model.feature_dim).repeat(len(self.modalities()), 1, 1))
        self.steps_per_batch = len(self.modalities())

    def build_model(self) -> nn.Module:
        encoders = dict(super().build_model().encoders)  # the late-fusion model's encoders; its head is not used
        return SharedHeadModel(encoders, self.spec.num_classes, self.options.fusion, self.options.fixed_weights)

    def loss(self, model: nn.Module, inputs: Inputs, labels: Tensor, step: StepInfo) -> StepOutput:
        m = self.modalities()[step.substep]  # one step per modality on each batch, in turn
        features = model.encoders[m](inputs[m])
        loss = F.cross_entropy(model.head(features), labels)
        mean_feature = distributed.mean_tensor(features.detach().float().mean(0))  # over the global batch
        return StepOutput(loss, {"loss": loss.detach(), f"ce_{m}": loss.detach()}, {"mean_feature": mean_feature, "modality": step.substep})

    def backward(self, model: nn.Module, output: StepOutput) -> None:
        output.loss.backward()
        if not self.options.projection:
            return
        weight = model.head.weight
        i = output.saved["modality"]
        weight.grad = (weight.grad.float() @ self.projector[i]).to(weight.dtype)  # P is symmetric
        for j in range(len(self.projector)):
            if j != i:
                absorb(self.projector[j], output.saved["mean_feature"], self.options.projection_alpha, self.options.projection_forget)
