"""Seen / unseen / per-language / per-benchmark averages of per-unit scores.

Definitions (macro averages, so that a language covered by many benchmarks does not
outweigh one covered by few, and a large benchmark does not drown a small one):

* per language L: mean over the run's benchmarks that cover L;
* per benchmark b: mean over b's languages, separately for seen, unseen and all;
* seen (unseen): mean of the per-language scores of the seen (unseen) languages.

Standard errors treat units as independent: the variance of a mean of k terms is the
sum of their variances over k². A missing stderr makes the combined one missing.

The functions only add and divide, so the same code aggregates floats (a run's scores)
and numpy arrays (bootstrap replicates of those scores).
"""

from __future__ import annotations

import math
from collections.abc import Callable, Collection, Mapping
from typing import Any

Key = tuple[str, str]  # (benchmark, language)


def aggregate(values: Mapping[Key, Any], seen: Collection[str], unseen: Collection[str]) -> dict:
    """Macro averages of ``values``; a group with no unit is None."""
    return _aggregate(values, seen, unseen, _mean)


def aggregate_stderr(
    stderrs: Mapping[Key, float | None], seen: Collection[str], unseen: Collection[str]
) -> dict:
    """Standard errors of the averages that ``aggregate`` returns, in the same layout."""
    variances = {k: None if s is None else s * s for k, s in stderrs.items()}
    return _map_leaves(_aggregate(variances, seen, unseen, _mean_variance), _sqrt_or_none)


def _aggregate(values, seen, unseen, combine: Callable[[list], Any]) -> dict:
    by_language: dict[str, list] = {}
    for (_, language), value in values.items():
        by_language.setdefault(language, []).append(value)
    per_language = {lang: combine(items) for lang, items in sorted(by_language.items())}

    per_benchmark: dict[str, dict] = {}
    for benchmark in sorted({b for b, _ in values}):
        rows = {lang: v for (b, lang), v in values.items() if b == benchmark}
        per_benchmark[benchmark] = {
            "seen": _combine_over(rows, seen, combine),
            "unseen": _combine_over(rows, unseen, combine),
            "all": combine(list(rows.values())),
        }
    return {
        "seen": _combine_over(per_language, seen, combine),
        "unseen": _combine_over(per_language, unseen, combine),
        "per_language": per_language,
        "per_benchmark": per_benchmark,
    }


def _combine_over(rows: Mapping[str, Any], languages: Collection[str], combine):
    return combine([rows[lang] for lang in languages if lang in rows])


def _mean(items: list):
    # None marks an unknown term (e.g. a unit that cannot be bootstrapped); the mean of
    # anything containing it is unknown too.
    if not items or any(item is None for item in items):
        return None
    return sum(items[1:], items[0]) / len(items)


def _mean_variance(items: list):
    if not items or any(item is None for item in items):
        return None
    return sum(items) / len(items) ** 2


def _sqrt_or_none(value):
    return None if value is None else math.sqrt(value)


def _map_leaves(tree, fn):
    if isinstance(tree, dict):
        return {k: _map_leaves(v, fn) for k, v in tree.items()}
    return fn(tree)
