"""What every training method shares. A method decides which model to build, the training loss,
and how to predict; the one loop in `train.py` does the rest.

A method is an `nn.Module` so that anything it learns besides the model (a projection, blend
weights) is optimised with the model and saved in the same checkpoint.
"""

from __future__ import annotations

from typing import ClassVar

import torch.nn.functional as F
from torch import Tensor, nn
from torch.utils.data import Dataset

from ..config import ConfigError, RunConfig, Section, validate
from ..data import DataSpec, Inputs
from ..models import build_late_fusion


class NoOptions(Section):
    pass


class Method(nn.Module):
    name: ClassVar[str]
    Options: ClassVar[type[Section]] = NoOptions
    # False for methods that only combine already-trained runs (UME): the loop then just evaluates.
    trains: ClassVar[bool] = True
    # True when a training step may leave some trained parameters without a gradient (MLA trains one
    # modality per step); distributed training must then look for them (distributed.wrap).
    leaves_parameters_unused: ClassVar[bool] = False

    def __init__(self, config: RunConfig, spec: DataSpec) -> None:
        super().__init__()
        self.config = config
        self.spec = spec
        self.options = validate(self.Options, config.method.options, f"method.options of method {self.name!r}")

    def modalities(self) -> list[str]:
        return self.spec.modality_names

    def require_modalities(self, count: int) -> None:
        if len(self.modalities()) < count:
            raise ConfigError(f"method {self.name!r} needs at least {count} modalities; data set {self.spec.name!r} has {self.spec.modality_names}")

    def train_split(self, train: Dataset) -> Dataset:
        """The samples the loop trains on; G-Blending keeps a slice of them aside to measure overfitting."""
        return train

    @property
    def steps_per_batch(self) -> int:
        """Optimiser steps the loop takes on each batch; MLA takes one per modality, in turn."""
        return 1

    def build_model(self) -> nn.Module:
        return build_late_fusion(self.spec, self.config.model, self.modalities())

    def training_loss(self, model: nn.Module, inputs: Inputs, labels: Tensor) -> tuple[Tensor, dict[str, float]]:
        loss = F.cross_entropy(model(inputs), labels)
        return loss, {"loss": loss.item()}

    def predict(self, model: nn.Module, inputs: Inputs) -> Tensor:
        """Scores whose argmax is the predicted class."""
        return model(inputs)

    def backward(self, model: nn.Module, loss: Tensor) -> None:
        """Fill the gradients; methods that reshape gradients (OGM-GE, MMPareto) override this."""
        loss.backward()

    def on_epoch_start(self, epoch: int, model: nn.Module) -> None:
        """Called before each training epoch (e.g. to re-estimate blend weights)."""


def unimodal_heads(spec: DataSpec, config: RunConfig, modalities: list[str]) -> nn.ModuleDict:
    """A linear classifier per modality on its encoder's features, beside the fused head: the
    uni-modal losses of G-Blending and MMPareto."""
    return nn.ModuleDict({m: nn.Linear(config.model.feature_dim, spec.num_classes) for m in modalities})
