"""Data Remixing (Ma, Chen & Deng, "Improving Multimodal Learning Balance and Sufficiency through Data
Remixing", ICML 2025).

Late fusion with a linear head per modality beside the fused head. After a warm-up of joint training,
every epoch starts by decoupling the training data: each sample is assigned to the one modality
that is least sure of it, judged by how far that modality's own head's prediction is from uniform.
The epoch then trains on re-assembled batches: the samples assigned to a modality are batched
together, and in them every other modality's features are zeroed, so that no optimiser step mixes
the modalities' gradients (the paper's "modality clash") and each modality trains on the samples it
has not yet learnt (its "laziness"):

    warm-up (epoch < warmup):   L = CE(head(z), y) + alpha * sum_m CE(h_m(z^m), y)
    then, before each epoch, for every training sample i (evaluation mode):
        p_i^m = softmax(h_m(z_i^m)),   KL_i^m = sum_c p_ic^m log2(p_ic^m / (1/C))   (p clipped at 1e-9)
        a_i   = argmin_m KL_i^m                   (the modality least confident on sample i)
    and the epoch's batches hold the samples of one modality at a time; for a sample assigned to m:
        L_i = CE(head(z_i with z^n zeroed for every n != m), y_i) + gamma * CE(h_m(z_i^m), y_i)
    L = the batch mean of L_i

z^m = encoder_m(x^m); h_m is modality m's own linear head. Predictions are the fused head's on every
modality, as in naive late fusion; the per-modality heads serve the warm-up loss and the assignment.

Where each detail comes from:
  * decoupling the samples among the modalities by a per-sample measure of each modality's
    learning, re-assembling uni-modal batches so that one step trains one modality, a per-modality
    head beside the fused one, the fused head's predictions at test time: the paper (abstract and
    method; its PDF's equations could not be consulted here, so the formulas are the official
    code's);
  * the warm-up loss with alpha = 0.5 for every modality and warmup = 10 epochs, the assignment
    before every later epoch from the whole training split without augmentation in evaluation mode,
    the KL divergence from the uniform distribution in bits with probabilities clipped at 1e-9, the
    sample going to the modality with the smaller divergence, the other modality's features zeroed
    after its encoder, the loss CE(fused) + gamma * CE(own head) with gamma = 1, one modality's
    batches after the other's, each shuffled: the official code (MatthewMaxy/Remix_ICML2025,
    `train.py`: `kl_divergence` lines 52-57, `remix` lines 60-99, `train_epoch` lines 101-125,
    `special_train_epoch` lines 127-173, the schedule lines 240-250; `models/models.py` lines 55-59;
    `datasets/dataloader.py`: its "val" mode, which `remix` reads, is the training list without
    augmentation). BalanceBenchmark has no Remix trainer;
  * one epoch = one pass over every training sample with the loop's batch size, the samples of each
    modality together in the dataset's modality order [design choice]: the official code's epoch
    is the same pass, but it starts a fresh loader per modality, so each modality's last batch is
    short; here the epoch's order is cut into batches of the run's batch size, so at most one batch
    per boundary between two modalities holds samples of both. Its loss is still each sample's
    own L_i above, so it is the official loss on both parts, in one step instead of two. The official
    code runs the video batches before the audio ones; here the order is the data set's;
  * a tie of the divergences goes to the first modality (the official code gives it to video, the
    second); more than two modalities: the argmin over all of them [design choice] (the official
    code handles audio and visual);
  * the masked modality's encoder is still run (as in the official code, whose zeroing happens after
    the encoder, so its batch-norm statistics see the batch), and gets no gradient from the sample.

The assignment is the method's state, saved in checkpoints (it is the output of the model at the
epoch's start, which a run resumed inside the epoch no longer has). It lives on the CPU, beside
the data: the training split reads it to arrange each epoch (`Split.training_order`) and hands
each sample's assigned modality to the loss with the sample, under ASSIGNED in its inputs.
"""

from __future__ import annotations

from typing import Any

import torch
import torch.nn.functional as F
from pydantic import Field
from torch import Tensor, nn

from ..config import Section
from ..data import Inputs, Split
from ..engine import encode
from ..style import Style
from .base import Method, StepInfo, StepOutput, TrainingContext, unimodal_heads
from .registry import METHODS

ASSIGNED = "remix:assigned"  # the input key of each sample's assigned modality (an index; -1: none yet)
FLOOR = 1e-9  # the official code's clip of the probabilities in the divergence from uniform


class RemixOptions(Section):
    warmup: int = Field(10, ge=0, description="epochs of joint training (fused + every uni-modal loss) before the first assignment")
    alpha: float = Field(0.5, ge=0, description="weight of each modality's own cross-entropy during warm-up")
    gamma: float = Field(1.0, ge=0, description="weight of the assigned modality's own cross-entropy after warm-up")


