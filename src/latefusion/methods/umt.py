"""Uni-Modal Teacher (UMT): late fusion trained with the fused cross-entropy plus, for each
modality, a distillation loss pulling its encoder's features toward those of a frozen encoder
trained on that modality alone:

    L = CE(fused logits, y) + weight * sum_m MSE(g_m(f_m(x_m)), t_m(x_m))

`t_m` is the teacher encoder (frozen, eval mode, no gradients). `g_m` is [design choice]:
  * `distill: plain`     g_m = identity, the form every third-party UMT uses: the student must copy
                         the teacher's features exactly, leaving no room for paired features;
  * `distill: projected` g_m = a learned linear map, so the student must keep all the teacher's
                         information (linearly recoverable) but may hold more, such as the features
                         only cross-modal training finds.
`init: teacher` (default) starts each student encoder from its teacher's weights; `init: scratch`
from a fresh initialisation [design choice; the paper does not say]. Starting from the teacher, the
student keeps the teacher's uni-modal features from the first step instead of chasing them; on the
synthetic presets it closes the probe gap to the uni-modal encoders that scratch leaves (docs/methods.md).
"""

from __future__ import annotations

from typing import Literal

import torch
import torch.nn.functional as F
from pydantic import Field
from torch import Tensor, nn

from ..config import ConfigError, Section
from ..data import Inputs
from . import METHODS
from .base import Method
from .teachers import load_unimodal_runs


class UMTOptions(Section):
    teachers: dict[str, str]  # modality -> uni-modal run folder
    weight: float = Field(1.0, ge=0)
    distill: Literal["projected", "plain"] = "projected"
    # Start each student encoder from its teacher's weights, or from a fresh initialisation.
    init: Literal["teacher", "scratch"] = "teacher"


@METHODS.register("umt")
class UMT(Method):
    name = "umt"
    Options = UMTOptions

    def __init__(self, config, spec) -> None:
        super().__init__(config, spec)
        teachers = load_unimodal_runs(self.options.teachers, spec, "method.options.teachers")
        self.teachers = nn.ModuleDict({m: teachers[m].encoders[m] for m in spec.modality_names})
        self.teachers.requires_grad_(False)
        self.teachers.eval()
        student_dim = config.model.feature_dim
        if self.options.distill == "plain":
            wrong = {m: t.out_dim for m, t in self.teachers.items() if t.out_dim != student_dim}
            if wrong:
                raise ConfigError(f"method.options.distill=plain needs teacher features of the student's size {student_dim}; teachers have {wrong}. Use distill=projected.")
            self.projectors = nn.ModuleDict({m: nn.Identity() for m in self.teachers})
        else:
            self.projectors = nn.ModuleDict({m: nn.Linear(student_dim, t.out_dim) for m, t in self.teachers.items()})

    def build_model(self) -> nn.Module:
        model = super().build_model()
        if self.options.init == "teacher":
            for m, teacher in self.teachers.items():
                model.encoders[m].load_state_dict(teacher.state_dict())
        return model

    def train(self, mode: bool = True) -> "UMT":
        super().train(mode)
        self.teachers.eval()  # teachers stay frozen, batch-norm statistics included
        return self

    def training_loss(self, model: nn.Module, inputs: Inputs, labels: Tensor) -> tuple[Tensor, dict[str, float]]:
        features = model.features(inputs)
        fused = F.cross_entropy(model.head(features), labels)
        logs = {"ce": fused.item()}
        distill = fused.new_zeros(())
        for m, teacher in self.teachers.items():
            with torch.no_grad():
                target = teacher(inputs[m])
            term = F.mse_loss(self.projectors[m](features[m]).float(), target.float())
            logs[f"distill_{m}"] = term.item()
            distill = distill + term
        loss = fused + self.options.weight * distill
        logs["loss"] = loss.item()
        return loss, logs
