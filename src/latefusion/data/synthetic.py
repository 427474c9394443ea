"""Synthetic two-modality data that follows the paper's feature model (a design of ours; the paper's
generator is not published; see docs/synthetic.md).

Each modality m is a `dim`-vector built in its own random orthonormal basis from three parts:

* easy uni-modal feature: a class prototype of norm `easy_strength`, present in a sample with
  probability `easy_prob` (independently per modality). Learnt in a few steps.
* hard uni-modal feature: a class prototype of norm `hard_strength`, present in every sample with a
  random sign. The sign makes its class mean zero, so no linear map of the input reads it: the
  encoder must learn a nonlinear detector, slowly, from the samples the easy feature does not
  explain. A joint model that already fits the training set through the easy feature of either
  modality gets half the uni-modal model's share of such samples and stops early: modality laziness.
* paired feature (`paired_strength` > 0): the label is split as a sum, `label = a + b`, with `a` in
  [0, ceil(K/2)) and `b` in [0, K - ceil(K/2) + 1), drawn uniformly among the splits of the label.
  Modality a shows a prototype for code `a`, modality b one for code `b`. Alone, a code narrows the
  label to a window of about K/2 classes; together they give it exactly. A late-fusion head can read
  the sum off (logits A[y, a] + B[y, b] = -(y - a - b)^2 + const are additive over modalities); a
  uni-modal ensemble cannot, since each member only sees its window. Each code is mildly informative
  alone, which is what lets gradient descent find it (a code independent of the label alone would
  sit at a saddle: zero expected gradient for either encoder).

Everything is drawn from `seed`, so a preset and a seed give the same tensors on any machine.
"""

from __future__ import annotations

import torch
from pydantic import Field

from ..errors import DataError
from ..config import DataConfig, Section, validate
from .registry import DATASETS
from .base import DataBundle, Modality, TensorSplit

MODALITIES = ("a", "b")


class SyntheticOptions(Section):
    num_classes: int = Field(8, ge=2)
    dim: int = Field(64, ge=8)
    easy_dim: int = Field(8, ge=1)
    hard_dim: int = Field(16, ge=1)
    paired_dim: int = Field(16, ge=1)
    easy_strength: float = Field(4.0, ge=0)
    easy_prob: float = Field(0.5, ge=0, le=1)
    hard_strength: float = Field(3.0, ge=0)
    paired_strength: float = Field(0.0, ge=0)
    noise: float = Field(1.0, gt=0)
    train_size: int = Field(2000, gt=0)
    val_size: int = Field(1000, gt=0)
    test_size: int = Field(2000, gt=0)
    seed: int = 0


PRESETS: dict[str, dict] = {
    "synthetic-unimodal": {},
    "synthetic-paired": {"paired_strength": 3.0, "easy_prob": 0.3, "hard_strength": 0.7},
}


def _unit_rows(generator: torch.Generator, rows: int, dim: int) -> torch.Tensor:
    vectors = torch.randn(rows, dim, generator=generator)
    return vectors / vectors.norm(dim=1, keepdim=True)


def generate(options: SyntheticOptions) -> dict[str, tuple[dict[str, torch.Tensor], torch.Tensor]]:
    o = options
    if o.easy_dim + o.hard_dim + o.paired_dim > o.dim:
        raise DataError(f"easy_dim + hard_dim + paired_dim = {o.easy_dim + o.hard_dim + o.paired_dim} exceeds dim = {o.dim}")
    g = torch.Generator().manual_seed(o.seed)
    k = o.num_classes
    code_counts = {"a": (k + 1) // 2, "b": k - (k + 1) // 2 + 1}
    structure = {}
    for name in MODALITIES:
        basis, _ = torch.linalg.qr(torch.randn(o.dim, o.dim, generator=g))
        easy_basis, rest = basis[:, : o.easy_dim], basis[:, o.easy_dim :]
        hard_basis, paired_basis = rest[:, : o.hard_dim], rest[:, o.hard_dim : o.hard_dim + o.paired_dim]
        structure[name] = {
            "easy": _unit_rows(g, k, o.easy_dim) @ easy_basis.T,
            "hard": _unit_rows(g, k, o.hard_dim) @ hard_basis.T,
            "paired": _unit_rows(g, code_counts[name], o.paired_dim) @ paired_basis.T,
        }

    splits = {}
    for split, size in (("train", o.train_size), ("val", o.val_size), ("test", o.test_size)):
        labels = torch.randint(k, (size,), generator=g)
        # a uniform over the valid splits of each label: max(0, y - (nb - 1)) <= a <= min(na - 1, y)
        low = (labels - (code_counts["b"] - 1)).clamp_min(0)
        high = labels.clamp_max(code_counts["a"] - 1)
        code_a = low + (torch.rand(size, generator=g) * (high - low + 1)).long()
        codes = {"a": code_a, "b": labels - code_a}
        inputs = {}
        for name in MODALITIES:
            s = structure[name]
            easy_present = (torch.rand(size, 1, generator=g) < o.easy_prob).float()
            hard_sign = torch.randint(2, (size, 1), generator=g).float() * 2 - 1
            x = (
                o.easy_strength * easy_present * s["easy"][labels]
                + o.hard_strength * hard_sign * s["hard"][labels]
                + o.paired_strength * s["paired"][codes[name]]
                + o.noise * torch.randn(size, o.dim, generator=g)
            )
            inputs[name] = x
        splits[split] = (inputs, labels)
    return splits


# Enough epochs for the hard features to be learnt where they are learnt at all. Declaring
# data.options.seed tells `--seeds` that this data is drawn from a seed (seeds.py). The presets
# are small enough to be quick as they are: `--quick` is accepted and changes nothing.
DEFAULTS = {"train": {"epochs": 60}, "data": {"options": {"seed": 0}}, "quick": {}}


def _builder(preset: str):
    def build(config: DataConfig) -> DataBundle:
        options = validate(SyntheticOptions, {**PRESETS[preset], **config.options}, f"data.options of {preset}")
        splits = generate(options)
        return DataBundle(
            name=preset,
            modalities=[Modality(name, "vector", (options.dim,)) for name in MODALITIES],
            num_classes=options.num_classes,
            encoders={name: {"name": "mlp"} for name in MODALITIES},
            splits={split: TensorSplit(inputs, labels) for split, (inputs, labels) in splits.items()},
        )

    return build


for _preset in PRESETS:
    DATASETS.register(_preset, defaults=DEFAULTS)(_builder(_preset))
