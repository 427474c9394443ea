"""Diagnosing and Re-learning (Wei, Li, Feng & Hu, "Diagnosing and Re-learning for Balanced Multimodal
Learning", ECCV 2024).

Naive late fusion, interrupted every few epochs by a diagnosis of each modality's learning state and
a soft re-initialisation of its encoder toward the weights it started from. The diagnosis reads how
well each encoder's features separate the classes, without any classifier: k-means with as many
clusters as classes, scored by purity, on the training split and on the validation split. A modality
whose training purity runs well ahead of its validation purity has learnt its training samples more
than it generalises (a well-learnt or over-trained modality), so it is pulled back further; one
whose features separate train and validation alike keeps more of what it learnt:

    z_i^m   = encoder_m(x_i^m), scaled feature-wise to [-1, 1] (min-max over the split)
    P^m_S   = purity of k-means(z^m over split S, K = number of classes)
            = (1/|S|) sum over clusters c of the count of c's most frequent label
    g^m     = |P^m_train - P^m_val|                          (the learning-state gap)
    alpha^m = tanh(lambda * g^m)                             (the re-initialisation strength)
    theta^m <- alpha^m * theta^m_init + (1 - alpha^m) * theta^m      (every parameter of encoder m)

theta^m_init is encoder m as training started. The fused head, the encoders' buffers (batch-norm
statistics) and the optimiser's state are left as they are. Between diagnoses, and for the
predictions, the method is naive late fusion.

Where each detail comes from:
  * the separability of each uni-modal representation as its learning state, k-means purity on the
    training and the validation set, the gap between them, alpha = tanh(lambda * gap), the soft
    re-initialisation of each uni-modal encoder toward its initial parameters, naive late fusion
    otherwise: the paper (its equations for g^k, alpha^k and theta^k);
  * the diagnosis after the training of every `every`-th epoch (0-based epochs every, 2 every, ...,
    never after epoch 0), at most `times` times, with every = 20, times = 3 and lambda = 3; the
    feature-wise min-max scaling to [-1, 1] before k-means; k-means with K = the number of classes;
    purity as the share of samples carrying their cluster's majority label; only the encoders'
    parameters re-initialised (not the head, not buffers, not the optimiser's momentum): the
    official code (GeWu-Lab/Diagnosing_Relearning_ECCV2024, `code/ours.py`: `reinit_score` lines
    99-135, `reinit` lines 139-169, the schedule lines 418-427; `code/script/ours.sh`: --move_lambda 3
    --reinit_epoch 20 --reinit_num 3). The official code runs the diagnosis after the epoch's
    evaluation, as here, where it runs before the next epoch (`on_epoch_start`);
  * how BalanceBenchmark (GeWu-Lab/BalanceBenchmark, `balancemm/trainer/ReLearning_trainer.py`)
    differs: the same purity, gap, tanh and mixing, but its configuration re-initialises every 15
    epochs at most twice (`configs/trainer_config.yaml`, ReLearning), and it diagnoses before the
    epoch's validation, so that validation sees the re-initialised model. We follow the official
    code's schedule and order;
  * the features of both splits through the evaluation transform (the split's deterministic view)
    [design choice]: the official code reads the training features through its training loader,
    augmentation included, so its training purity is of augmented samples; ours is of the samples
    themselves, like the validation purity it is compared with;
  * k-means [ours, in torch: scikit-learn is not a dependency]: k-means++ seeding (one candidate per
    centre, not scikit-learn's greedy several), then Lloyd's iterations until the centres move less
    than 1e-4 times the features' mean variance (scikit-learn's `tol`) or 300 iterations; an empty
    cluster keeps its centre; `restarts` (default 1, scikit-learn's `n_init="auto"` for k-means++
    since version 1.4) seedings, the lowest inertia kept. The seeding draws from its own generator,
    a function of (seed, epoch, modality, split), so the diagnosis neither consumes nor depends on
    the run's random stream, and a resumed run diagnoses the same way;
  * more than two modalities: every modality is diagnosed and re-initialised on its own, as in the
    paper (BalanceBenchmark does the same); the official code handles audio and visual.
"""

from __future__ import annotations

import math

import torch
from pydantic import Field
from torch import Tensor, nn

from ..config import Section
from ..engine import encode
from ..style import Style
from .base import Method, TrainingContext
from .registry import METHODS


class RelearnOptions(Section):
    strength: float = Field(3.0, ge=0, description="lambda in alpha = tanh(lambda * |purity gap|)")
    every: int = Field(20, gt=0, description="diagnose after the training of every this-many-th epoch (0-based epochs every, 2 every, ...)")
    times: int = Field(3, ge=0, description="at most this many diagnoses and re-initialisations")
    restarts: int = Field(1, gt=0, description="k-means seedings per clustering; the lowest inertia is kept")


def min_max_scale(features: Tensor) -> Tensor:
    """Each feature mapped to [-1, 1] by its min and max over the samples; a constant feature maps to -1."""
    low, high = features.min(0).values, features.max(0).values
    span = torch.where(high > low, high - low, torch.ones_like(high))
    return 2 * (features - low) / span - 1


