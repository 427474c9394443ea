"""G2D: Gradient-Guided Distillation (Rakib & Bagavathi, "G2D: Boosting Multimodal Learning with
Gradient-Guided Distillation", ICCV 2025; arXiv 2506.21514).

UMT's setting (a late-fusion student, frozen uni-modal teachers trained on each modality alone) with
two additions: each teacher also distils its logits into the student's fused logits, and on every
batch the modality whose teacher is the most confident has its encoder's gradients switched off, so
that the others lead the update (the paper's sequential modality prioritisation, SMP):

    z       = the student's fused logits;   f_m = its encoder features;   t_m, l_m = teacher m's features, logits
    L       = CE(z, y) + weight * sum_m MSE(g_m(f_m), t_m)
                       + logit_weight * sum_m T^2 KL(softmax(l_m / T) || softmax(z / T))
    c^m     = sum over the batch of softmax(l_m)[y]              (teacher m's confidence on this batch)
    k^m     = 0 if c^m > c^n for every other modality n, else 1  (within start_epoch..end_epoch; 1 outside)
    grad(W) <- k^m grad(W)        for the modulated weights W of encoder m (OGM-GE's: convolution
                                  weights, or the weight matrices of an encoder without any)

The forward pass, and so the predictions, are the plain fused model's.

Sources read: the paper's abstract and method summary (arXiv 2506.21514: the loss as the supervised
multimodal loss plus per-modality feature and logit distillation, SMP guided by the unimodal
teachers' confidence scores); the PDF's equations could not be read here, so every detail below is
taken from the official code, rAIson-Lab/G2D (code files of commit 8a60cf3; line numbers there):
  * the loss: `student.py` `train`, lines 100-146 (`exp_name = 'aT+aTF+vT+vTF-to-mS'`, config.py
    line 12): the cross-entropy of the fused logits, plus for each modality the KL
    divergence of the fused student logits from that teacher's logits at temperature T, times T^2
    (`distillation_loss`, line 179, batch mean), plus the MSE of the student's features to the
    teacher's (`feature_loss`, line 188); every weight 1 and T = 1 (config.py lines 106-126);
  * the teachers: the uni-modal models (encoder + linear classifier) in eval mode, without gradients
    (`student.py` lines 24-60, `.eval()` at 41 and 60, `torch.no_grad()` around each teacher
    call), which is what UMT's teachers are here (`methods/teachers.py`): this method reuses UMT's
    teacher runs, references, checks and feature cache, and the teacher's logits are its own head
    applied to those features;
  * SMP: `utils/utils.py` `modulate_gradients_based_on_scores_from_two_modalities` (lines 210-292):
    teacher confidences as the batch sums of the true-class softmax probabilities, coefficient 0
    for the modality whose teacher is the more confident and 1 for the other, multiplied into the
    gradients of each encoder's 4-D (convolution) weights after the backward pass (lines 275-286),
    on epochs `modulation_starts`..`modulation_ends` = 0..150 of 300 (config.py lines 37, 50-51):
    here epochs 0..train.epochs // 2 by default, the same first half of the run [design choice: a
    run shorter than 151 epochs would otherwise be prioritised throughout, and a modality whose
    teacher is the more confident on every batch would then never train its weights; measured in
    docs/methods.md];
  * students from scratch (`student.py` line 223, `weight_init`), and features distilled as they are
    (`distill: plain`, `init: scratch` here, so g_m is the identity; UMT's projected form and
    teacher initialisation stay available as options). The optimiser and schedule are the run's;
    the official ones are SGD with momentum 0.9, lr 1e-3, weight decay 1e-4, batch 16, lr x 0.1 at
    epoch 200 of 300 (config.py lines 36-44, `student.py` line 249).
Where this differs from the official code [design choices]:
  * more than two modalities: the modality whose teacher is the most confident is switched off, the
    others train (with two, the official rule); on an exact tie no modality is switched off (the
    official code raises an error on a tie);
  * the confidences are summed over the global batch on several processes, so every process
    switches off the same modality;
  * the fusion head is the run's (`model.fusion`, concat by default); the official default averages
    one linear head per modality (`fusion_method = 'late'`, config.py line 73), close to
    `fusion: sum`;
  * the modulated weights of an encoder without convolutions are its weight matrices (OGM-GE's rule
    here, `methods/ogm_ge.py`); the official code would modulate nothing there.
GeWu-Lab/BalanceBenchmark has no G2D trainer (its `balancemm/trainer/` lists none), so there is no
second implementation to compare with.
"""

