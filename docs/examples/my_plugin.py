"""A complete latefusion plug-in: one encoder and one training method, registered when imported.

Use it from the command line with `--import` (the path of this file, or its module name when it lies
on the Python path or in the current folder):

    latefusion list --import docs/examples/my_plugin.py
    latefusion train --import docs/examples/my_plugin.py --set data.name=synthetic-unimodal \
        --set model.encoders.a.name=small-mlp --set model.encoders.b.name=small-mlp \
        --set method.name=label_smoothing --set method.options.smoothing=0.1 --out runs/mine

Commands that rebuild a finished run's model (probe, predict, report) need the same `--import`.
"""

from __future__ import annotations

import math

import torch.nn.functional as F
from pydantic import Field
from torch import Tensor, nn

from latefusion.config import Section
from latefusion.methods import METHODS, Method, StepInfo, StepOutput
from latefusion.models import ENCODERS
from latefusion.style import Style


# An encoder is called as `Encoder(input_shape, out_dim, **options)`: `input_shape` is one sample's
# shape (e.g. (64,) for a vector, (3, 32, 32) for an image), `out_dim` is `model.feature_dim`, and
# the options are `model.encoders.<modality>.options` (checked against this signature before
# anything trains). It must expose `out_dim` and map a batch to (batch, out_dim) features.
@ENCODERS.register("small-mlp")
class SmallMLP(nn.Module):
    """One hidden layer with dropout, for small vector modalities."""

    def __init__(self, input_shape: tuple[int, ...], out_dim: int, hidden: int = 32, dropout: float = 0.1) -> None:
        super().__init__()
        self.out_dim = out_dim
        self.net = nn.Sequential(nn.Flatten(), nn.Linear(math.prod(input_shape), hidden), nn.ReLU(), nn.Dropout(dropout),
                                 nn.Linear(hidden, out_dim), nn.ReLU())

    def forward(self, x: Tensor) -> Tensor:
        return self.net(x)


# A method's options: `method.options.<key>`, typed and bounded; a wrong one is refused when the
# config is resolved, before any data is read.
class LabelSmoothingOptions(Section):
    smoothing: float = Field(0.1, ge=0, lt=1, description="share of the target spread over the other classes")


@METHODS.register("label_smoothing")
class LabelSmoothing(Method):
    """Late fusion trained with a label-smoothed cross-entropy on the fused logits."""

    name = "label_smoothing"
    group = "other"  # run only when named (`--methods label_smoothing` in the demo)
    Options = LabelSmoothingOptions
    style = Style("Label smoothing", "#CC79A7", "v")  # how the report and its figures draw it

    def loss(self, model: nn.Module, inputs: dict[str, Tensor], labels: Tensor, step: StepInfo) -> StepOutput:
        loss = F.cross_entropy(model(inputs), labels, label_smoothing=self.options.smoothing)
        return StepOutput(loss, {"loss": loss.detach()})