def kmeans(points: Tensor, k: int, generator: torch.Generator, restarts: int = 1, iterations: int = 300, tol: float = 1e-4) -> Tensor:
    """Cluster index of every point: k-means++ seeding and Lloyd's iterations, the best of `restarts`."""
    points = points.double()
    threshold = tol * points.var(0, unbiased=False).mean()
    best, best_inertia = None, math.inf
    for _ in range(restarts):
        centres = points[torch.randint(len(points), (1,), generator=generator)]
        for _ in range(1, k):
            nearest = torch.cdist(points, centres).min(1).values.pow(2)
            weights = nearest if nearest.sum() > 0 else torch.ones_like(nearest)
            centres = torch.cat([centres, points[torch.multinomial(weights, 1, generator=generator)]])
        for _ in range(iterations):
            assigned = torch.cdist(points, centres).argmin(1)
            sums = torch.zeros_like(centres).index_add_(0, assigned, points)
            counts = torch.bincount(assigned, minlength=k)
            moved = torch.where(counts[:, None] > 0, sums / counts.clamp_min(1)[:, None], centres)
            shift = (moved - centres).pow(2).sum()
            centres = moved
            if shift <= threshold:
                break
        distances = torch.cdist(points, centres)
        inertia = distances.min(1).values.pow(2).sum().item()
        if inertia < best_inertia:
            best, best_inertia = distances.argmin(1), inertia
    return best


def purity(clusters: Tensor, labels: Tensor) -> float:
    """The share of samples whose label is their cluster's most frequent label."""
    counts = torch.zeros(int(clusters.max()) + 1, int(labels.max()) + 1, dtype=torch.long)
    counts.index_put_((clusters, labels), torch.ones_like(labels), accumulate=True)
    return counts.max(1).values.sum().item() / len(labels)


def reinit_strength(train_purity: float, val_purity: float, strength: float) -> float:
    """alpha = tanh(lambda * |P_train - P_val|)."""
    return math.tanh(strength * abs(train_purity - val_purity))


@METHODS.register("relearn")
class Relearn(Method):
    name = "relearn"
    group = "baseline"
    Options = RelearnOptions
    style = Style("Re-learning", "#44AA99", "p", (0, (5, 2, 1, 2)), "--")

    def __init__(self, config, spec) -> None:
        super().__init__(config, spec)
        self.require_modalities(2)
        # theta_init: a copy of each encoder as training starts (filled by `prepare`), saved in
        # checkpoints, so a resumed run pulls back toward the same weights (a resumed model is not
        # given its pretrained weights again). Built apart from the run's random stream, never trained.
        with torch.random.fork_rng(devices=[]):
            self.initial = nn.ModuleDict(super().build_model().encoders).requires_grad_(False)
        # The last diagnosis, logged: per modality, train and validation purity and alpha.
        self.register_buffer("purities", torch.zeros(2, len(self.modalities())))
        self.register_buffer("alphas", torch.zeros(len(self.modalities())))

    def prepare(self, model: nn.Module, context: TrainingContext):
        self.initial.load_state_dict(model.encoders.state_dict())
        return context.bundle.splits["train"]

    def diagnoses_before(self, epoch: int) -> bool:
        """Whether the diagnosis runs before `epoch`: after the training of epoch e = epoch - 1 when
        e is a positive multiple of `every`, and at most `times` times."""
        done = epoch - 1
        return done > 0 and done % self.options.every == 0 and done // self.options.every <= self.options.times

    @torch.no_grad()
    def diagnose(self, model: nn.Module, epoch: int, context: TrainingContext) -> None:
        """Each modality's train and validation purity and its re-initialisation strength."""
        splits = [context.bundle.splits[s].deterministic() for s in ("train", "val")]
        for i, m in enumerate(self.modalities()):
            for j, split in enumerate(splits):
                features, labels = encode(model.encoders[m], m, split, self.config, context.device)
                generator = torch.Generator().manual_seed(self.config.train.seed * 1_000_003 + epoch * 1_009 + i * 2 + j)
                clusters = kmeans(min_max_scale(features), self.spec.num_classes, generator, self.options.restarts)
                self.purities[j, i] = purity(clusters, labels)
            self.alphas[i] = reinit_strength(self.purities[0, i].item(), self.purities[1, i].item(), self.options.strength)

    @torch.no_grad()
    def reinitialise(self, model: nn.Module) -> None:
        """theta <- alpha theta_init + (1 - alpha) theta, for every parameter of every encoder."""
        for alpha, m in zip(self.alphas.tolist(), self.modalities()):
            for current, initial in zip(model.encoders[m].parameters(), self.initial[m].parameters()):
                current.mul_(1 - alpha).add_(initial, alpha=alpha)

    def on_epoch_start(self, epoch: int, model: nn.Module, context: TrainingContext) -> None:
        if self.diagnoses_before(epoch):
            self.diagnose(model, epoch, context)
            self.reinitialise(model)

    def loss(self, model, inputs, labels, step):
        output = super().loss(model, inputs, labels, step)
        for i, m in enumerate(self.modalities()):
            output.logs |= {f"purity_train_{m}": self.purities[0, i], f"purity_val_{m}": self.purities[1, i], f"alpha_{m}": self.alphas[i]}
        return output
