"""Encoders by name: a new encoder is one module that registers a class taking
`(input_shape, out_dim, **options)` and exposing `out_dim`."""

from __future__ import annotations

from torch import nn

from ..registry import Registry

ENCODERS: Registry[type[nn.Module]] = Registry("encoder")
