"""G-Blending: Gradient-Blending (Wang, Tran & Feiszli, "What Makes Training Multi-Modal
Classification Networks Hard?", CVPR 2020).

Besides the fused head, each modality gets its own linear head on its encoder's features, and the
training loss blends all the heads' cross-entropies:

    L = w_fused * CE(fused head) + sum_m w_m * CE(head_m)

The weights come from the paper's online estimate, redone at the start of every super-epoch of
`every` epochs. Throw-away copies of the current weights are trained for a super-epoch, each on its
own loss alone: one per modality (that modality's encoder + its head, uni-modal cross-entropy) and
one of the fused model (all encoders + the fused head, fused cross-entropy), on train minus a
held-out slice. Each copy's losses on a sample of that training data (T) and on the held-out slice
(V), before (N) and after (N+n) its super-epoch, give

    G = V_N - V_{N+n}                                  (generalisation gained)
    O = (V_{N+n} - T_{N+n}) - (V_N - T_N)              (overfitting gained)
    w proportional to max(G, 0) / (O^2 + eps),  normalised to sum to 1

and the copies are then thrown away. A head that generalises more per unit of overfitting gets a
larger share of the gradient. Because each copy is trained on its own loss, whatever the blend
weights are, a modality whose weight fell to 0 is still measured as if trained alone, and earns its
weight back as soon as it starts to generalise. Predictions come from the fused head alone.

Cost [measured figures: docs/methods.md]: each estimate trains M uni-modal copies and one fused copy
for `estimate_epochs` epochs. The uni-modal copies together cost about one fused epoch per epoch,
the fused copy one more, so training takes about 1 + 2 * estimate_epochs / every times as long as
the blended training alone (3x with the defaults, as in the paper); `estimate_epochs: 1` with
`every: 5` brings that to about 1.4x, at the price of a shorter look ahead. Peak memory: one copy
and its optimiser besides the model; copies are built one at a time.

Where each detail comes from:
  * the blended loss, the held-out slice of train, G / O^2 with G and O as differences over the
    super-epoch, the normalisation, training throw-away uni-modal and fused models from the current
    weights for a super-epoch to measure them, re-estimating every super-epoch ("online"
    G-Blend, including before the first), predicting with the fused head: the paper;
  * copies with a fresh optimiser of the run's kind, trained on train minus the held-out slice:
    MultiBench (`training_structures/gradient_blend.py`, `gb_estimate`), which also defaults to 8 %
    held out and 20-epoch super-epochs. MultiBench's default weight is |V_{N+n} / O_{N+n}^2| (no
    differences, its `delta=False`); we follow the paper's differences;
  * [design choice] `holdout` 0.1 and `every` 5 epochs, for short runs; the copies follow the run's
    learning-rate schedule from the current epoch; T is measured on as many train samples as are
    held out (not the whole training data, to keep the estimate cheap); negative G counts as 0;
    `eps` keeps a head whose gap did not move from taking all the weight; if no copy generalised,
    the weights are kept; the copies draw their randomness from (seed, epoch), apart from the run's
    random stream; on several processes each trains its copies on its share of each batch with the
    gradients averaged over the processes, so the copies, and the weights, stay identical.
"""

from __future__ import annotations

import copy
import warnings
from typing import Callable, Iterator

import torch
import torch.nn.functional as F
from pydantic import Field
from torch import Tensor, nn

from .. import distributed
from ..config import Section
from ..data import Inputs, Split
from ..engine import autocast, build_optimizer, build_scheduler, make_loader, to_device
from ..style import Style
from .base import Method, StepInfo, StepOutput, TrainingContext, unimodal_heads
from .registry import METHODS

FUSED = "fused"


class GBlendOptions(Section):
    holdout: float = Field(0.1, gt=0, lt=0.5, description="fraction of train held out to measure overfitting")
    every: int = Field(5, gt=0, description="super-epoch length: epochs between weight estimates")
    estimate_epochs: int | None = Field(None, gt=0, description="epochs the throw-away copies train per estimate (default: `every`, the paper's)")
    eps: float = Field(1e-4, gt=0, description="added to O^2")


def blend_weights(start: Tensor, end: Tensor, eps: float) -> Tensor | None:
    """Per-head weights from the (train, held-out) losses of each head's copy at the start and end of
    its super-epoch (each of shape (2, heads)); None when no copy generalised."""
    generalisation, overfitting = gain_and_overfitting(start, end)
    raw = generalisation.clamp_min(0) / (overfitting**2 + eps)
    total = raw.sum()
    return raw / total if total > 0 else None


def gain_and_overfitting(start: Tensor, end: Tensor) -> tuple[Tensor, Tensor]:
    return start[1] - end[1], (end[1] - end[0]) - (start[1] - start[0])


class Copy(nn.Module):
    """A throw-away model for one head: its modules and the logits it trains on."""

    def __init__(self, modules: dict[str, nn.Module], logits: Callable[[nn.ModuleDict, Inputs], Tensor]) -> None:
        super().__init__()
        self.parts = nn.ModuleDict(modules)
        self.logits = logits

    def forward(self, inputs: Inputs) -> Tensor:
        return self.logits(self.parts, inputs)


