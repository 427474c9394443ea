"""OGM-GE: On-the-fly Gradient Modulation with Generalisation Enhancement (Peng et al., "Balanced
Multimodal Learning via On-the-fly Gradient Modulation", CVPR 2022).

Naive late fusion, except that after each backward pass the gradient of each encoder's weights is
scaled down by how much its modality already dominates the batch, so the lazy modality gets a chance
to learn:

    s_m   = sum over the batch of softmax(logits_m)[y]     logits_m: modality m's share of the fused
                                                            logits (`head.modality_logits`)
    rho_m = s_m / mean of s_n over the other modalities n
    k_m   = 1 - tanh(alpha * rho_m)  if rho_m > 1,  else 1
    grad(W) <- k_m * grad(W) + N(0, std(grad(W))^2)      for the modulated weights W of encoder m
                                                          (noise only with `noise: true`)

Which weights are modulated: the official code scales (and adds noise to) the 4-D convolution
weights of each encoder only; batch-norm, bias and fully connected parameters keep their plain
gradient. We do the same for every encoder that has convolution weights (a weight of 3 or more
dimensions: 1-D, 2-D or 3-D convolutions). An encoder without any (the MLP encoders) would not be
modulated at all under that rule, so there [design choice] every weight matrix (2-D weight) is
modulated, and biases and normalisation parameters are not: the matrices are the MLP's counterpart
of the convolution kernels, and leaving biases and norms out keeps the official code's exclusion of
them.

Where each detail comes from:
  * the score s_m, the ratio and k_m = 1 - tanh(alpha * rho_m) for rho_m > 1: the paper (its Eq. 10,
    quoted in the official code, GeWu-Lab/OGM-GE_CVPR2022 `main.py`);
  * Gaussian noise for generalisation enhancement: the paper; its standard deviation, the std of the
    entries of each parameter's unmodulated gradient, and modulating convolution weights only: the
    official code;
  * the window `start_epoch <= epoch <= end_epoch` (defaults 0 and 50): official code
    (`--modulation_starts`, `--modulation_ends`); alpha is a required flag there; the README's
    "default modulation setting" is `--alpha 0.1`, and its tips recommend 0.1 for VGG-Sound and 0.8
    for CREMA-D, so our default is 0.1, configs/vggsound/ogm_ge.yaml sets 0.1 and
    configs/crema-d/ogm_ge.yaml 0.8 (no source gives a value for our other data sets);
  * more than two modalities (rho_m against the mean of the others; every modality with rho_m > 1
    is slowed) and the weight matrices of encoders without convolutions: ours [design choice]. With
    two modalities the rule is the paper's.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from pydantic import Field
from torch import Tensor, nn

from .. import distributed
from ..data import Inputs
from ..style import Style
from .base import EpochWindow, Method, StepInfo, StepOutput
from .registry import METHODS


class OGMGEOptions(EpochWindow):
    alpha: float = Field(0.1, ge=0, description="strength of the modulation (official README default 0.1)")
    end_epoch: int = Field(50, ge=0, description="last epoch modulated (inclusive)")
    noise: bool = Field(True, description="add the generalisation-enhancement noise (false: plain OGM)")


def modulated_parameters(encoder: nn.Module) -> list[nn.Parameter]:
    """The weights OGM-GE modulates in one encoder: its convolution weights (3 or more dimensions),
    or, if it has none, its weight matrices (see the module docstring)."""
    params = [p for p in encoder.parameters() if p.requires_grad]
    convolutions = [p for p in params if p.dim() >= 3]
    return convolutions or [p for p in params if p.dim() == 2]


def true_class_scores(shares: dict[str, Tensor], labels: Tensor) -> Tensor:
    """s_m per modality, in order: the batch sum of softmax(logits_m)[y] (OGM-GE's score, also OPM's
    and InfoReg's)."""
    return torch.stack([logits.detach().float().softmax(1).gather(1, labels[:, None]).sum() for logits in shares.values()])


def score_ratios(scores: Tensor) -> Tensor:
    """rho_m = s_m / mean of s_n over the other modalities n (infinite where the others score 0)."""
    others = (scores.sum() - scores) / (len(scores) - 1)
    return torch.where(others > 0, scores / others.clamp_min(1e-30), torch.full_like(scores, float("inf")))


def modulation_coefficients(scores: Tensor, alpha: float) -> Tensor:
    """k_m for each modality from its summed true-class probability s_m (see the module docstring);
    `scores` holds s_m per modality, in order. Computed on the device: no host sync."""
    ratio = score_ratios(scores)
    return torch.where(ratio > 1, 1 - torch.tanh(alpha * ratio), torch.ones_like(ratio))


@METHODS.register("ogm_ge")
class OGMGE(Method):
    name = "ogm_ge"
    Options = OGMGEOptions
    group = "baseline"
    style = Style("OGM-GE", "#000000", "P", "-.", "\\\\")

    def __init__(self, config, spec) -> None:
        super().__init__(config, spec)
        self.require_modalities(2)

    def loss(self, model: nn.Module, inputs: Inputs, labels: Tensor, step: StepInfo) -> StepOutput:
        features = model.features(inputs)
        loss = F.cross_entropy(model.head(features), labels)
        with torch.no_grad():
            shares = model.head.modality_logits(features)
            scores = distributed.sum_tensor(true_class_scores(shares, labels))  # over the global batch
            coefficients = modulation_coefficients(scores, self.options.alpha)
        modulating = self.options.in_window(step.epoch)
        logs = {"loss": loss.detach(), **{f"coeff_{m}": k for m, k in zip(shares, coefficients)}}
        return StepOutput(loss, logs, {"coefficients": dict(zip(shares, coefficients)) if modulating else {}})

    def backward(self, model: nn.Module, output: StepOutput) -> None:
        output.loss.backward()
        for m, k in output.saved["coefficients"].items():
            for p in modulated_parameters(model.encoders[m]):
                if p.grad is None:
                    continue
                # The noise scale is read before scaling: the unmodulated gradient's spread.
                spread = p.grad.std() if p.grad.numel() > 1 else p.grad.new_zeros(())
                p.grad.mul_(k)
                # Processes of a distributed run draw the same noise: they share the seed and draw
                # equal amounts from it (equal shares of each batch), so the model stays identical.
                if self.options.noise:
                    p.grad.add_(torch.randn_like(p.grad) * (spread + 1e-8))
