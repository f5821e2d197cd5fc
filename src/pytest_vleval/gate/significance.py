"""Paired significance tests for the regression gate: exact McNemar on pass/fail, paired bootstrap on scores.

Both are one-sided: the question the gate asks is "did the current run get worse than the baseline on the
same cases?", so a p-value is the probability of a drop at least this large if the two runs were equally good.
Pure Python (numpy for the bootstrap only), so they are cheap to import and easy to check by hand.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

DEFAULT_RESAMPLES = 10_000


def binomial_tail(k: int, n: int) -> float:
    """P(X >= k) for X ~ Binomial(n, 1/2), exactly (integer arithmetic, then one division)."""
    if n < 0 or k < 0:
        raise ValueError("k and n must be non-negative")
    if k > n:
        return 0.0
    # int / int is correctly rounded in Python however large the integers are.
    return sum(math.comb(n, i) for i in range(k, n + 1)) / 2**n


def mcnemar_exact(worse: int, better: int) -> float:
    """One-sided exact McNemar p-value for "the current run is worse".

    ``worse``: paired cases that passed in the baseline and fail now (b); ``better``: the reverse (c). Under the
    null hypothesis each discordant pair is a fair coin, so p = P(X >= b) with X ~ Binomial(b + c, 1/2).
    Cases that passed (or failed) in both runs carry no information about the difference and are ignored.
    """
    if worse < 0 or better < 0:
        raise ValueError("counts must be non-negative")
    if worse + better == 0:
        return 1.0
    return min(1.0, binomial_tail(worse, worse + better))


def mcnemar_exact_two_sided(worse: int, better: int) -> float:
    """Two-sided exact McNemar p-value (for reference: what most statistics packages report by default)."""
    n = worse + better
    if n == 0:
        return 1.0
    low = min(worse, better)
    return min(1.0, 2 * binomial_tail(n - low, n))


def paired_bootstrap(
    before: Sequence[float], after: Sequence[float], *, resamples: int = DEFAULT_RESAMPLES, seed: int = 0
) -> float:
    """One-sided paired bootstrap p-value for "the mean of ``after`` is lower than the mean of ``before``".

    The per-item differences are centred on zero (the null hypothesis of no change) and resampled with
    replacement; p is the share of resampled means at least as low as the observed mean difference, with the
    usual +1 correction so it is never exactly 0. Deterministic for a given seed.
    """
    if len(before) != len(after):
        raise ValueError("paired samples must have the same length")
    if not before:
        return 1.0
    import numpy as np

    diffs = np.asarray(after, dtype=float) - np.asarray(before, dtype=float)
    observed = float(diffs.mean())
    if not np.any(diffs):
        return 1.0
    centred = diffs - observed
    rng = np.random.default_rng(seed)
    picks = rng.integers(0, len(diffs), size=(resamples, len(diffs)))
    means = centred[picks].mean(axis=1)
    # A tolerance so that ties with the observed value (common with 0/1 scores) count as "at least as low".
    hits = int(np.count_nonzero(means <= observed + 1e-12))
    return (hits + 1) / (resamples + 1)
