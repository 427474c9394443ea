"""AGM: Adaptive Gradient Modulation (Li, Li, Hu, Lei, Li & Zhou, "Boosting Multi-modal Model
Performance with Adaptive Gradient Modulation", ICCV 2023).

The fused model's output is split into one mono-modal response per modality by the Shapley value of
the modalities as players, an absent modality being fed zeros; the loss is the cross-entropy of
their sum (which equals the fused output), and the gradient that reaches each response is scaled by
a coefficient that pushes the modalities' relative standing back toward its running average:

    f(S)    = the model's logits with the modalities outside S fed zeros     (S a set of modalities;
              f(all) from the training pass, every other f(S) from the whole network in eval mode)
    phi^m   = sum over S not holding m of |S|! (M - |S| - 1)! / M! * (f(S + m) - f(S))   (Shapley)
    o^m     = phi^m + f({})/M          (so sum_m o^m = f(all): the fused logits)
    s^m     = mean over the batch of -log max(softmax(o^m)[y], 1e-8)     (mono-modal cross-entropy)
    r^m     = exp(mean of s^n over the other modalities n - s^m)         (discrepancy ratio)
    rbar^m  = the same from the running means sbar^n of the s^n over all steps so far
    k^m     = exp(alpha * min(rbar^m - r^m, clip))                       (modulation coefficient)
    L       = CE(sum_m o^m, y);   dL/do^m <- k^m * dL/do^m       then   sbar^m <- running mean with s^m
    outside start_epoch..end_epoch, k^m is not recomputed: 1 before the window, the window's last after

A modality that is doing worse than usual relative to the others (r^m below its average) gets
k^m > 1, one doing better gets k^m < 1. The forward pass, and so the predictions, are those of the
plain fused model.

Where each detail comes from:
  * the Shapley-value mono-modal responses with an absent modality zeroed, the mono-modal score as
    the response's cross-entropy, the discrepancy ratio against its running average and the
    exponential coefficient scaling the gradient of each response: the paper, with its formulas as
    the official code (lihong2303/AGM_ICCV2023, `models/*`, `run/*_main.py`) computes them;
  * o^m carrying f({})/M: the official code's responses, which leave out f({}) (two modalities:
    m_a = (f(a,v) - f(0,v) + f(a,0)) / 2), so that the responses sum to f(all);
  * the ratio against the mean of the others' scores, exp(M/(M-1) * (mean score - s^m)): the official
    code, for two modalities (CREMA-D, AV-MNIST) and for three (CMU-MOSEI); ours in general;
  * the probability floor 1e-8, the running means over every step since the start (carried across
    epochs; zero before the first step, so rbar = 1 at the first step), the clip of the exponent at
    10, alpha = 1 and the window epochs 0..20: the official code (`--alpha`, `--modulation_starts`,
    `--modulation_ends`); its three-modality script clips at 7 instead (set `clip`);
  * f(all) from the train-mode pass, and every padded pass (each coalition but the full one) through
    the whole network in eval mode, the present modalities' encoders on their real inputs included
    (batch-norm running statistics, no dropout), with gradients flowing through them: the official
    code (`model/CREMAD_net.py` lines 57-66: `total_out` in train mode, then `self.net.eval()` for
    the three padded passes, then `self.net.train()`). Zeros are fed to each encoder once per step
    and shared by the batch [design choice]: in eval mode every sample's output is the same;
  * the coefficients after the window keep their last value: the official code sets the scale of
    its backward hooks only inside the window (`run/CREMAD_main.py` lines 159-166) and the hooks
    (`model/CREMAD_net.py` lines 42-51) keep applying the last scale set after it; before the window
    the scale is its initial 1 (`CREMAD_net.py` lines 39-40). Kept in checkpoints;
  * scaling the gradient by the detach trick k * o + (1 - k) * o.detach() instead of a backward
    hook [design choice]: the same gradients, and it leaves the model's modules untouched;
  * not adopted: the official code's clipping of every gradient to norm 1 whenever an entry of the
    fused head's weight gradient passes 1 in size (the loop's `optim.grad_clip` is there for that).
"""

from __future__ import annotations

import contextlib
import itertools
import math
from typing import Iterator

import torch
import torch.nn.functional as F
from pydantic import Field
from torch import Tensor, nn

from .. import distributed
from ..data import Inputs
from ..style import Style
from .base import EpochWindow, Method, StepInfo, StepOutput
from .registry import METHODS

FLOOR = 1e-8  # the official code's floor on the true-class probability in the mono-modal score


class AGMOptions(EpochWindow):
    alpha: float = Field(1.0, ge=0, description="strength of the modulation")
    clip: float = Field(10.0, gt=0, description="upper bound on rbar - r in the exponent")
    end_epoch: int = Field(20, ge=0, description="last epoch modulated (inclusive)")


