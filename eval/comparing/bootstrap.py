"""Paired bootstrap over examples, for whether a checkpoint's score differs from a baseline's.

Method. Both checkpoints answered the same examples, so each example i of a unit gives a
paired difference d_i = candidate_i - baseline_i (for accuracy: -1, 0 or +1). The observed
delta of the unit is mean(d). One bootstrap replicate resamples the unit's n examples with
replacement and takes the mean of their d; pairing keeps the per-example correlation
between the checkpoints, which is what makes the test far tighter than comparing two
independent stderrs. Averages over units (seen, unseen, per language, per benchmark)
resample every unit independently (a stratified bootstrap) and average the replicates
exactly as the scores are averaged, so their intervals cover the reported deltas.

* interval: percentile interval of the replicates (default 95 %), taken as order
  statistics: with B replicates sorted and j = floor(B·(1 − confidence)/2), the
  interval is [r_(j), r_(B−1−j)] (0-based);
* p-value (two-sided, H0: delta = 0), read off the same replicates: with
  k = min(#{r ≤ 0}, #{r ≥ 0}), p = min(1, max(2k, 1)/B). A replicate equal to 0
  counts on both sides (ties never make a difference look significant). Then the
  interval excludes 0 exactly when p ≤ 1 − confidence (for B ≥ 2/(1 − confidence)),
  so the table's interval and its p never disagree (Efron & Tibshirani 1993, ch. 15-16,
  the percentile method; Koehn 2004 uses the same paired resampling for MT). The
  smallest p it reports is 1/B: "below the resolution of B resamples".

Randomness is seeded per unit from (seed, unit id), so a unit's replicates do not change
when other units are added to a comparison.
"""

from __future__ import annotations

import zlib

import numpy as np

# Bound the (iterations x examples) index matrix drawn at once to about 8 M entries.
_MAX_DRAW = 8_000_000


def unit_rng(seed: int, unit_id: str) -> np.random.Generator:
    return np.random.default_rng([seed, zlib.crc32(unit_id.encode("utf-8"))])


def resample_means(
    differences: np.ndarray, iterations: int, rng: np.random.Generator
) -> np.ndarray:
    """Means of ``iterations`` resamples (with replacement) of ``differences``."""
    differences = np.asarray(differences, dtype=float)
    n = differences.size
    if n == 0:
        raise ValueError("cannot bootstrap a unit without examples")
    rows_per_draw = max(1, _MAX_DRAW // n)
    means = np.empty(iterations)
    for start in range(0, iterations, rows_per_draw):
        stop = min(iterations, start + rows_per_draw)
        indices = rng.integers(0, n, size=(stop - start, n))
        means[start:stop] = differences[indices].mean(axis=1)
    return means


def significance(observed: float, replicates: np.ndarray | None, confidence: float = 0.95) -> dict:
    """Delta with its bootstrap interval and p-value (None where there are no replicates).

    >>> stats = significance(0.0, np.zeros(99))
    >>> stats["p_value"], stats["ci_low"], stats["ci_high"]
    (1.0, 0.0, 0.0)
    """
    result = {"delta": float(observed), "ci_low": None, "ci_high": None, "p_value": None}
    if replicates is None:
        return result
    ordered = np.sort(np.asarray(replicates, dtype=float))
    B = ordered.size
    j = int(np.floor(B * (1.0 - confidence) / 2.0))
    at_or_below = int(np.count_nonzero(ordered <= 0.0))
    at_or_above = int(np.count_nonzero(ordered >= 0.0))
    k = min(at_or_below, at_or_above)
    result.update(
        ci_low=float(ordered[j]),
        ci_high=float(ordered[B - 1 - j]),
        p_value=min(1.0, max(2 * k, 1) / B),
    )
    return result
