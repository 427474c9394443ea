"""Training methods by name, one file each. A new method subclasses `Method` and registers itself."""

from __future__ import annotations

from ..config import RunConfig
from ..data import DataSpec
from ..registry import Registry
from .base import Method

METHODS: Registry[type[Method]] = Registry("method")


def build_method(config: RunConfig, spec: DataSpec) -> Method:
    return METHODS.get(config.method.name)(config, spec)


from . import gblend, mla, mmpareto, naive, ogm_ge, ume, umt, unimodal  # noqa: E402,F401  (register the methods)

__all__ = ["METHODS", "Method", "build_method"]