@contextlib.contextmanager
def evaluation_mode(module: nn.Module) -> Iterator[None]:
    """`module` and all its submodules in eval mode inside the block; each one's own mode restored after."""
    modes = [(m, m.training) for m in module.modules()]
    module.eval()
    try:
        yield
    finally:
        for m, training in modes:
            m.training = training


def padded_features(model: nn.Module, inputs: Inputs) -> tuple[dict[str, Tensor], dict[str, Tensor]]:
    """For the padded passes, the whole network in eval mode (as the official code runs them): each
    encoder's features of its real input, and of an all-zero input (one sample), with gradients."""
    with evaluation_mode(model):
        present = model.features(inputs)
        absent = {m: model.encoders[m](torch.zeros_like(inputs[m][:1])) for m in model.modalities}
    return present, absent


def shapley_responses(head: nn.Module, trained: dict[str, Tensor], present: dict[str, Tensor], absent: dict[str, Tensor]) -> dict[str, Tensor]:
    """o^m = phi^m + f({})/M for every modality, from the fused head over all 2^M coalitions: f(all)
    from the train-mode features `trained`; every padded coalition from the eval-mode features
    `present` of its members and `absent` (an all-zero input's) of the others."""
    names = list(trained)
    M = len(names)
    batch = next(iter(trained.values())).shape[0]
    values = {frozenset(names): head(trained)}
    for size in range(M):
        for coalition in itertools.combinations(names, size):
            values[frozenset(coalition)] = head({m: present[m] if m in coalition else absent[m].expand(batch, -1) for m in names})
    responses = {}
    for m in names:
        others = [n for n in names if n != m]
        phi = 0
        for size in range(M):
            weight = math.factorial(size) * math.factorial(M - size - 1) / math.factorial(M)
            for coalition in itertools.combinations(others, size):
                phi = phi + weight * (values[frozenset(coalition) | {m}] - values[frozenset(coalition)])
        responses[m] = phi + values[frozenset()] / M
    return responses


def discrepancy_ratios(scores: Tensor) -> Tensor:
    """r^m = exp(mean of the other modalities' scores - s^m)."""
    others = (scores.sum() - scores) / (len(scores) - 1)
    return torch.exp(others - scores)


def modulation_coefficients(scores: Tensor, running: Tensor, alpha: float, clip: float) -> Tensor:
    """k^m from this step's mono-modal scores and their running means (see the module docstring)."""
    return torch.exp(alpha * (discrepancy_ratios(running) - discrepancy_ratios(scores)).clamp(max=clip))


@METHODS.register("agm")
class AGM(Method):
    name = "agm"
    Options = AGMOptions
    group = "baseline"
    style = Style("AGM", "#117733", "h", (0, (1, 1)), "**")

    def __init__(self, config, spec) -> None:
        super().__init__(config, spec)
        self.require_modalities(2)
        # Saved in checkpoints: the running mean of each modality's score over every step so far, and the
        # coefficients last applied (1 before the window; after it, the window's last ones).
        self.register_buffer("running_scores", torch.zeros(len(self.modalities())))
        self.register_buffer("steps", torch.zeros((), dtype=torch.long))
        self.register_buffer("coefficients", torch.ones(len(self.modalities())))

    def loss(self, model: nn.Module, inputs: Inputs, labels: Tensor, step: StepInfo) -> StepOutput:
        responses = shapley_responses(model.head, model.features(inputs), *padded_features(model, inputs))
        with torch.no_grad():
            scores = torch.stack([
                -o.float().softmax(1).gather(1, labels[:, None]).clamp_min(FLOOR).log().mean() for o in responses.values()])
            scores = distributed.mean_tensor(scores)  # over the global batch
            if self.options.in_window(step.epoch):
                coefficients = modulation_coefficients(scores, self.running_scores, self.options.alpha, self.options.clip)
            else:  # before the window the initial 1s, after it the last ones: the official hooks keep their scale
                coefficients = self.coefficients.clone()
        # Forward: the fused logits; backward: the gradient reaching o^m scaled by k^m.
        fused = sum(k * o + (1 - k) * o.detach() for k, o in zip(coefficients.to(labels.device), responses.values()))
        loss = F.cross_entropy(fused, labels)
        logs = {"loss": loss.detach(), **{f"coeff_{m}": k for m, k in zip(responses, coefficients)},
                **{f"score_{m}": s for m, s in zip(responses, scores)}}
        return StepOutput(loss, logs, {"scores": scores, "coefficients": coefficients})

    def backward(self, model: nn.Module, output: StepOutput) -> None:
        output.loss.backward()
        self.coefficients.copy_(output.saved["coefficients"])
        # sbar_t = sbar_{t-1} (t - 1) / t + s_t / t: the mean of the scores of every step so far.
        self.steps += 1
        self.running_scores += (output.saved["scores"].to(self.running_scores) - self.running_scores) / self.steps
