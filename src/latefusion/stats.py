"""The statistics every part of latefusion shares: mean and spread over seeds, paired tests of two
classifiers on the same samples, and how a p-value is written. Imports nothing of latefusion, so the
reporting modules can use it without importing the training stack.
"""

from __future__ import annotations

import math
import statistics
from collections.abc import Sequence
from typing import Any

import numpy as np

ALPHA = 0.05
MCNEMAR = "exact McNemar test (two-sided)"
SIGN_FLIP = "paired sign-flip test over samples (two-sided)"


def mean_std(values: Sequence[float]) -> tuple[float, float]:
    """Mean and sample standard deviation (0 for one value)."""
    return statistics.fmean(values), statistics.stdev(values) if len(values) > 1 else 0.0


def noise_margin(acc_a: float, acc_b: float, n: int, min_margin: float = 0.01) -> float:
    """Two standard errors of the difference of two independent accuracies on n samples, at least `min_margin`."""
    standard_error = math.sqrt((acc_a * (1 - acc_a) + acc_b * (1 - acc_b)) / max(n, 1))
    return max(min_margin, 2 * standard_error)


def mcnemar_exact(b: int, c: int) -> float:
    """Two-sided exact McNemar p-value from the discordant counts b and c: the probability, with each
    of the b + c discordant samples a fair coin, of a split at least as uneven as min(b, c)."""
    b, c = int(b), int(c)
    if b < 0 or c < 0:
        raise ValueError(f"discordant counts must be >= 0, got {b} and {c}")
    n = b + c
    if n == 0:
        return 1.0
    tail = sum(math.comb(n, k) for k in range(min(b, c) + 1))  # exact integers; one division at the end
    return min(1.0, 2 * tail / 2**n)


def paired_test(first_only: int, second_only: int, alpha: float = ALPHA) -> dict[str, Any]:
    """The exact McNemar test of two classifiers on the same samples, from their discordant counts."""
    p = mcnemar_exact(first_only, second_only)
    return {"test": MCNEMAR, "first_only": int(first_only), "second_only": int(second_only), "p_value": p, "alpha": alpha,
            "first_better": first_only > second_only and p < alpha, "second_better": second_only > first_only and p < alpha}


def binomial_tail(k: int, n: int, p: float) -> float:
    """P(X >= k) for X ~ Binomial(n, p): the one-sided p-value of k successes in n tries at rate p."""
    if k <= 0:
        return 1.0
    if k > n:
        return 0.0
    if p <= 0 or p >= 1:
        return float(p >= 1)
    ks = np.arange(k, n + 1)
    log_pmf = (math.lgamma(n + 1) - np.array([math.lgamma(i + 1) + math.lgamma(n - i + 1) for i in ks])
               + ks * math.log(p) + (n - ks) * math.log1p(-p))
    return float(min(1.0, np.exp(log_pmf).sum()))


def smallest_detectable_gap(n: int, discordant: int, alpha: float = ALPHA) -> float:
    """The smallest accuracy difference (a fraction of n samples) the exact McNemar test can call
    significant when `discordant` of the n samples are discordant: the least b - c with p < alpha.
    With no discordant samples it is taken as if one in ten were (no split can show anything else)."""
    d = max(int(discordant), max(1, n // 10))
    for c in range(d // 2, -1, -1):
        if mcnemar_exact(d - c, c) < alpha:
            return (d - 2 * c) / max(n, 1)
    return 1.0


def sign_flip_test(differences: Sequence[float], *, draws: int = 20000, seed: int = 0) -> float:
    """Two-sided p-value that the per-sample differences are centred on zero: each sample's difference
    keeps or flips its sign at random (valid when the samples, not the seeds, are the independent
    units, as when several seeds share their validation samples). Exact for up to 16 non-zero
    differences, else a seeded Monte-Carlo estimate over `draws` sign patterns, counting the observed one."""
    values = np.asarray([d for d in differences if d != 0], dtype=np.float64)
    if values.size == 0:
        return 1.0
    observed = abs(values.sum()) - 1e-9 * values.size  # sums equal to the observed one count as extreme
    if values.size <= 16:
        signs = 1 - 2 * ((np.arange(2 ** values.size)[:, None] >> np.arange(values.size)) & 1)
        return float(np.mean(np.abs(signs @ values) >= observed))
    rng = np.random.default_rng(seed)
    extreme = 0
    for start in range(0, draws, 1000):
        signs = rng.choice((-1.0, 1.0), size=(min(1000, draws - start), values.size))
        extreme += int(np.sum(np.abs(signs @ values) >= observed))
    return (extreme + 1) / (draws + 1)

def p_text(p: float) -> str:
    return f"p = {p:.3g}" if p >= 1e-4 else "p < 0.0001"