@METHODS.register("gblend")
class GradientBlending(Method):
    name = "gblend"
    Options = GBlendOptions
    group = "baseline"
    style = Style("G-Blending", "#E69F00", "v", "--", "xx")

    def __init__(self, config, spec) -> None:
        super().__init__(config, spec)
        self.require_modalities(2)
        self.heads = [*self.modalities(), FUSED]
        self.unimodal_heads = unimodal_heads(spec, config, self.modalities())
        # Saved in checkpoints, so a resumed run blends as the interrupted one did.
        self.register_buffer("weights", torch.full((len(self.heads),), 1 / len(self.heads)))
        # The last estimate's G and O per head (logged with the weights).
        self.register_buffer("gain", torch.zeros(len(self.heads)))
        self.register_buffer("overfitting", torch.zeros(len(self.heads)))
        self.training_part: Split | None = None  # train minus the held-out slice, set by `prepare`
        self.measured: tuple[Split, Split] | None = None  # (a train sample, the held-out slice), set by `prepare`
        self.n_train: int | None = None  # the whole train split's size (what data.batch_size=auto is chosen from), set by `prepare`

    def prepare(self, model: nn.Module, context: TrainingContext) -> Split:
        # The slice is a function of the seed alone, so a resumed run holds out the same samples.
        train = context.bundle.splits["train"]
        order = torch.randperm(len(train), generator=torch.Generator().manual_seed(self.config.train.seed)).tolist()
        n = max(1, round(self.options.holdout * len(train)))
        self.measured = (train.subset(order[n : 2 * n]).deterministic(), train.subset(order[:n]).deterministic())
        self.training_part = train.subset(order[n:])
        self.n_train = len(train)
        return self.training_part

    def head_logits(self, model: nn.Module, inputs: Inputs) -> list[Tensor]:
        features = model.features(inputs)
        return [*(self.unimodal_heads[m](features[m]) for m in self.modalities()), model.head(features)]

    def copies(self, model: nn.Module) -> Iterator[Copy]:
        """Throw-away copies of the current weights, one per head, in the order of `self.heads`; made
        one at a time, so only one exists at once."""
        for m in self.modalities():
            yield Copy({"encoder": copy.deepcopy(model.encoders[m]), "head": copy.deepcopy(self.unimodal_heads[m])},
                       lambda parts, inputs, m=m: parts["head"](parts["encoder"](inputs[m])))
        yield Copy({"model": copy.deepcopy(model)}, lambda parts, inputs: parts["model"](inputs))

    @torch.no_grad()
    def mean_loss(self, net: nn.Module, dataset: Split, device: torch.device) -> Tensor:
        net.eval()
        total = torch.zeros((), device=device)
        for inputs, labels in make_loader(dataset, self.config, train=False):
            inputs, labels = to_device(inputs, labels, device)
            with autocast(device, self.config.train.precision):
                logits = net(inputs)
            total += F.cross_entropy(logits.float(), labels, reduction="sum")
        return total / len(dataset)

    def losses(self, net: nn.Module, device: torch.device) -> Tensor:
        """(train-sample loss, held-out loss) of one copy."""
        return torch.stack([self.mean_loss(net, split, device) for split in self.measured])

    def train_copy(self, net: nn.Module, epoch: int, device: torch.device) -> None:
        """The copy's super-epoch: its own loss only, a fresh optimiser of the run's kind, the run's
        learning-rate schedule from `epoch` on."""
        config = self.config
        params = [p for p in net.parameters() if p.requires_grad]
        optimizer = build_optimizer(params, config)
        scheduler = build_scheduler(optimizer, config)
        with warnings.catch_warnings():  # stepping the schedule to `epoch` before any optimiser step
            warnings.simplefilter("ignore", UserWarning)
            for _ in range(epoch):
                scheduler.step()
        for e in range(self.options.estimate_epochs or self.options.every):
            net.train()
            for inputs, labels in make_loader(self.training_part, config, train=True, epoch=epoch + e, n_train=self.n_train):
                inputs, labels = to_device(inputs, labels, device)
                with autocast(device, config.train.precision):
                    loss = F.cross_entropy(net(inputs), labels)
                optimizer.zero_grad(set_to_none=True)
                loss.backward()
                for p in params:  # the copies bypass DDP: average their gradients over the processes
                    if p.grad is not None:
                        p.grad = distributed.mean_tensor(p.grad)
                if config.optim.grad_clip:
                    torch.nn.utils.clip_grad_norm_(params, config.optim.grad_clip)
                optimizer.step()
            scheduler.step()

    def estimate(self, model: nn.Module, epoch: int, device: torch.device) -> tuple[Tensor, Tensor]:
        """(start, end) losses, each (2, heads): every head's copy before and after its super-epoch."""
        devices = [device] if device.type == "cuda" else []
        with torch.random.fork_rng(devices=devices):
            torch.manual_seed(self.config.train.seed * 1_000_003 + epoch)
            start, end = [], []
            for net in self.copies(model):
                start.append(self.losses(net, device))
                self.train_copy(net, epoch, device)
                end.append(self.losses(net, device))
                del net  # before the next copy is made
        return torch.stack(start, 1).cpu(), torch.stack(end, 1).cpu()

    def on_epoch_start(self, epoch: int, model: nn.Module, context: TrainingContext) -> None:
        if epoch % self.options.every:
            return
        start, end = self.estimate(model, epoch, context.device)
        gain, overfitting = gain_and_overfitting(start, end)
        self.gain.copy_(gain)
        self.overfitting.copy_(overfitting)
        weights = blend_weights(start, end, self.options.eps)
        if weights is not None:
            self.weights.copy_(weights)

    def loss(self, model: nn.Module, inputs: Inputs, labels: Tensor, step: StepInfo) -> StepOutput:
        terms = torch.stack([F.cross_entropy(z, labels) for z in self.head_logits(model, inputs)])
        loss = (self.weights * terms).sum()
        logs = {"loss": loss.detach(), **{f"ce_{h}": t.detach() for h, t in zip(self.heads, terms)},
                **{f"w_{h}": w for h, w in zip(self.heads, self.weights)},
                **{f"gain_{h}": g for h, g in zip(self.heads, self.gain)},
                **{f"overfit_{h}": o for h, o in zip(self.heads, self.overfitting)}}
        return StepOutput(loss, logs)
