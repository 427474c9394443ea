"""Training methods by name, one file each. A new method subclasses `Method` and registers itself."""

from __future__ import annotations

from . import (agm, g2d, gblend, greedy, inforeg, lfm, mla, mmcosine, mmpareto, naive, ogm_ge, ogm_tpami, opm,  # noqa: F401
               pmr, reconboost, relearn, remix, ume, umt, unimodal)  # (register the methods)
from .base import Method, StepInfo, StepOutput, TrainingContext
from .registry import METHODS, build_method, load_model

__all__ = ["METHODS", "Method", "StepInfo", "StepOutput", "TrainingContext", "build_method", "load_model"]
