"""MMPareto (Wei & Hu, "MMPareto: Boosting Multimodal Learning with Innocent Unimodal Assistance",
ICML 2024).

Each modality gets a linear head of its own beside the fused head; the losses are the fused
cross-entropy L_mm and one uni-modal cross-entropy L_m per modality. The heads take the gradients of
their own loss. Each encoder m receives two gradients, g_mm from L_mm and g_u from L_m, and is
updated with their Pareto integration instead of their sum:

    if g_mm . g_u > 0:  d = g_mm + g_u                                 (no conflict: equal weights)
    else:               d = 2 (c g_mm + (1 - c) g_u), with c in [0, 1] minimising |c g_mm + (1 - c) g_u|
                        (the minimum-norm point of the segment: d . g_mm >= 0 and d . g_u >= 0)
    d <- d * max(1, |g_mm + g_u| / |d|)                                (keep at least the sum's magnitude)
    grad(encoder_m) <- gamma * d

Where each detail comes from:
  * the uni-modal heads and losses, equal weights without conflict, the minimum-norm (MGDA) weights
    under conflict, and enlarging the magnitude: the paper;
  * the factor 2 on the weights, restoring the magnitude of the plain sum, and gamma = 1.5: the
    official code (GeWu-Lab/MMPareto_ICML2024 `code/MMPareto.py`);
  * the rescaling applied to the encoder's gradient as a whole [design choice]: the official code
    rescales each parameter tensor separately, which can turn the combined direction away from a
    loss; rescaling the whole encoder keeps the guarantee that no loss is made worse to first order.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from pydantic import Field
from torch import Tensor, nn

from .. import distributed
from ..config import Section
from ..data import Inputs
from ..style import Style
from .base import Method, StepInfo, StepOutput, unimodal_heads
from .registry import METHODS


class MMParetoOptions(Section):
    gamma: float = Field(1.5, gt=0, description="factor on the integrated encoder gradient")


def pareto_integrate(g_mm: Tensor, g_u: Tensor, gamma: float) -> Tensor:
    """The integrated gradient of two flat gradients (see the module docstring); no host sync."""
    difference = g_mm - g_u
    c = (torch.dot(g_u - g_mm, g_u) / difference.dot(difference).clamp_min(1e-20)).clamp(0, 1)
    direction = torch.where(torch.dot(g_mm, g_u) > 0, g_mm + g_u, 2 * (c * g_mm + (1 - c) * g_u))
    scale = ((g_mm + g_u).norm() / direction.norm().clamp_min(1e-20)).clamp_min(1.0)
    return gamma * scale * direction


@METHODS.register("mmpareto")
class MMPareto(Method):
    name = "mmpareto"
    Options = MMParetoOptions
    style = Style("MMPareto", "#F0E442", "X", ":", "++")

    def __init__(self, config, spec) -> None:
        super().__init__(config, spec)
        self.require_modalities(2)
        self.unimodal_heads = unimodal_heads(spec, config, self.modalities())

    def loss(self, model: nn.Module, inputs: Inputs, labels: Tensor, step: StepInfo) -> StepOutput:
        features = model.features(inputs)
        fused = F.cross_entropy(model.head(features), labels)
        unimodal = {m: F.cross_entropy(head(features[m]), labels) for m, head in self.unimodal_heads.items()}
        loss = fused + sum(unimodal.values())
        logs = {"loss": loss.detach(), "ce_fused": fused.detach(), **{f"ce_{m}": v.detach() for m, v in unimodal.items()}}
        return StepOutput(loss, logs, {"fused": fused, "unimodal": unimodal})

    def encoder_gradients(self, model: nn.Module, output: StepOutput) -> dict[str, tuple[Tensor, Tensor]]:
        """(g_mm, g_u) of every encoder, flattened."""
        gradients = {}
        for m, loss_m in output.saved["unimodal"].items():
            params = [p for p in model.encoders[m].parameters() if p.requires_grad]
            g_mm = torch.autograd.grad(output.saved["fused"], params, retain_graph=True, allow_unused=True)
            g_u = torch.autograd.grad(loss_m, params, retain_graph=True, allow_unused=True)
            # Averaged over the processes (autograd.grad bypasses DDP): the global batch's gradients.
            gradients[m] = (distributed.mean_tensor(flatten(g_mm, params)), distributed.mean_tensor(flatten(g_u, params)))
        return gradients

    def backward(self, model: nn.Module, output: StepOutput) -> None:
        gradients = self.encoder_gradients(model, output)
        output.loss.backward()  # the heads' gradients, each from its own loss
        for m, (g_mm, g_u) in gradients.items():
            integrated = pareto_integrate(g_mm, g_u, self.options.gamma)
            params = [p for p in model.encoders[m].parameters() if p.requires_grad]
            for p, g in zip(params, integrated.split([p.numel() for p in params])):
                p.grad = g.view_as(p).to(p.dtype)


def flatten(gradients: tuple[Tensor | None, ...], params: list[nn.Parameter]) -> Tensor:
    return torch.cat([(g if g is not None else torch.zeros_like(p)).reshape(-1).float() for g, p in zip(gradients, params)])
