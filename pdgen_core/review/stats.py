"""The review sample's statistics: how many rows to read so that a clean sample bounds the defect
rate, and the one-sided upper bound a reviewed sample gives.

The bound is Clopper-Pearson's exact binomial bound: the largest defect rate p under which seeing
at most k defects in n rows still has probability >= 1 - confidence, which is the beta quantile
``scipy.stats.beta.ppf(confidence, k + 1, n - k)``. With k = 0 it is 1 - (1 - confidence)^(1/n),
about 3/n at 95% (the "rule of three"), and that is also how many rows the sample needs.
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


def upper_bound(defects: int, n: int, confidence: float = CONFIDENCE) -> float | None:
    """The one-sided Clopper-Pearson upper bound on the defect rate after ``defects`` in ``n``
    reviewed rows; None when nothing was reviewed."""
    from scipy.stats import beta

    if n <= 0:
        return None
    if defects >= n:
        return 1.0
    return float(beta.ppf(confidence, defects + 1, n - defects))
