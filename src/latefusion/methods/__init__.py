"""Training methods by name, one file each. A new method subclasses `Method` and registers itself."""

from __future__ import annotations

from . import agm, gblend, mla, mmpareto, naive, ogm_ge, pmr, relearn, remix, ume, umt, unimodal  # noqa: F401  (register the methods)
from .base import Method, StepInfo, StepOutput, TrainingContext
from .registry import METHODS, build_method, load_model

__all__ = ["METHODS", "Method", "StepInfo", "StepOutput", "TrainingContext", "build_method", "load_model"]
