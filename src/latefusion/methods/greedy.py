"""Greedy: balanced multi-modal learning (Wu, Jastrzebski, Cho & Geras, "Characterizing and
overcoming the greedy nature of learning in multi-modal deep neural networks", ICML 2022).

A multi-modal network learns greedily from the modality that is easiest to fit and under-uses the
others. The paper measures that as the conditional utilisation rate (the accuracy a modality adds
to the other), which is too costly to compute while training, and balances a proxy instead, the
conditional learning speed. The model is one branch per modality (its encoder and classifier head)
joined by a fusion layer through which each branch is recalibrated by all modalities (an MMTM:
squeeze and excitation across modalities); the prediction is the mean of the branches' logits.

    z        = relu(W_s [f_1, ..., f_M] + b_s)              (squeeze; f_m = encoder_m(x_m))
    gate_m   = sigmoid(W_m z + b_m)                        (excitation)
    logits_m = head_m(f_m * gate_m),    fused = mean_m logits_m,    L = CE(fused, y)

Per step, for each modality, the speed of its fusion ("bypass") parameters (the squeeze, shared,
and its excitation W_m, b_m) and of its own branch ("main": encoder_m and head_m) is the ratio
sum ||grad||^2 / sum ||theta||^2 over the group; both are summed over the steps so far, and

    BDR_m = log10(sum of bypass speeds of m / sum of main speeds of m)

is how much more branch m learns through the fusion (from the other modalities) than from its own
modality. When the BDRs differ by more than `epsilon` (two modalities: |BDR_0 - BDR_1|), the next
`window` steps are re-balancing steps: the branch with the largest BDR gets a constant gate (its
running mean over the training steps so far) instead of the cross-modal one, so that, cut off from
the others, it has to learn from its own modality. No speed is accumulated during re-balancing
steps; before `start_epoch` the speeds are accumulated and no step re-balances.

Where each detail comes from:
  * the greedy learner hypothesis, conditional utilisation rate and learning speed, alternating
    regular and re-balancing steps, the prediction as the mean of the branches': the paper;
  * the speed as the ratio of summed squared gradient to summed squared weight norms, summed over
    steps, log10 of bypass over main, the decision after each backward pass of a regular step, the
    shared squeeze counted in both modalities' bypass, the window of 5 re-balancing steps, epsilon
    0.01 and the start at epoch 2 (`configs/training_guided.gin`), the running-mean gate of the cared
    branch and the sigmoid gate of an MMTM with bottleneck ratio 4: the official code
    (nyukat/greedy_multimodal_learning `src/callbacks.py` `Bias_Mitigation_Strong` l. 174-267,
    `src/balanced_mmtm.py` `MMTM_mitigate` l. 16-154, `src/model.py` `MMTM_MVCNN` l. 16-108);
  * [design choice] one fusion layer on the encoders' output features, because our encoders are
    whole modules (the official model puts one after each of ResNet-18's stages 2, 3 and 4); the
    gate means are taken over training steps only and updated after each step's backward pass (the
    official code updates them in every forward pass, evaluation included, and, by a slip, feeds
    the second modality's running mean with the first modality's gates); more than two modalities:
    the largest BDR minus the smallest against `epsilon`, the largest one cared for (the official
    code has two); on a re-balancing step the cared branch's excitation gets a zero gradient (the
    choice is made on the device, without a host sync), where in the official code it gets none:
    the same step under the official SGD without momentum or weight decay, not under AdamW;
  * BalanceBenchmark (GeWu-Lab/BalanceBenchmark `balancemm/trainer/Greedy_trainer.py`) differs: no
    start epoch (it re-balances from the first step) and a threshold of 0.001 (`alpha`); same rule
    otherwise. We follow the official code's values.
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
from ..models.fusion import EncoderModel
from ..style import Style
from .base import Method, StepInfo, StepOutput
from .registry import METHODS


class GreedyOptions(Section):
    epsilon: float = Field(0.01, ge=0, description="re-balance when the BDRs differ by more than this")
    window: int = Field(5, gt=0, description="re-balancing steps each time it triggers")
    start_epoch: int = Field(2, ge=0, description="first epoch that may re-balance")
    ratio: int = Field(4, gt=0, description="bottleneck ratio of the fusion layer (squeeze width 2 * sum of widths / ratio)")


class CrossModalGates(nn.Module):
    """The MMTM fusion layer on feature vectors: one squeeze of all modalities, one excitation each."""

    def __init__(self, dims: dict[str, int], ratio: int) -> None:
        super().__init__()
        width = max(1, int(2 * sum(dims.values()) / ratio))
        self.squeeze = nn.Linear(sum(dims.values()), width)
        self.excite = nn.ModuleDict({m: nn.Linear(width, d) for m, d in dims.items()})

    def forward(self, features: dict[str, Tensor]) -> dict[str, Tensor]:
        z = F.relu(self.squeeze(torch.cat([features[m] for m in self.excite], 1)))
        return {m: torch.sigmoid(layer(z)) for m, layer in self.excite.items()}


class GreedyModel(EncoderModel):
    """One branch per modality (encoder + head), recalibrated through `gates`; predicts the branches' mean."""

    def __init__(self, encoders: dict[str, nn.Module], num_classes: int, ratio: int) -> None:
        super().__init__(encoders)
        dims = {m: e.out_dim for m, e in encoders.items()}
        self.gates = CrossModalGates(dims, ratio)
        self.heads = nn.ModuleDict({m: nn.Linear(d, num_classes) for m, d in dims.items()})

    def branch_logits(self, inputs: Inputs, constant: Tensor | None = None, use_constant: Tensor | None = None) -> tuple[dict[str, Tensor], dict[str, Tensor]]:
        """Each branch's logits and the gates computed for it. Where `use_constant[i]` (a bool per
        modality, on the device) is true, branch i is gated by `constant[i]` instead."""
        features = self.features(inputs)
        gates = self.gates(features)
        logits = {}
        for i, m in enumerate(self.modalities):
            gate = gates[m] if constant is None else torch.where(use_constant[i], constant[i].to(gates[m].dtype), gates[m])
            logits[m] = self.heads[m](features[m] * gate)
        return logits, gates

    def scores(self, inputs: Inputs) -> tuple[Tensor, dict[str, Tensor]]:
        logits = self.branch_logits(inputs)[0]
        return torch.stack(list(logits.values())).mean(0), logits


