"""LFM: learning the modality gap (Wan, Guan et al., "Facilitating Multimodal Classification via
Dynamically Learning Modality Gap", NeurIPS 2024).

The fused cross-entropy (fitting the labels) is integrated with an unsupervised term that pulls the
modalities' predictions together (closing their gap), and the balance between the two moves during
training: the alignment term leads early, the classification term later. With u_m each modality's
own logits, scaled so that the fused logits are their mean (u_m = M * the modality's share of the
fused head's logits, `head.modality_logits`; the official model's per-modality classifiers, whose
average is its prediction):

    p_m      = softmax(u_m),   mid = (p_m + p_n) / 2
    D(m, n)  = (KL(mid || p_m) + KL(mid || p_n)) / 2          (per sample, averaged over the batch)
    L_align  = mean of D(m, n) over the pairs of modalities
    L        = 2 * (w_cls * CE(fused logits, y) + w_align * L_align),     w_cls = 1 - w_align

`balance: learned` (the paper's learning-based integration, the default) re-learns w_align before
every epoch from a small slice held out of train, with the official code's update:

    L_total  = w_cls * CE + w_align * L_align                  (on the held-out slice, no factor 2)
    h        = d/dtheta (grad L_total . g),  g = grad L_cls      (Hessian-vector product, double backward)
    w_align <- clip(w_align - lr_e * mean(h over the model's first parameter tensor), 0.05, 0.95)
    lr_e     = alpha_lr * 0.5 ** (epoch // alpha_lr_halving_epochs)

`balance: fitted` (the paper's heuristic integration, what the official README runs) takes
w_cls from the polynomial the authors fitted to a learned curve over a 200-epoch run, evaluated at
the same fraction of this run (w_cls rises from 0.20 to 0.92), and holds nothing out.
Predictions are the fused head's.

Where each detail comes from:
  * integrating a supervised and an unsupervised cross-modal term with a weight that changes over
    training, heuristic and learned integration: the paper (its abstract; the PDF could not be
    consulted here, so every formula is taken from the official code, njustkmg/NeurIPS24-LFM);
  * the alignment term, fused = mean of the per-modality classifiers' logits, the factor 2, and the
    fitted polynomial: `Crema_epoch.py` (`Alignment`, `getAlpha_Learnable_Fitted`,
    `train_audio_video` l. 56-76). Its "JS" passes (log p, mid) to `F.kl_div`, which computes
    KL(mid || p), not the textbook Jensen-Shannon KL(p || mid); we compute what the code computes;
  * the learned update (double backward, mean of the first parameter tensor's entries, the clip to
    [0.05, 0.95], w_cls = 1 - w_align, alpha_lr 1e-4 halved every 20 epochs, the start
    w_align = 0.95, once before every epoch on 16 samples held out of train of which it uses the
    first half): `Crema_epoch_learnable.py` (`getAlpha_Learnable` l. 55-97, l. 217-254);
  * BalanceBenchmark (GeWu-Lab/BalanceBenchmark `balancemm/trainer/LFM_trainer.py`) differs: it
    starts from w_align = 0.05 (the official code starts from 0.95; we follow the official code),
    takes the held-out batch from the validation split (a quarter of its first batch) and averages
    L_align over all pairs of modalities, which we do for more than two modalities (ours, as theirs);
  * [design choice] `holdout` 8 samples held out (the official code holds out 16 and uses 8), drawn
    from (seed) alone, so a resumed run holds out the same samples; the update runs with the model
    in eval mode (batch-norm statistics are not moved by the held-out batch; the official code runs
    it in whatever mode the last evaluation left); `fitted` maps epoch e of this run to epoch
    200 * e / epochs of the polynomial, which was fitted on 200 epochs.
"""

from __future__ import annotations

import itertools
from typing import Literal

import torch
import torch.nn.functional as F
from pydantic import Field
from torch import Tensor, nn

from ..config import Section
from ..data import Inputs, Split
from ..engine import make_loader, to_device
from ..style import Style
from .base import Method, StepInfo, StepOutput, TrainingContext
from .registry import METHODS

WEIGHT_BOUNDS = (0.05, 0.95)  # the official clip of the learned alignment weight
# The official fit of w_cls over a 200-epoch run (`getAlpha_Learnable_Fitted`): coefficients of epoch**0..5.
FITTED_CLS = (2.04623704e-01, 3.35472727e-03, 1.22989557e-04, -2.92947416e-06, 2.23835486e-08, -5.39717505e-11)
FITTED_EPOCHS = 200


