"""Intervals for a method's seed-averaged scores, and for its difference to the baseline.

This is eval's paired bootstrap over examples (``eval.comparing.bootstrap``; the method is described
there and in eval/README.md), extended to several training seeds the way eval extends it
to several units: every (unit, seed) resamples its own examples independently, seeds are
averaged per replicate exactly as the reported scores are, and units are then averaged
with ``eval.running.aggregate`` into per-language, seen and unseen replicates.

* ``score_intervals``: interval of a method's score itself (per-example values resampled);
* ``paired_intervals``: interval and p-value of method − baseline, pairing seed s of the
  method with seed s of the baseline (the same data order) and every example with itself.

What the intervals cover: the finite evaluation set, given the trained models. They do
not cover training randomness; the spread over seeds is reported beside them.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from eval.comparing.bootstrap import resample_means, significance, unit_rng
from eval.comparing.compare import LoadedRun
from eval.running.aggregate import aggregate
from eval.running.scores import mean_matches_score

Key = tuple[str, str]


def score_intervals(runs: Sequence[LoadedRun], iterations: int, seed: int = 0,
                    confidence: float = 0.95) -> dict:
    """Seed-averaged scores of ``runs`` (one per seed) with bootstrap intervals."""
    return _bootstrap([(run, None) for run in runs], iterations, seed, confidence)


def paired_intervals(runs: Sequence[LoadedRun], baselines: Sequence[LoadedRun],
                     iterations: int, seed: int = 0, confidence: float = 0.95) -> dict:
    """Seed-averaged differences ``runs[i] - baselines[i]`` with paired bootstrap intervals."""
    if len(runs) != len(baselines):
        raise ValueError("pair every run with the baseline run of the same seed")
    return _bootstrap(list(zip(runs, baselines, strict=True)), iterations, seed, confidence)


def _bootstrap(pairs, iterations: int, seed: int, confidence: float) -> dict:
    first = pairs[0][0].summary
    seen, unseen = first["seen"], first["unseen"]
    common = set.intersection(*(set(run.units()) & set(base.units() if base else run.units())
                                for run, base in pairs))
    observed: dict[Key, float] = {}
    replicates: dict[Key, np.ndarray | None] = {}
    unbootstrapped: dict[str, str] = {}
    for unit_id in sorted(common):
        per_seed_observed, per_seed_replicates = [], []
        for index, (run, base) in enumerate(pairs):
            unit = run.units()[unit_id]
            value, values, reason = _unit_values(run, unit, base)
            per_seed_observed.append(value)
            if values is None:
                unbootstrapped[unit_id] = reason
            elif unit_id not in unbootstrapped:
                rng = unit_rng(seed, f"{unit_id}#{index}")
                per_seed_replicates.append(resample_means(values, iterations, rng))
        key = (unit["benchmark"], unit["language"])
        observed[key] = float(np.mean(per_seed_observed))
        replicates[key] = (None if unit_id in unbootstrapped
                           else np.mean(per_seed_replicates, axis=0))
    tree = _zip(aggregate(observed, seen, unseen), aggregate(replicates, seen, unseen),
                confidence)
    return {**tree, "not_bootstrapped": unbootstrapped, "units": sorted(common)}


def _unit_values(run: LoadedRun, unit: dict, base: LoadedRun | None):
    """(observed value, per-example values or None, why not) of one unit of one seed."""
    values = run.example_values(unit)
    if not mean_matches_score(values, unit["score"]):
        return unit["score"], None, f"{unit['metric']} is not a mean over examples"
    if base is None:
        return unit["score"], np.array([values[k] for k in sorted(values)]), None
    other = base.units()[unit["unit"]]
    base_values = base.example_values(other)
    if other["metric"] != unit["metric"] or not mean_matches_score(base_values, other["score"]):
        return unit["score"] - other["score"], None, "the baseline's metric differs"
    if base_values.keys() != values.keys():
        return unit["score"] - other["score"], None, "the runs scored different examples"
    keys = sorted(values)
    differences = np.array([values[k] - base_values[k] for k in keys])
    return unit["score"] - other["score"], differences, None


def _zip(observed, replicates, confidence: float):
    if isinstance(observed, dict):
        return {k: _zip(observed[k], replicates.get(k), confidence) for k in observed}
    if observed is None:
        return None
    return significance(observed, replicates, confidence)
