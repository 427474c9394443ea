"""G-Blending: Gradient-Blending (Wang, Tran & Feiszli, "What Makes Training Multi-Modal
Classification Networks Hard?", CVPR 2020).

Besides the fused head, each modality gets its own linear head on its encoder's features, and the
training loss blends all the heads' cross-entropies:

    L = w_fused * CE(fused head) + sum_m w_m * CE(head_m)

The weights follow each head's overfitting-to-generalisation ratio over the last super-epoch of
`every` epochs, measured on the train samples and on a slice of train held out from training:

    G = held-out loss at the start - held-out loss at the end            (generalisation gained)
    O = (held-out - train loss at the end) - (held-out - train loss at the start)   (overfitting gained)
    w proportional to max(G, 0) / (O^2 + eps),  normalised to sum to 1

so a head that generalises more per unit of overfitting gets a larger share of the gradient.
Predictions come from the fused head alone, as in the paper.

Where each detail comes from:
  * the blended loss, the held-out slice of train, G / O^2 and the normalisation, re-estimation
    every super-epoch ("online" G-Blend) and predicting with the fused head: the paper;
  * the defaults: `holdout` 0.1 and `every` 5 epochs are ours for short runs [design choice];
    MultiBench (`training_structures/gradient_blend.py`) uses 8 % and 20 epochs;
  * how G and O are measured [design choice]: the paper's online algorithm (and MultiBench) trains a
    throw-away copy of each uni-modal model and of the fused model for a super-epoch to measure them;
    we read them off the heads of the model being trained, over the super-epoch it just trained, so
    there is one training loop and no extra training. Equal weights are used until the first
    measurement. Negative G counts as 0 (a head whose held-out loss rose gets no weight); `eps`
    keeps a head whose gap did not move from taking all the weight; if no head generalised, the
    weights are kept. The train loss is measured on as many train samples as are held out.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from pydantic import Field
from torch import Tensor, nn

from ..config import Section
from ..data import Inputs, Split
from ..engine import make_loader, to_device
from ..style import Style
from .base import Method, StepInfo, StepOutput, TrainingContext, unimodal_heads
from .registry import METHODS

FUSED = "fused"


class GBlendOptions(Section):
    holdout: float = Field(0.1, gt=0, lt=0.5, description="fraction of train held out to measure overfitting")
    every: int = Field(5, gt=0, description="super-epoch length: epochs between weight estimates")
    eps: float = Field(1e-4, gt=0, description="added to O^2")


def blend_weights(start: Tensor, end: Tensor, eps: float) -> Tensor | None:
    """Per-head weights from the (train, held-out) losses of each head at the start and end of a
    super-epoch (each of shape (2, heads)); None when no head generalised."""
    generalisation = (start[1] - end[1]).clamp_min(0)
    overfitting = (end[1] - end[0]) - (start[1] - start[0])
    raw = generalisation / (overfitting**2 + eps)
    total = raw.sum()
    return raw / total if total > 0 else None


@METHODS.register("gblend")
class GradientBlending(Method):
    name = "gblend"
    Options = GBlendOptions
    style = Style("G-Blending", "#E69F00", "v", "--", "xx")

    def __init__(self, config, spec) -> None:
        super().__init__(config, spec)
        self.require_modalities(2)
        self.heads = [*self.modalities(), FUSED]
        self.unimodal_heads = unimodal_heads(spec, config, self.modalities())
        # Saved in checkpoints, so a resumed run blends as the interrupted one did.
        self.register_buffer("weights", torch.full((len(self.heads),), 1 / len(self.heads)))
        self.register_buffer("last_losses", torch.full((2, len(self.heads)), float("nan")))
        self.measured: tuple[Split, Split] | None = None  # (a train sample, the held-out slice), set by `prepare`

    def prepare(self, model: nn.Module, context: TrainingContext) -> Split:
        # The slice is a function of the seed alone, so a resumed run holds out the same samples.
        train = context.bundle.splits["train"]
        order = torch.randperm(len(train), generator=torch.Generator().manual_seed(self.config.train.seed)).tolist()
        n = max(1, round(self.options.holdout * len(train)))
        self.measured = (train.subset(order[n : 2 * n]).deterministic(), train.subset(order[:n]).deterministic())
        return train.subset(order[n:])

    def head_logits(self, model: nn.Module, inputs: Inputs) -> list[Tensor]:
        features = model.features(inputs)
        return [*(self.unimodal_heads[m](features[m]) for m in self.modalities()), model.head(features)]

    @torch.no_grad()
    def mean_losses(self, model: nn.Module, dataset: Split, device: torch.device) -> Tensor:
        sums = torch.zeros(len(self.heads), device=device)
        for inputs, labels in make_loader(dataset, self.config, train=False):
            inputs, labels = to_device(inputs, labels, device)
            sums += torch.stack([F.cross_entropy(z.float(), labels, reduction="sum") for z in self.head_logits(model, inputs)])
        return sums.cpu() / len(dataset)

    def on_epoch_start(self, epoch: int, model: nn.Module, context: TrainingContext) -> None:
        if epoch % self.options.every:
            return
        model.eval()
        losses = torch.stack([self.mean_losses(model, split, context.device) for split in self.measured])
        if not self.last_losses.isnan().any():
            weights = blend_weights(self.last_losses.cpu(), losses, self.options.eps)
            if weights is not None:
                self.weights.copy_(weights)
        self.last_losses.copy_(losses)

    def loss(self, model: nn.Module, inputs: Inputs, labels: Tensor, step: StepInfo) -> StepOutput:
        terms = torch.stack([F.cross_entropy(z, labels) for z in self.head_logits(model, inputs)])
        loss = (self.weights * terms).sum()
        logs = {"loss": loss.detach(), **{f"ce_{h}": t.detach() for h, t in zip(self.heads, terms)},
                **{f"w_{h}": w for h, w in zip(self.heads, self.weights)}}
        return StepOutput(loss, logs)