def divergence_from_uniform(logits: Tensor) -> Tensor:
    """KL(softmax(logits) || uniform) in bits, per row, with the probabilities clipped at 1e-9."""
    p = logits.float().softmax(-1).clamp(FLOOR, 1)
    return (p * torch.log2(p * logits.shape[-1])).sum(-1)


class RemixSplit(Split):
    """The training split as Remix sees it: each sample with its assigned modality (under ASSIGNED),
    and epochs that visit the samples modality by modality (each modality's samples shuffled), so
    that consecutive batches hold one modality's samples. Before the first assignment (all -1),
    epochs are the usual random permutation."""

    def __init__(self, parent: Split, assignment: Tensor) -> None:
        self.parent, self.assignment = parent, assignment  # the method's tensor, updated in place
        self.augments, self.checked_when_prepared = parent.augments, parent.checked_when_prepared

    def __len__(self) -> int:
        return len(self.parent)

    def __getitems__(self, indices: list[int]):
        inputs, labels = self.parent.__getitems__(indices)
        return {**inputs, ASSIGNED: self.assignment[torch.as_tensor(indices, dtype=torch.long)]}, labels

    def training_order(self, generator: torch.Generator) -> list[int]:
        if (self.assignment < 0).all():
            return super().training_order(generator)
        groups = [torch.nonzero(self.assignment == m).flatten() for m in range(int(self.assignment.max()) + 1)]
        return torch.cat([g[torch.randperm(len(g), generator=generator)] for g in groups]).tolist()

    def sample_ids(self) -> list[str] | None:
        return self.parent.sample_ids()

    def content_hash(self) -> str:
        return self.parent.content_hash()

    def deterministic(self) -> Split:
        return self.parent.deterministic()


@METHODS.register("remix")
class Remix(Method):
    name = "remix"
    group = "baseline"
    Options = RemixOptions
    style = Style("Data Remixing", "#DDCC77", "d", (0, (1, 2)), "||")

    def __init__(self, config, spec) -> None:
        super().__init__(config, spec)
        self.require_modalities(2)
        self.unimodal_heads = unimodal_heads(spec, config, self.modalities())
        self.assignment = torch.full((0,), -1, dtype=torch.long)  # per training sample; sized by `prepare`
        self.train_split: Split | None = None

    def prepare(self, model: nn.Module, context: TrainingContext) -> Split:
        self.train_split = context.bundle.splits["train"]
        self.assignment = torch.full((len(self.train_split),), -1, dtype=torch.long)
        return RemixSplit(self.train_split, self.assignment)

    # The assignment is saved with the method's state (`method` in last.pt), outside its buffers so
    # that it stays on the CPU with the data when the method moves to the GPU.
    def get_extra_state(self) -> dict[str, Any]:
        return {"assignment": self.assignment}

    def set_extra_state(self, state: dict[str, Any]) -> None:
        self.assignment.copy_(state["assignment"])

    @torch.no_grad()
    def assign(self, model: nn.Module, context: TrainingContext) -> None:
        """a_i = argmin_m KL(softmax(h_m(z_i^m)) || uniform) over the training split, in evaluation mode."""
        divergences = []
        for m in self.modalities():
            features, _ = encode(model.encoders[m], m, self.train_split.deterministic(), self.config, context.device)
            head = self.unimodal_heads[m]
            divergences.append(divergence_from_uniform(head(features.to(head.weight.device))).cpu())
        self.assignment.copy_(torch.stack(divergences).argmin(0))

    def on_epoch_start(self, epoch: int, model: nn.Module, context: TrainingContext) -> None:
        if epoch >= self.options.warmup:
            self.assign(model, context)

    def loss(self, model: nn.Module, inputs: Inputs, labels: Tensor, step: StepInfo) -> StepOutput:
        inputs = dict(inputs)
        assigned = inputs.pop(ASSIGNED)
        features = model.features(inputs)
        own = torch.stack([F.cross_entropy(self.unimodal_heads[m](features[m]), labels, reduction="none") for m in self.modalities()])
        masks = {m: (assigned == i)[:, None] for i, m in enumerate(self.modalities())}  # all False during warm-up
        if step.epoch < self.options.warmup:
            fused = F.cross_entropy(model.head(features), labels)
            loss = fused + self.options.alpha * own.mean(1).sum()
        else:
            fused = F.cross_entropy(model.head({m: z * masks[m] for m, z in features.items()}), labels)
            loss = fused + self.options.gamma * own.gather(0, assigned[None]).mean()
        logs = {"loss": loss.detach(), "ce_fused": fused.detach(),
                **{f"ce_{m}": ce.detach().mean() for m, ce in zip(self.modalities(), own)},
                **{f"assigned_{m}": mask.float().mean() for m, mask in masks.items()}}  # the share of the batch
        return StepOutput(loss, logs)
