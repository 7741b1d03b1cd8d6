"""Paired bootstrap over examples, for whether a checkpoint's score differs from a baseline's.

Method. Both checkpoints answered the same examples, so each example i of a unit gives a
paired difference d_i = candidate_i - baseline_i (for accuracy: -1, 0 or +1). The observed
delta of the unit is mean(d). One bootstrap replicate resamples the unit's n examples with
replacement and takes the mean of their d; pairing keeps the per-example correlation
between the checkpoints, which is what makes the test far tighter than comparing two
independent stderrs. Averages over units (seen, unseen, per language, per benchmark)
resample every unit independently (a stratified bootstrap) and average the replicates
exactly as the scores are averaged, so their intervals cover the reported deltas.

* interval: percentile interval of the replicates (default 95 %);
* p-value (two-sided, H0: delta = 0): the replicates are centred on the observed delta,
  so under H0 their spread around it stands in for the null distribution;
  p = (1 + #{|replicate - observed| >= |observed|}) / (1 + iterations)
  (Efron & Tibshirani 1993, ch. 16; Koehn 2004 uses the same paired resampling for MT).

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
    tail = (1.0 - confidence) / 2.0
    low, high = np.quantile(replicates, [tail, 1.0 - tail])
    extreme = np.count_nonzero(np.abs(replicates - observed) >= abs(observed))
    result.update(
        ci_low=float(low),
        ci_high=float(high),
        p_value=float((1 + extreme) / (1 + replicates.size)),
    )
    return result