def speed(params: list[nn.Parameter]) -> Tensor:
    """sum ||grad||^2 / sum ||theta||^2 over `params`, in float64."""
    grad = sum(p.grad.double().pow(2).sum() for p in params if p.grad is not None)
    weight = sum(p.detach().double().pow(2).sum() for p in params)
    return grad / weight


@METHODS.register("greedy")
class Greedy(Method):
    name = "greedy"
    Options = GreedyOptions
    group = "baseline"
    style = Style("Greedy", "#332288", ">", (0, (1, 2)), "||")

    def __init__(self, config, spec) -> None:
        super().__init__(config, spec)
        self.require_modalities(2)
        n = len(self.modalities())
        # Saved in checkpoints: the summed (bypass, main) speeds per modality, the re-balancing state
        # and each gate's running mean, so a resumed run re-balances as the interrupted one would have.
        self.register_buffer("speed_sums", torch.zeros(n, 2, dtype=torch.float64))
        self.register_buffer("rebalancing", torch.zeros((), dtype=torch.bool))
        self.register_buffer("caring", torch.zeros((), dtype=torch.long))
        self.register_buffer("rebalance_step", torch.zeros((), dtype=torch.long))
        self.register_buffer("gate_means", torch.zeros(n, config.model.feature_dim))
        self.register_buffer("gate_steps", torch.zeros((), dtype=torch.long))

    def build_model(self) -> nn.Module:
        encoders = dict(super().build_model().encoders)
        dims = {m: e.out_dim for m, e in encoders.items()}
        if set(dims.values()) != {self.config.model.feature_dim}:
            raise ConfigError(f"greedy needs every encoder to output model.feature_dim={self.config.model.feature_dim} features; got {dims}")
        return GreedyModel(encoders, self.spec.num_classes, self.options.ratio)

    def ratios(self) -> tuple[Tensor, Tensor]:
        """(BDR per modality, largest minus smallest) from the summed speeds."""
        bdr = torch.log10(self.speed_sums[:, 0] / self.speed_sums[:, 1])
        return bdr, bdr.max() - bdr.min()

    def cared(self) -> Tensor:
        """Per modality, whether this step gates its branch by the running mean (a re-balancing step cares for it)."""
        return self.rebalancing & (torch.arange(len(self.modalities()), device=self.caring.device) == self.caring)

    def loss(self, model: nn.Module, inputs: Inputs, labels: Tensor, step: StepInfo) -> StepOutput:
        cared = self.cared()
        logits, gates = model.branch_logits(inputs, self.gate_means, cared)
        fused = torch.stack(list(logits.values())).mean(0)
        loss = F.cross_entropy(fused, labels)
        bdr, gap = self.ratios()
        # (No speed is measured before the first step: the gap is logged as 0 then.)
        logs = {"loss": loss.detach(), "rebalancing": self.rebalancing.float(), "bdr_gap": torch.nan_to_num(gap.float(), 0.0, 0.0, 0.0),
                **{f"caring_{m}": c.float() for m, c in zip(self.modalities(), cared)}}
        # Over the global batch, so that every process holds the same running means.
        gate_means = distributed.mean_tensor(torch.stack([gates[m].detach().float().mean(0) for m in self.modalities()]))
        return StepOutput(loss, logs, {"gate_means": gate_means, "epoch": step.epoch})

    def backward(self, model: nn.Module, output: StepOutput) -> None:
        output.loss.backward()
        self.gate_steps += 1
        self.gate_means += (output.saved["gate_means"] - self.gate_means) / self.gate_steps
        regular = ~self.rebalancing
        speeds = []
        for m in self.modalities():
            bypass = [*model.gates.squeeze.parameters(), *model.gates.excite[m].parameters()]
            main = [*model.encoders[m].parameters(), *model.heads[m].parameters()]
            speeds.append(torch.stack([speed(bypass), speed(main)]))
        self.speed_sums += torch.stack(speeds) * regular  # only regular steps are measured
        if output.saved["epoch"] < self.options.start_epoch:
            return
        bdr, gap = self.ratios()
        start = regular & (gap > self.options.epsilon)
        self.rebalance_step.copy_(torch.where(regular, 0, self.rebalance_step + 1))
        self.caring.copy_(torch.where(start, bdr.argmax(), self.caring))
        self.rebalancing.copy_(torch.where(regular, start, self.rebalance_step < self.options.window))
