"""Uni-Modal Ensemble (UME): the uni-modal models of every modality, trained alone, with their
predictions combined. Nothing is trained here: the members are reused from their uni-modal runs.

Combining rule [design choice; the paper's is not published]: the mean of the members' softmax
probabilities (`combine: prob`, default), or the mean of their logits (`combine: logit`).
"""

from __future__ import annotations

from typing import Literal

import torch
from torch import Tensor, nn

from ..config import Section
from ..data import Inputs
from . import METHODS
from .base import Method
from .teachers import load_unimodal_runs


class UMEOptions(Section):
    members: dict[str, str]  # modality -> uni-modal run folder
    combine: Literal["prob", "logit"] = "prob"


class UniModalEnsemble(nn.Module):
    def __init__(self, members: dict[str, nn.Module], combine: str) -> None:
        super().__init__()
        self.members = nn.ModuleDict(members)
        self.combine = combine

    @property
    def encoders(self) -> dict[str, nn.Module]:
        return {m: member.encoders[m] for m, member in self.members.items()}

    def forward(self, inputs: Inputs) -> Tensor:
        logits = torch.stack([member(inputs) for member in self.members.values()])
        if self.combine == "logit":
            return logits.mean(0)
        # Log of the mean probability: its argmax is the ensemble's prediction.
        return torch.logsumexp(logits.log_softmax(-1), dim=0) - torch.log(torch.tensor(float(len(logits))))


@METHODS.register("ume")
class UME(Method):
    name = "ume"
    Options = UMEOptions
    trains = False

    def build_model(self) -> nn.Module:
        members = load_unimodal_runs(self.options.members, self.spec, "method.options.members")
        return UniModalEnsemble({m: members[m] for m in self.spec.modality_names}, self.options.combine)
