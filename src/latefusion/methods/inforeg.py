"""InfoReg: Information Acquisition Regulation (Huang, Wei, Yang & Hu, "Adaptive Unimodal Regulation
for Balanced Multimodal Information Acquisition", CVPR 2025).

Late fusion trained on the fused and the uni-modal losses. While a modality is in its prime learning
window (the early epochs in which it still acquires information fast, read from the growth of its
encoder's Fisher information) and it leads the others on the batch, a proximal term holds its
encoder near where it was at the start of the epoch, so that it acquires information more slowly
and leaves room for the others:

    logits_m = modality m's share of the fused logits (`head.modality_logits`)
    L        = CE(fused logits, y) + sum_m CE(logits_m, y)
    s_m      = sum over the batch of softmax(logits_m)[y]
    gap_m    = s_m - mean of s_n over the other modalities n
    beta_m   = c_m * exp(tanh(gap_m))   if gap_m > 0 and modality m is in its window,  else 0
    grad(theta_m) <- grad(theta_m) + beta_m * (theta_m - anchor_m)      every parameter of encoder m;
                                           anchor_m: encoder m's parameters at the start of the epoch
    F_m      = sum over the epoch's steps and encoder m's weight tensors (2 or more dimensions) of
               the mean of grad(W)^2 over W's entries          (after the regulation term is added)
    window of epoch e: e = 0, or (T_{e-1} - T_{e-11}) / (T_{e-10} + ... + T_{e-1}) > threshold
               where T_j = F_m of epoch j (0 before the first epoch): the relative growth of the
               10-epoch moving average of the trace of the Fisher information

(beta_m (theta_m - anchor_m) is the gradient of the proximal term beta_m / 2 |theta_m - anchor_m|^2.)
Predictions are the plain fused logits.

Where each detail comes from (GeWu-Lab/InfoReg_CVPR2025, `main.py`):
  * the loss L, the fused plus both uni-modal cross-entropies on the head's shares, each share with
    half the bias (lines 359-380, 456-458);
  * the score s_m (lines 460-461), the coefficient c * exp(tanh(gap)) on the summed scores and only
    for the modality ahead, only while k > 0.05 (lines 465-485), the proximal gradient added to every
    parameter of that modality's encoder with the anchor a copy of the model taken at the start of
    each epoch (lines 259, 489-495): the official code; the paper's text could not be read here
    (only its abstract and summaries: a Fisher-information measure of the prime learning window and
    a regulation term whose coefficient depends on the performance gap), so the equations are
    the official code's;
  * the trace: squared gradients of every convolution and linear weight of the encoder accumulated
    over the epoch, then the mean of each layer's sum, summed over layers (lines 292-319, 501-523,
    564-577); k from the last eleven epochs' traces padded with ten zeros, k = 1 at epoch 0
    (lines 237-243, 693-694);
  * c = 0.95: the official coefficient for audio, the modality that leads on CREMA-D; the official
    code gives visual 0.1 when visual leads (`beta_by_modality: {audio: 0.95, visual: 0.1}` is that
    setting) [design choice: one strength for every modality unless set per modality];
  * each modality's window from its own encoder's trace [design choice]: the official code reads
    the audio encoder's trace (`audio_trace_list`) for both modalities, that is, the window of the
    modality it expects to lead (on CREMA-D, the same thing);
  * more than two modalities [design choice]: gap_m against the mean of the others, so every
    modality ahead of the others' mean is regulated; with two modalities the rule is the official
    one. GeWu-Lab/BalanceBenchmark has no InfoReg trainer.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from pydantic import Field
from torch import Tensor, nn

from .. import distributed
from ..config import Section
from ..data import Inputs
from ..errors import ConfigError
from ..style import Style
from .base import Method, StepInfo, StepOutput, TrainingContext
from .ogm_ge import true_class_scores
from .registry import METHODS

HISTORY = 11  # epochs of traces the window rule reads: this one's moving average of 10 against the last one's


class InfoRegOptions(Section):
    beta: float = Field(0.95, ge=0, description="c: strength of the regulation of a leading modality (official, audio: 0.95)")
    beta_by_modality: dict[str, float] = Field(default_factory=dict, description="modality -> c, overriding beta (official CREMA-D: audio 0.95, visual 0.1)")
    window_threshold: float = Field(0.05, description="a modality is in its prime learning window while its trace's relative growth exceeds this")


def window_growth(traces: Tensor) -> Tensor:
    """(modalities, 11) per-epoch traces, oldest first -> the relative growth of each modality's
    10-epoch moving average: (mean of the last 10 - mean of the 10 before) / mean of the last 10."""
    return (traces[:, -1] - traces[:, 0]) / traces[:, 1:].sum(1)


@METHODS.register("inforeg")
class InfoReg(Method):
    name = "inforeg"
    Options = InfoRegOptions
    group = "baseline"
    style = Style("InfoReg", "#DDCC77", "d", (0, (2, 1, 1, 1, 1, 1)), "\\\\.")

    def __init__(self, config, spec) -> None:
        super().__init__(config, spec)
        self.require_modalities(2)
        unknown = set(self.options.beta_by_modality) - set(self.modalities())
        if unknown:
            raise ConfigError(f"method.options.beta_by_modality names modalities {sorted(unknown)} that data set {spec.name!r} lacks; it has {spec.modality_names}")
        self.register_buffer("strengths", torch.tensor([self.options.beta_by_modality.get(m, self.options.beta) for m in self.modalities()]))
        # Saved in checkpoints, so that a run resumed inside an epoch regulates toward the same anchor
        # and reads the same window: the encoders as they were at the start of the epoch (a copy built
        # here, its weights set before each epoch; built without consuming the global random stream),
        # the last epochs' traces, this epoch's trace so far, and which modalities are in their window.
        with torch.random.fork_rng(devices=[]):
            self.anchor = self.build_model().encoders.requires_grad_(False)
        self.register_buffer("traces", torch.zeros(len(self.modalities()), HISTORY))
        self.register_buffer("epoch_trace", torch.zeros(len(self.modalities())))
        self.register_buffer("in_window", torch.ones(len(self.modalities()), dtype=torch.bool))

    def on_epoch_start(self, epoch: int, model: nn.Module, context: TrainingContext) -> None:
        if epoch > 0:
            self.traces.copy_(torch.cat([self.traces[:, 1:], self.epoch_trace[:, None]], dim=1))
            self.epoch_trace.zero_()
            self.in_window.copy_(window_growth(self.traces) > self.options.window_threshold)
        self.anchor.load_state_dict(model.encoders.state_dict())

    def loss(self, model: nn.Module, inputs: Inputs, labels: Tensor, step: StepInfo) -> StepOutput:
        features = model.features(inputs)
        fused = F.cross_entropy(model.head(features), labels)
        shares = model.head.modality_logits(features)
        unimodal = torch.stack([F.cross_entropy(logits, labels) for logits in shares.values()])
        loss = fused + unimodal.sum()
        with torch.no_grad():
            scores = distributed.sum_tensor(true_class_scores(shares, labels))  # over the global batch
            gap = scores - (scores.sum() - scores) / (len(scores) - 1)
            regulated = (gap > 0) & self.in_window.to(gap.device)
            coefficients = torch.where(regulated, self.strengths.to(gap.device) * torch.exp(torch.tanh(gap)), torch.zeros_like(gap))
        logs = {"loss": loss.detach(), "ce_fused": fused.detach()}
        for i, m in enumerate(shares):
            logs |= {f"ce_{m}": unimodal[i].detach(), f"beta_{m}": coefficients[i]}
        return StepOutput(loss, logs, {"coefficients": coefficients})

    def backward(self, model: nn.Module, output: StepOutput) -> None:
        output.loss.backward()
        with torch.no_grad():
            for i, m in enumerate(self.modalities()):
                k = output.saved["coefficients"][i]
                trace = self.epoch_trace.new_zeros(())
                for p, anchor in zip(model.encoders[m].parameters(), self.anchor[m].parameters()):
                    if p.grad is None:
                        continue
                    p.grad.add_(k.to(p.grad.dtype) * (p - anchor))
                    if p.dim() >= 2:  # convolution and linear weights: the Fisher information's trace
                        trace += p.grad.float().pow(2).mean()
                self.epoch_trace[i] += trace