from __future__ import annotations

from typing import Literal

import torch
import torch.nn.functional as F
from pydantic import Field
from torch import Tensor, nn

from .. import distributed
from ..data import Inputs
from ..style import Style
from .base import EpochWindow, StepInfo, StepOutput
from .ogm_ge import modulated_parameters, true_class_scores
from .registry import METHODS
from .umt import UMT, UMTOptions


class G2DOptions(UMTOptions, EpochWindow):
    weight: float = Field(1.0, ge=0, description="weight of the feature distillation (MSE to each teacher's features)")
    distill: Literal["projected", "plain"] = "plain"
    init: Literal["teacher", "scratch"] = "scratch"
    logit_weight: float = Field(1.0, ge=0, description="weight of the logit distillation (KL from each teacher's logits)")
    temperature: float = Field(1.0, gt=0, description="temperature of the logit distillation")
    prioritise: bool = Field(True, description="switch off the encoder of the most confident teacher's modality (SMP)")
    end_epoch: int | None = Field(None, ge=0, description="last epoch prioritised (inclusive; default train.epochs // 2, the official 150 of 300)")


def prioritised(confidences: Tensor) -> Tensor:
    """k^m: 0 for the modality whose teacher is the most confident (strictly), 1 for the others. No host sync."""
    leaders = confidences == confidences.max()
    return torch.where(leaders & (leaders.sum() == 1), 0.0, 1.0).to(confidences.dtype)


def logit_distillation(student: Tensor, teacher: Tensor, temperature: float) -> Tensor:
    """T^2 KL(softmax(teacher / T) || softmax(student / T)), the batch mean."""
    log_student = (student.float() / temperature).log_softmax(1)
    log_teacher = (teacher.float() / temperature).log_softmax(1)
    return F.kl_div(log_student, log_teacher, reduction="batchmean", log_target=True) * temperature**2


@METHODS.register("g2d")
class G2D(UMT):
    name = "g2d"
    Options = G2DOptions
    group = "baseline"
    style = Style("G2D", "#332288", "p", (0, (4, 1, 1, 1, 1, 1)), "--")

    def __init__(self, config, spec) -> None:
        super().__init__(config, spec)
        self.require_modalities(2)
        if self.options.end_epoch is None:
            self.options = self.options.model_copy(update={"end_epoch": config.train.epochs // 2})

    def loss(self, model: nn.Module, inputs: Inputs, labels: Tensor, step: StepInfo) -> StepOutput:
        options = self.options
        features = model.features(inputs)
        fused = model.head(features)
        ce = F.cross_entropy(fused, labels)
        feature_terms, logit_terms, teacher_logits = [], [], {}
        for m in self.modalities():
            target = self.teacher_features(inputs, m)
            teacher_logits[m] = self.teachers[m].head({m: target}).float()  # the frozen teacher's own head
            feature_terms.append(F.mse_loss(self.projectors[m](features[m]).float(), target.float()))
            logit_terms.append(logit_distillation(fused, teacher_logits[m], options.temperature))
        feature_terms, logit_terms = torch.stack(feature_terms), torch.stack(logit_terms)
        loss = ce + options.weight * feature_terms.sum() + options.logit_weight * logit_terms.sum()
        with torch.no_grad():  # each teacher's confidence, over the global batch
            confidences = distributed.sum_tensor(true_class_scores(teacher_logits, labels))
            coefficients = prioritised(confidences)
            if not (options.prioritise and options.in_window(step.epoch)):
                coefficients = torch.ones_like(coefficients)
        logs = {"loss": loss.detach(), "ce": ce.detach()}
        for i, m in enumerate(self.modalities()):
            logs |= {f"distill_{m}": feature_terms[i].detach(), f"kd_{m}": logit_terms[i].detach(), f"coeff_{m}": coefficients[i]}
        return StepOutput(loss, logs, {"coefficients": coefficients})

    def backward(self, model: nn.Module, output: StepOutput) -> None:
        output.loss.backward()
        for m, k in zip(self.modalities(), output.saved["coefficients"]):
            for p in modulated_parameters(model.encoders[m]):
                if p.grad is not None:
                    p.grad.mul_(k.to(p.grad.dtype))
