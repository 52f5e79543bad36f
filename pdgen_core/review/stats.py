"""The review sample's statistics: how many rows to read so that a clean sample bounds the defect
rate, and the one-sided upper bound a reviewed sample gives.

The bound is Clopper-Pearson's exact binomial bound: the largest defect rate p under which seeing
at most k defects in n rows still has probability >= 1 - confidence. With k = 0 it is
1 - (1 - confidence)^(1/n), about 3/n at 95% (the "rule of three"). scipy is not in this venv, so
the bound is found by bisection on the exact binomial CDF (``math.comb``), which is what
``scipy.stats.beta.ppf(confidence, k + 1, n - k)`` computes.
"""

from __future__ import annotations

import math

CONFIDENCE = 0.95
DEFAULT_TARGET = 0.05  # the defect rate a sample bounds when the spec sets no max_defect_rate


def sample_size(population: int, target: float = DEFAULT_TARGET, confidence: float = CONFIDENCE) -> int:
    """Rows to sample so that, if none is defective, the defect rate is below ``target`` with
    ``confidence``: the smallest n with (1 - target)^n <= 1 - confidence, at most the population."""
    if population <= 0:
        return 0
    n = math.ceil(math.log(1 - confidence) / math.log(1 - target))
    return min(n, population)


def binom_cdf(k: int, n: int, p: float) -> float:
    """P(X <= k) for X ~ Binomial(n, p), exactly."""
    if p <= 0:
        return 1.0
    if p >= 1:
        return 1.0 if k >= n else 0.0
    return sum(math.comb(n, i) * p**i * (1 - p) ** (n - i) for i in range(0, min(k, n) + 1))


def upper_bound(defects: int, n: int, confidence: float = CONFIDENCE) -> float | None:
    """The one-sided Clopper-Pearson upper bound on the defect rate after ``defects`` in ``n``
    reviewed rows; None when nothing was reviewed."""
    if n <= 0:
        return None
    if defects >= n:
        return 1.0
    alpha = 1 - confidence
    if defects == 0:
        return 1 - alpha ** (1 / n)
    lo, hi = defects / n, 1.0
    for _ in range(60):  # the CDF falls as p grows: bisect to 1e-18
        mid = (lo + hi) / 2
        if binom_cdf(defects, n, mid) > alpha:
            lo = mid
        else:
            hi = mid
    return hi
