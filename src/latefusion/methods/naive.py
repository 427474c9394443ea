"""Naive late fusion: all encoders trained jointly through one cross-entropy on the fused logits.
This is the baseline that suffers modality laziness."""

from ..style import Style
from .base import Method
from .registry import METHODS


@METHODS.register("naive")
class Naive(Method):
    name = "naive"
    group = "paper"
    style = Style("Naive fusion", "#D55E00", "s", hatch="////")
