"""Uni-Modal Ensemble (UME): the uni-modal models of every modality, trained alone, with their
predictions combined. Nothing is trained here: the members' weights are copied from their uni-modal
runs (which must share this run's model settings) and stored in this run's own checkpoint.

Combining rule [design choice; the paper's is not published]: the mean of the members' softmax
probabilities (`combine: prob`, default), or the mean of their logits (`combine: logit`).
"""

from __future__ import annotations

from typing import Literal

import torch
from torch import Tensor, nn

from ..config import Section, config_differences
from ..data import Inputs, Split
from ..errors import ConfigError
from ..models import build_late_fusion
from ..style import Style
from .base import Method, TrainingContext
from .registry import METHODS, load_model
from .teachers import unimodal_runs


class UMEOptions(Section):
    members: dict[str, str]  # modality -> uni-modal run folder
    combine: Literal["prob", "logit"] = "prob"


class UniModalEnsemble(nn.Module):
    """The uni-modal models side by side (the fused-model protocol, models/protocol.py, without a
    head of its own: each member has one)."""

    def __init__(self, members: dict[str, nn.Module], combine: str) -> None:
        super().__init__()
        self.members = nn.ModuleDict(members)
        self.modalities = list(members)
        self.combine = combine

    @property
    def encoders(self) -> dict[str, nn.Module]:
        return {m: member.encoders[m] for m, member in self.members.items()}

    def features(self, inputs: Inputs) -> dict[str, Tensor]:
        return {m: member.encoders[m](inputs[m]) for m, member in self.members.items()}

    def forward(self, inputs: Inputs) -> Tensor:
        return self.scores(inputs)[0]

    def scores(self, inputs: Inputs) -> tuple[Tensor, dict[str, Tensor]]:
        """The ensemble's scores and each member's own logits, every member run once."""
        by_member = {m: member(inputs) for m, member in self.members.items()}
        logits = torch.stack(list(by_member.values()))
        if self.combine == "logit":
            return logits.mean(0), by_member
        # Log of the mean probability: its argmax is the ensemble's prediction.
        return torch.logsumexp(logits.log_softmax(-1), dim=0) - torch.log(torch.tensor(float(len(logits)))), by_member


@METHODS.register("ume")
class UME(Method):
    name = "ume"
    Options = UMEOptions
    group = "paper"
    style = Style("UME", "#009E73", "D")
    unimodal_runs_option = "members"
    trains = False
    probed = False  # its encoders are the uni-modal runs', probed there

    def build_model(self) -> nn.Module:
        members = {m: build_late_fusion(self.spec, self.config.model, [m]) for m in self.spec.modality_names}
        return UniModalEnsemble(members, self.options.combine)

    def prepare(self, model: nn.Module, context: TrainingContext) -> Split:
        runs = unimodal_runs(self.options.members, self.spec, "method.options.members", context)
        for modality, run in runs.items():
            differences = config_differences(run.config().model.model_dump(mode="json"), self.config.model.model_dump(mode="json"))
            if differences:
                raise ConfigError(f"method.options.members.{modality}: {run.path} has other model settings than this run "
                                  f"({'; '.join(differences)}); UME stores its members with this run's model settings")
            model.members[modality].load_state_dict(load_model(run).state_dict())
        return context.bundle.splits["train"]
