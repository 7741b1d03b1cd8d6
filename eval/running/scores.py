"""Read one unit's score, stderr and per-example values out of lm-eval's own output.

lm-eval reports metrics under keys ``"<metric>,<filter>"`` (``"acc,none"``,
``"exact_match,flexible-extract"``) with the standard error under
``"<metric>_stderr,<filter>"``. Per-example values come from ``log_samples``: one row
per (task, document, filter) carrying the metric's value for that document.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass


@dataclass(frozen=True)
class UnitScore:
    metric: str
    score: float
    stderr: float | None
    n: int
    higher_is_better: bool


def choose_metric(raw: dict, task: str, preferred: Sequence[str] = ()) -> str:
    """The ``metric,filter`` key to report for ``task``.

    The first of ``preferred`` that lm-eval reported wins ("acc" matches any filter,
    "exact_match,strict-match" only that one); otherwise the first higher-is-better one.
    """
    keys = _metric_keys(raw["results"][task])
    for wanted in preferred:
        for key in keys:
            if key == wanted or key.split(",", 1)[0] == wanted:
                return key
    higher = raw.get("higher_is_better", {}).get(task, {})
    for key in keys:
        if higher.get(key.split(",", 1)[0]) is True:
            return key
    raise ValueError(f"lm-eval reported no higher-is-better metric for {task!r}: {keys}")


def unit_score(raw: dict, task: str, preferred: Sequence[str] = ()) -> UnitScore:
    """Score of ``task`` (a task or a group with an aggregate) in one lm-eval output."""
    row = raw["results"][task]
    metric = choose_metric(raw, task, preferred)
    name, filter_name = metric.split(",", 1)
    stderr = row.get(f"{name}_stderr,{filter_name}")
    higher = raw.get("higher_is_better", {}).get(task, {}).get(name, True)
    return UnitScore(
        metric=metric,
        score=float(row[metric]),
        stderr=_as_stderr(stderr),
        n=int(row.get("sample_len", 0)),
        higher_is_better=bool(higher),
    )


def per_example_values(sample_rows: list[dict], metric: str) -> dict[tuple[str, int], float]:
    """``(task, doc_id) -> value`` of ``metric`` ("acc,none") from logged sample rows."""
    name, filter_name = metric.split(",", 1)
    values = {}
    for row in sample_rows:
        if row.get("filter") == filter_name and name in row:
            value = row[name]
            if isinstance(value, bool | int | float):
                values[(row["task"], int(row["doc_id"]))] = float(value)
    return values


def mean_matches_score(values: dict, score: float, tolerance: float = 1e-9) -> bool:
    """True when the score is the plain mean of the per-example values.

    Only then is a bootstrap over examples a bootstrap of the reported score; corpus-level
    metrics (BLEU, SQuAD F1 aggregated over the corpus) fail this check.
    """
    if not values:
        return False
    return math.isclose(sum(values.values()) / len(values), score, abs_tol=tolerance)


def _metric_keys(row: dict) -> list[str]:
    return [k for k in row if "," in k and not k.split(",", 1)[0].endswith("_stderr")]


def _as_stderr(value) -> float | None:
    # lm-eval writes "N/A" when it could not compute a standard error.
    if isinstance(value, int | float) and math.isfinite(value):
        return float(value)
    return None
