"""PMR: Prototypical Modal Rebalance (Fan, Xu, Wang, Yu & Wang, "PMR: Prototypical Modal Rebalance
for Multimodal Learning", CVPR 2023).

Naive late fusion plus, for each modality m, a non-parametric classifier: one prototype per class,
the mean encoder feature of that class over the training set, re-estimated before every epoch. How
well each modality's features cluster around its prototypes measures how far along it is, and the
modality that lags gets an extra loss pulling its features toward its prototypes (the prototypical
cross-entropy, PCE), while, early in training, the one that leads is kept from converging too soon
(the prototypical entropy regularisation, PER):

    c_k^m   <- (1 - momentum) * mean of z^m = encoder_m(x^m) over the train samples of class k
               + momentum * c_k^m                       (plain mean at the first estimate)
    p_i^m   = softmax_k(-|z_i^m - c_k^m|)               (Euclidean distance, not squared)
    L_PCE^m = mean_i -log p_i^m[y_i]
    L_PER^m = mean_i entropy(p_i^m)
    S^m     = sum over the batch of p_i^m[y_i]          (the prototype-based score)
    r^m     = S^m / mean of S^n over the other modalities n       (two modalities: rho = S^a / S^v)
    beta^m  = clip(1/r^m - 1, 0, 1)     > 0 only for a modality behind the others (r^m < 1)
    gamma^m = clip(r^m - 1, 0, 1)       > 0 only for a modality ahead of the others (r^m > 1)
    L = CE(fused logits, y) + alpha * sum_m beta^m L_PCE^m - mu * sum_m gamma^m L_PER^m

(-mu * entropy: minimising L raises the leading modality's prototype entropy.) The ratio, and so
the coefficients, are taken without gradient; L_PCE and L_PER carry gradients into the encoders only
(the prototypes are constants between estimates). Predictions are the fused head's, as in naive
late fusion.

Where each detail comes from:
  * the prototypes as class means of each encoder's features over the training set, the distance-
    based softmax and L_PCE, the ratio of summed true-class prototype probabilities over the batch,
    PCE on the slow modality, PER on the dominant modality during the first epochs only: the paper;
  * the coefficients beta = clip(1/rho - 1, 0, 1) and gamma = clip(rho - 1, 0, 1), with alpha and mu
    as strengths (`coefficients: ratio`): the paper's rule as GeWu-Lab's BalanceBenchmark had it at
    commit 01458a1 ("PMR & gbl modified", 2024-11-26; `balancemm/trainer/PMR_trainer.py` lines
    176-191: the ratio's clip weighting the slower modality's PCE, and the PER of the leading one).
    Its next commit to that file (59c3446) replaced the clip by a constant `alpha`, which its
    current version keeps; the paper's PDF could not be consulted here, so the ratio form rests on
    that earlier implementation, which follows the paper's PER term (the official code has none).
    `coefficients: constant` is the official code's rule instead (fanyunfeng-bit/Modal-Imbalance-PMR
    `main_Prototype_grad.py`): beta = 1 for the slower modality, 0 for the other, whatever the size
    of the gap;
  * Euclidean (not squared) distance with no temperature, the momentum update of the prototypes
    with the old ones weighted 0.2 (`--momentum_coef`), alpha = 1 (`--alpha`) and the modulation
    window epochs 0..100 (`--modulation_starts/ends`): the official code;
  * mu = 0.01 and per_epochs = 10 [ours]: the sources reachable here give no values for PER's
    strength and length (the official code has no PER; BalanceBenchmark leaves both to the user);
  * the prototypes are re-estimated over the whole training set (`prototype_fraction: 1`), as the
    paper describes; the official code uses the first tenth of the shuffled training batches
    (`prototype_fraction: 0.1` gives a fixed random tenth). They are estimated without the
    training augmentation (the split's deterministic view) [design choice]; a class absent from
    the estimate keeps its previous prototype [design choice];
  * L_PER is the batch mean of the entropy (BalanceBenchmark sums over the batch; the mean keeps it
    on the scale of the cross-entropies) [design choice];
  * more than two modalities [design choice]: each modality's score against the mean of the others'
    (r^m above), so several modalities can be boosted or held back at once; with two modalities the
    rule is the paper's. The official code handles two modalities only.
"""

from __future__ import annotations

from typing import Literal

import torch
import torch.nn.functional as F
from pydantic import Field
from torch import Tensor, nn

from .. import distributed
from ..data import Inputs
from ..engine import make_loader, to_device
from ..style import Style
from .base import EpochWindow, Method, StepInfo, StepOutput, TrainingContext
from .registry import METHODS


class PMROptions(EpochWindow):
    alpha: float = Field(1.0, ge=0, description="strength of the prototypical cross-entropy on the slow modality")
    mu: float = Field(0.01, ge=0, description="strength of the prototypical entropy regularisation on the dominant modality")
    per_epochs: int = Field(10, ge=0, description="PER acts during the first this many epochs of the window")
    momentum: float = Field(0.2, ge=0, lt=1, description="weight of the previous prototypes at each re-estimate")
    prototype_fraction: float = Field(1.0, gt=0, le=1, description="fraction of the train split the prototypes are estimated on")
    coefficients: Literal["ratio", "constant"] = Field("ratio", description="ratio: clip(rho - 1, 0, 1) (BalanceBenchmark 01458a1); constant: 1 (official code)")
    end_epoch: int = Field(100, ge=0, description="last epoch rebalanced (inclusive)")


