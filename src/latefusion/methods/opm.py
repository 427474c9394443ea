"""OPM: On-the-fly Prediction Modulation (Wei, Hu, Du & Wen, "On-the-fly Modulation for Balanced
Multimodal Learning", IEEE TPAMI 2024).

Late fusion whose forward pass, in training, drops the dominant modality's features sample by
sample, with a probability that grows with how far it leads, so the fused prediction has to lean on
the others:

    s_m    = sum over the batch of softmax(logits_m)[y]    logits_m: modality m's share of the fused
                                                           logits (`head.modality_logits`)
    rho_m  = s_m / mean of s_n over the other modalities n
    q_m    = clip(q_base * (1 + lam * tanh(rho_m - 1)), 0, 1)   if rho_m > 1,  else 0
    with probability p_exe per step (else the step is plain late fusion):
        keep_im ~ Bernoulli(1 - q_m)                       per sample i and modality m
        theta   = sum_m d_m q_m / sum_m d_m                d_m: modality m's feature size
        f_im   <- keep_im * f_im / (1 - theta)
    L = CE(head(f), y)

Scores and q are taken without gradient; the gradient reaches an encoder only through the samples
whose features were kept. Evaluation never drops: predictions are the plain fused logits.

Where each detail comes from (GeWu-Lab/BML_TPAMI2024):
  * the score (half the bias in each modality's share), q with q_base, lambda, tanh and the ReLU
    that leaves every modality with rho <= 1 undropped, the clip to [0, 1]: `code/models/Classifier.py`
    `calcu_q` (lines 58-72) and `forward` (lines 139-149);
  * the drop executed with probability p_exe per step, per-sample Bernoulli(1 - q_m) masks, the
    rescaling by 1 / (1 - theta) with theta the feature-size-weighted mean of q (forward and backward
    alike, `custom_autograd`): `Modality_drop.execute_drop` (lines 24-55);
  * no dropping during the warm-up, epochs 0..5 (`code/main.py` line 91): `start_epoch` 6; the
    official code drops until the end of training (`end_epoch: null`);
  * q_base 0.5, lam 0.5, p_exe 0.7: `code/scripts/train_opm.sh` (the config file's q_base is 0.4);
  * the official code removes from the loss the samples whose every modality was dropped (main.py
    lines 95-101). Under this rule none exists: the modality with the lowest score has rho <= 1, so
    q = 0, and it is never dropped; so nothing is removed here;
  * the journal paper's text could not be read here (only its abstract): the equations are taken
    from the official code;
  * more than two modalities [design choice]: rho_m against the mean of the others (as ogm_ge.py;
    the official code has two). GeWu-Lab/BalanceBenchmark's `OPMTrainer` (balancemm/trainer/
    OPM_trainer.py) divides by the sum of the others for three, has no warm-up, defaults q_base to
    0.4, adds 1e-5 to 1 - theta and to the denominator of rho, and computes no loss at all outside
    its modulation window; we follow the official code.
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
from .ogm_ge import score_ratios, true_class_scores
from .registry import METHODS


class OPMOptions(EpochWindow):
    q_base: float = Field(0.5, ge=0, le=1, description="drop probability of a modality just ahead of the others (official script 0.5)")
    lam: float = Field(0.5, ge=0, description="lambda: how much the drop probability grows with the lead")
    p_exe: float = Field(0.7, ge=0, le=1, description="probability that a training step drops at all")
    start_epoch: int = Field(6, ge=0, description="first epoch that drops (the official warm-up leaves epochs 0-5 plain)")
    end_epoch: int | None = Field(None, ge=0, description="last epoch that drops, inclusive (null: to the end, as officially)")


def drop_probabilities(scores: Tensor, q_base: float, lam: float) -> Tensor:
    """q_m per modality from the summed true-class probabilities s_m (see the module docstring)."""
    ratio = score_ratios(scores)
    return torch.where(ratio > 1, (q_base * (1 + lam * torch.tanh(ratio - 1))).clamp(0, 1), torch.zeros_like(ratio))


@METHODS.register("opm")
class OPM(Method):
    name = "opm"
    Options = OPMOptions
    group = "baseline"
    style = Style("OPM", "#AA4499", ">", (0, (1, 2)), "xx")

    def __init__(self, config, spec) -> None:
        super().__init__(config, spec)
        self.require_modalities(2)

    def loss(self, model: nn.Module, inputs: Inputs, labels: Tensor, step: StepInfo) -> StepOutput:
        features = model.features(inputs)
        with torch.no_grad():
            scores = distributed.sum_tensor(true_class_scores(model.head.modality_logits(features), labels))  # over the global batch
            q = drop_probabilities(scores, self.options.q_base, self.options.lam)
        logs = {f"q_{m}": value for m, value in zip(features, q)} | {"executed": torch.zeros_like(q[0])}
        if self.options.in_window(step.epoch):
            with torch.no_grad():
                # One draw per step decides whether it drops (the same on every process: they share the seed).
                execute = torch.rand((), device=q.device) < self.options.p_exe
                keep = torch.bernoulli((1 - q).expand(len(labels), -1))
                dims = torch.tensor([f.shape[1] for f in features.values()], dtype=q.dtype, device=q.device)
                theta = (dims * q).sum() / dims.sum()
                factors = torch.where(execute, keep / (1 - theta), torch.ones_like(keep))
            features = {m: f * factors[:, i, None].to(f.dtype) for i, (m, f) in enumerate(features.items())}
            logs["executed"] = execute.float()
        loss = F.cross_entropy(model.head(features), labels)
        return StepOutput(loss, {"loss": loss.detach(), **logs})
