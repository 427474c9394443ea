"""The linear probe and the guide's paired test, recomputed from their definitions: the probe's
protocol as docs/methods.md states it (features standardised with train statistics, full-batch
AdamW at lr 0.05 and weight decay 1e-4 for 300 steps, validation checked every 10 steps, the step
with the best validation accuracy reported), and the two-sided exact McNemar p-value as twice the
binomial(b + c, 1/2) tail at min(b, c), in exact fractions. Every random draw is seeded.

These are among the tests `scripts/mutate_methods.py` expects to catch its mutations.
"""

from __future__ import annotations

from fractions import Fraction
from math import comb

import pytest
import torch
import torch.nn.functional as F
from torch import nn

from latefusion.probe import ProbeConfig, fit_linear
from latefusion.stats import mcnemar_exact

# ---------------------------------------------------------------- linear probe


def probe_features(seed: int = 0, classes: int = 3, dim: int = 12) -> dict[str, tuple[torch.Tensor, torch.Tensor]]:
    """Weakly separated classes; val and test shifted away from train (so standardising them with
    their own statistics instead of train's would change the predictions), and small enough that
    the validation and test curves disagree about the best step."""
    g = torch.Generator().manual_seed(seed)
    centres = torch.randn(classes, dim, generator=g)
    features = {}
    for split, n, shift in (("train", 90, 0.0), ("val", 60, 0.4), ("test", 60, 0.4)):
        labels = torch.randint(classes, (n,), generator=g)
        x = 0.6 * centres[labels] + torch.randn(n, dim, generator=g) * (1 + torch.rand(dim, generator=g)) + shift
        features[split] = (x, labels)
    return features


def reference_probe(features, classes: int, *, steps: int = 300, lr: float = 0.05, weight_decay: float = 1e-4,
                    eval_every: int = 10, seed: int = 0) -> tuple[dict, list[dict]]:
    """The documented protocol, written out: returns the reported row and every checked step's row."""
    x, y = features["train"]
    mean, std = x.mean(0), x.std(0).clamp_min(1e-6)  # train statistics (torch's default, unbiased std)
    scaled = {s: ((f - mean) / std, labels) for s, (f, labels) in features.items()}
    torch.manual_seed(seed)  # the probe's seed draws the fresh head's initial weights
    head = nn.Linear(x.shape[1], classes)
    optimizer = torch.optim.AdamW(head.parameters(), lr=lr, weight_decay=weight_decay)
    rows = []
    for step in range(1, steps + 1):
        loss = F.cross_entropy(head(scaled["train"][0]), y)
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
        if step % eval_every == 0 or step == steps:
            with torch.no_grad():
                acc = {s: (head(f).argmax(1) == labels).float().mean().item() for s, (f, labels) in scaled.items()}
            rows.append({"val_acc": acc["val"], "test_acc": acc["test"], "train_acc": acc["train"], "step": step})
    best = max(rows, key=lambda row: row["val_acc"])  # max() keeps the first of equal rows: the earliest step
    return best, rows


def test_probe_defaults_are_the_documented_protocol():
    config = ProbeConfig()
    assert (config.steps, config.lr, config.weight_decay, config.eval_every) == (300, 0.05, 1e-4, 10)


@pytest.mark.parametrize("seed", [0, 4])
def test_probe_reports_test_accuracy_at_the_step_chosen_on_validation(seed):
    features = probe_features(seed)
    got = fit_linear(features, 3, ProbeConfig(seed=seed))
    best, rows = reference_probe(features, 3, seed=seed)
    assert got == pytest.approx(best, abs=1e-12)
    # The check can tell validation from test selection: the best test accuracy was at another step.
    assert max(row["test_acc"] for row in rows) > best["test_acc"]
    if seed == 4:  # three steps share the best validation accuracy here: the earliest must be the one reported
        assert sum(row["val_acc"] == best["val_acc"] for row in rows) == 3


# ---------------------------------------------------------------- exact McNemar test


def mcnemar_definition(b: int, c: int) -> Fraction:
    n = b + c
    if n == 0:
        return Fraction(1)
    return min(Fraction(1), 2 * sum(Fraction(comb(n, k), 2**n) for k in range(min(b, c) + 1)))


def test_mcnemar_exact_is_the_doubled_binomial_tail_on_every_small_table():
    for b in range(31):
        for c in range(31):
            assert mcnemar_exact(b, c) == pytest.approx(float(mcnemar_definition(b, c)), rel=1e-12, abs=0), (b, c)


def test_mcnemar_exact_at_the_edges_of_significance():
    # Ten discordant samples all one way: 2 / 2**10; nine to one: 2 * 11 / 2**10 (the tail holds k = 0 and 1).
    assert mcnemar_exact(10, 0) == 2 / 1024 and mcnemar_exact(9, 1) == 22 / 1024
    # The smallest one-sided split of 20 significant at 0.05: 15 to 5 (p = 0.041), not 14 to 6 (0.115).
    assert mcnemar_exact(15, 5) < 0.05 < mcnemar_exact(14, 6)
    assert mcnemar_exact(15, 5) == pytest.approx(float(mcnemar_definition(15, 5)), rel=1e-12)