def prototype_distances(features: Tensor, prototypes: Tensor) -> Tensor:
    """(batch, classes) Euclidean distances; the square root is kept off zero so that its gradient
    stays finite when a feature sits on its prototype."""
    features = features.float()
    squared = (features.pow(2).sum(1, keepdim=True) - 2 * features @ prototypes.T + prototypes.pow(2).sum(1)).clamp_min(1e-12)
    return squared.sqrt()


def rebalance_coefficients(scores: Tensor, rule: str = "ratio") -> tuple[Tensor, Tensor]:
    """(beta, gamma) per modality from the summed true-class prototype probabilities S^m (see the module
    docstring): beta > 0 for a modality behind the others, gamma > 0 for one ahead. No host sync."""
    others = (scores.sum() - scores) / (len(scores) - 1)
    ratio = scores / others.clamp_min(1e-30)
    if rule == "constant":
        return (ratio < 1).to(scores.dtype), (ratio > 1).to(scores.dtype)
    return (1 / ratio.clamp_min(1e-30) - 1).clamp(0, 1), (ratio - 1).clamp(0, 1)


@METHODS.register("pmr")
class PMR(Method):
    name = "pmr"
    Options = PMROptions
    group = "baseline"
    style = Style("PMR", "#882255", "D", (0, (3, 1, 1, 1)), "..")

    def __init__(self, config, spec) -> None:
        super().__init__(config, spec)
        self.require_modalities(2)
        # Saved in checkpoints: a resumed run measures against the prototypes the interrupted one had.
        self.register_buffer("prototypes", torch.zeros(len(self.modalities()), spec.num_classes, config.model.feature_dim))
        self.register_buffer("estimates", torch.zeros((), dtype=torch.long))  # how many times they were estimated
        self.train_split = None

    def prepare(self, model: nn.Module, context: TrainingContext):
        train = context.bundle.splits["train"]
        self.train_split = train
        return train

    @torch.no_grad()
    def class_means(self, model: nn.Module, epoch: int, device: torch.device) -> tuple[Tensor, Tensor]:
        """Each modality's per-class feature sums over the estimate's samples, and the class counts,
        over the samples of every process."""
        dataset = self.train_split.deterministic()
        if self.options.prototype_fraction < 1:
            # A fixed function of (seed, epoch), so a resumed run estimates on the same samples.
            generator = torch.Generator().manual_seed(self.config.train.seed * 7_919 + epoch)
            n = max(1, round(self.options.prototype_fraction * len(dataset)))
            dataset = dataset.subset(torch.randperm(len(dataset), generator=generator)[:n].tolist())
        sums = torch.zeros_like(self.prototypes)
        counts = torch.zeros(self.spec.num_classes, device=sums.device)
        for inputs, labels in make_loader(distributed.part(dataset), self.config, train=False):
            inputs, labels = to_device(inputs, labels, device)
            features = model.features(inputs)
            for i, m in enumerate(self.modalities()):
                sums[i].index_add_(0, labels, features[m].float())
            counts += torch.bincount(labels, minlength=self.spec.num_classes).float()
        return distributed.sum_tensor(sums), distributed.sum_tensor(counts)

    def on_epoch_start(self, epoch: int, model: nn.Module, context: TrainingContext) -> None:
        if self.train_split is None:
            self.train_split = context.bundle.splits["train"]
        model.eval()
        sums, counts = self.class_means(model, epoch, context.device)
        present = counts > 0
        means = sums / counts.clamp_min(1)[None, :, None]
        if self.estimates > 0:
            means = (1 - self.options.momentum) * means + self.options.momentum * self.prototypes
        self.prototypes.copy_(torch.where(present[None, :, None], means, self.prototypes))
        self.estimates += 1

    def loss(self, model: nn.Module, inputs: Inputs, labels: Tensor, step: StepInfo) -> StepOutput:
        features = model.features(inputs)
        ce = F.cross_entropy(model.head(features), labels)
        pce, per, sums = [], [], []
        for i, m in enumerate(self.modalities()):
            log_p = (-prototype_distances(features[m], self.prototypes[i])).log_softmax(1)
            pce.append(F.nll_loss(log_p, labels))
            per.append(-(log_p.exp() * log_p).sum(1).mean())
            sums.append(log_p.detach().gather(1, labels[:, None]).exp().sum())
        pce, per = torch.stack(pce), torch.stack(per)
        with torch.no_grad():
            scores = distributed.sum_tensor(torch.stack(sums))  # over the global batch
            beta, gamma = rebalance_coefficients(scores, self.options.coefficients)
            window = self.options.in_window(step.epoch)
            early = step.epoch < self.options.start_epoch + self.options.per_epochs
            beta = beta * window
            gamma = gamma * (window and early)
        loss = ce + self.options.alpha * (beta * pce).sum() - self.options.mu * (gamma * per).sum()
        logs = {"loss": loss.detach(), "ce_fused": ce.detach()}
        for i, m in enumerate(self.modalities()):
            logs |= {f"pce_{m}": pce[i].detach(), f"beta_{m}": beta[i], f"gamma_{m}": gamma[i]}
        return StepOutput(loss, logs)
