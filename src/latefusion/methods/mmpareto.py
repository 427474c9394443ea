"""MMPareto (Wei & Hu, "MMPareto: Boosting Multimodal Learning with Innocent Unimodal Assistance",
ICML 2024).

Each modality gets a linear head of its own beside the fused head; the losses are the fused
cross-entropy L_mm and one uni-modal cross-entropy L_m per modality. The heads take the gradients of
their own loss. Each encoder m receives two gradients, g_mm from L_mm and g_u from L_m, and is
updated with their Pareto integration instead of their sum:

    if g_mm . g_u > 0:  d = g_mm + g_u                                 (no conflict: equal weights)
    else:               d = 2 (c g_mm + (1 - c) g_u), with c in [0, 1] minimising |c g_mm + (1 - c) g_u|
                        (the minimum-norm point of the segment: d . g_mm >= 0 and d . g_u >= 0)
    then, for each parameter tensor t of the encoder (d_t, g_mm_t, g_u_t: its parts):
    d_t <- d_t * max(1, |g_mm_t + g_u_t| / |d_t|)                      (keep at least the sum's magnitude)
    grad(t) <- gamma * d_t

The conflict test and c are computed on the encoder's whole gradient (all its tensors flattened
together); the magnitude is restored tensor by tensor.

Where each detail comes from:
  * the uni-modal heads and losses, equal weights without conflict, the minimum-norm (MGDA) weights
    under conflict, and enlarging the magnitude: the paper;
  * the factor 2 on the weights, restoring the magnitude of the plain sum, gamma = 1.5, the test on
    the cosine of the whole encoder's two gradients, c from the whole encoder (its `MinNormSolver`
    over the lists of tensors), and the rescaling per parameter tensor (each tensor's new gradient
    scaled to the norm of that tensor's summed gradient when it is smaller): the official code
    (GeWu-Lab/MMPareto_ICML2024 `code/MMPareto.py`), which we follow. A consequence worth knowing:
    before the rescaling, d agrees with both losses (d . g_mm >= 0, d . g_u >= 0); scaling tensors
    by different factors can lose that for the encoder as a whole, as in the official code.
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


def pareto_integrate(g_mm: Tensor, g_u: Tensor, gamma: float, sizes: list[int] | None = None) -> Tensor:
    """The integrated gradient of two flat gradients (see the module docstring), rescaled per tensor;
    `sizes`: the tensors' lengths in the flat vectors (None: one tensor). No host sync."""
    difference = g_mm - g_u
    c = (torch.dot(g_u - g_mm, g_u) / difference.dot(difference).clamp_min(1e-20)).clamp(0, 1)
    direction = torch.where(torch.dot(g_mm, g_u) > 0, g_mm + g_u, 2 * (c * g_mm + (1 - c) * g_u))
    parts = [len(direction)] if sizes is None else sizes
    scaled = []
    for d, s in zip(direction.split(parts), (g_mm + g_u).split(parts)):
        scaled.append(d * (s.norm() / d.norm().clamp_min(1e-20)).clamp_min(1.0))
    return gamma * torch.cat(scaled)


@METHODS.register("mmpareto")
class MMPareto(Method):
    name = "mmpareto"
    Options = MMParetoOptions
    group = "baseline"
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
            params = [p for p in model.encoders[m].parameters() if p.requires_grad]
            sizes = [p.numel() for p in params]
            integrated = pareto_integrate(g_mm, g_u, self.options.gamma, sizes)
            for p, g in zip(params, integrated.split(sizes)):
                p.grad = g.view_as(p).to(p.dtype)


def flatten(gradients: tuple[Tensor | None, ...], params: list[nn.Parameter]) -> Tensor:
    return torch.cat([(g if g is not None else torch.zeros_like(p)).reshape(-1).float() for g, p in zip(gradients, params)])
