"""Methods by name, and a finished run's trained model. A new method is one module that subclasses
`Method` and registers itself with `@METHODS.register(name)`; the pipeline, the report and the
figures take what they need (group, style, the uni-modal runs it uses) from the class."""

from __future__ import annotations

from pathlib import Path

import torch
from torch import nn

from ..config import RunConfig
from ..data import DataSpec
from ..registry import Registry
from ..runs import RunDir
from ..storage import load_checkpoint
from .base import Method

METHODS: Registry[type[Method]] = Registry("method")


def build_method(config: RunConfig, spec: DataSpec) -> Method:
    return METHODS.get(config.method.name)(config, spec)


def load_model(run: RunDir | str | Path, device: str | torch.device = "cpu") -> nn.Module:
    """A finished run's model with its best-on-validation weights, from its own folder alone."""
    run = run if isinstance(run, RunDir) else RunDir(run)
    method = build_method(run.config(), run.spec())
    model = method.build_model()
    model.load_state_dict(load_checkpoint(run.best)["model"])
    return model.to(device).eval()
