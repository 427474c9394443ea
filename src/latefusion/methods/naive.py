"""Naive late fusion: all encoders trained jointly through one cross-entropy on the fused logits.
This is the baseline that suffers modality laziness."""

from . import METHODS
from .base import Method


@METHODS.register("naive")
class Naive(Method):
    name = "naive"