class LFMOptions(Section):
    balance: Literal["learned", "fitted"] = Field("learned", description="learned: bi-level update each epoch; fitted: the official polynomial")
    initial_alignment_weight: float = Field(0.95, ge=WEIGHT_BOUNDS[0], le=WEIGHT_BOUNDS[1], description="w_align before the first update")
    alpha_lr: float = Field(1e-4, ge=0, description="step size of the learned update of w_align")
    alpha_lr_halving_epochs: int = Field(20, gt=0, description="alpha_lr halves every this many epochs")
    holdout: int = Field(8, gt=0, description="train samples held out for the learned update")


def alignment_divergence(logits_m: Tensor, logits_n: Tensor) -> Tensor:
    """(KL(mid || p_m) + KL(mid || p_n)) / 2, summed over classes, averaged over the batch."""
    p_m, p_n = logits_m.float().softmax(-1), logits_n.float().softmax(-1)
    mid = (p_m + p_n) / 2
    return (F.kl_div(p_m.log(), mid, reduction="batchmean") + F.kl_div(p_n.log(), mid, reduction="batchmean")) / 2


def fitted_classification_weight(epoch: int, epochs: int) -> float:
    x = FITTED_EPOCHS * epoch / epochs
    return sum(c * x**i for i, c in enumerate(FITTED_CLS))


@METHODS.register("lfm")
class LFM(Method):
    name = "lfm"
    Options = LFMOptions
    group = "baseline"
    style = Style("LFM", "#44AA99", "<", (0, (5, 2, 1, 2)), "--")

    def __init__(self, config, spec) -> None:
        super().__init__(config, spec)
        self.require_modalities(2)
        # Saved in checkpoints: a resumed run balances as the interrupted one did.
        self.register_buffer("alignment_weight", torch.tensor(self.options.initial_alignment_weight))
        self.held_out: Split | None = None  # set by `prepare` for `balance: learned`

    def prepare(self, model: nn.Module, context: TrainingContext) -> Split:
        train = context.bundle.splits["train"]
        if self.options.balance != "learned":
            return train
        order = torch.randperm(len(train), generator=torch.Generator().manual_seed(self.config.train.seed)).tolist()
        n = min(self.options.holdout, len(train) - 1)
        self.held_out = train.subset(order[:n]).deterministic()
        return train.subset(order[n:])

    def unimodal_logits(self, model: nn.Module, features: dict[str, Tensor]) -> list[Tensor]:
        """u_m = M * modality m's share of the fused logits, so that the fused logits are their mean."""
        shares = model.head.modality_logits(features)
        return [len(shares) * shares[m] for m in self.modalities()]

    def losses(self, model: nn.Module, inputs: Inputs, labels: Tensor) -> tuple[Tensor, Tensor]:
        """(fused cross-entropy, mean alignment divergence over the pairs of modalities)."""
        features = model.features(inputs)
        ce = F.cross_entropy(model.head(features), labels)
        logits = self.unimodal_logits(model, features)
        align = torch.stack([alignment_divergence(a, b) for a, b in itertools.combinations(logits, 2)]).mean()
        return ce, align

    def on_epoch_start(self, epoch: int, model: nn.Module, context: TrainingContext) -> None:
        if self.options.balance == "fitted":
            self.alignment_weight.fill_(1 - fitted_classification_weight(epoch, self.config.train.epochs))
        else:
            model.eval()
            self.alignment_weight.copy_(self.learned_update(model, epoch, context.device))

    def learned_update(self, model: nn.Module, epoch: int, device: torch.device) -> Tensor:
        """The new w_align from one double-backward step on the held-out slice (see the module docstring)."""
        batches = [to_device(inputs, labels, device) for inputs, labels in make_loader(self.held_out, self.config, train=False)]
        inputs = {m: torch.cat([b[0][m] for b in batches]) for m in self.modalities()}
        labels = torch.cat([b[1] for b in batches])
        params = [p for p in model.parameters() if p.requires_grad]
        with torch.enable_grad():
            ce, align = self.losses(model, inputs, labels)
            w = self.alignment_weight
            total = (1 - w) * ce + w * align
            total_grads = torch.autograd.grad(total, params, create_graph=True)
            cls_grads = torch.autograd.grad(ce, params, retain_graph=True)
            (hvp_first,) = torch.autograd.grad(total_grads, params[:1], grad_outputs=cls_grads)
        lr = self.options.alpha_lr * 0.5 ** (epoch // self.options.alpha_lr_halving_epochs)
        return (w - lr * hvp_first.mean()).clamp(*WEIGHT_BOUNDS).detach()

    def loss(self, model: nn.Module, inputs: Inputs, labels: Tensor, step: StepInfo) -> StepOutput:
        ce, align = self.losses(model, inputs, labels)
        w = self.alignment_weight
        loss = 2 * ((1 - w) * ce + w * align)
        logs = {"loss": loss.detach(), "ce_fused": ce.detach(), "align": align.detach(), "w_align": w.clone()}
        return StepOutput(loss, logs)
