"""Series over training steps read from a run's OUT/log.jsonl (schema: finetune.train).

Every series is a list aligned with ``steps``; a value the trainer did not log that step
(φ on a step without diagnostics) is None, so plots can leave gaps instead of inventing
values.
"""

from __future__ import annotations

import statistics
from collections.abc import Sequence
from pathlib import Path

from eval.atomic_io import read_jsonl

PHASES = ("backward", "aggregate", "optimizer", "step")


def read_log(path: str | Path) -> list[dict]:
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"{path} is missing: was the run trained with finetune.train?")
    return read_jsonl(path)


def series(rows: Sequence[dict]) -> dict:
    """Per-step series of one run.

    >>> rows = [{"step": 1, "loss": {"en": 2.0}, "phi": 0.5, "phi_p": 0.25,
    ...          "conflict": {"model.layers.0": [1, 4]}, "time": {"step": 0.1},
    ...          "grad_memory_bytes": 8},
    ...         {"step": 2, "loss": {"en": 1.0}, "phi": None, "phi_p": None,
    ...          "conflict": None, "time": {"step": 0.3}, "grad_memory_bytes": 8}]
    >>> s = series(rows)
    >>> s["loss"]["en"], s["phi"], s["conflict"]["model.layers.0"]
    ([2.0, 1.0], [0.5, None], [0.25, None])
    """
    steps = [row["step"] for row in rows]
    languages = list(dict.fromkeys(lang for row in rows for lang in row.get("loss") or {}))
    layers = list(dict.fromkeys(layer for row in rows for layer in row.get("conflict") or {}))
    return {
        "steps": steps,
        "loss": {lang: [(row.get("loss") or {}).get(lang) for row in rows] for lang in languages},
        "phi": [row.get("phi") for row in rows],
        "phi_p": [row.get("phi_p") for row in rows],
        "conflict": {layer: [_fraction((row.get("conflict") or {}).get(layer)) for row in rows]
                     for layer in layers},
    }


def cost(rows: Sequence[dict]) -> dict:
    """Median seconds per phase over the steps, and the peak gradient memory.

    The median, not the mean: the first step pays one-off costs (allocations, warm-up)
    that would otherwise weigh on a short run's average.

    >>> cost([{"time": {"step": 0.1, "backward": 0.05}, "grad_memory_bytes": 8},
    ...       {"time": {"step": 0.2, "backward": 0.06}, "grad_memory_bytes": 16},
    ...       {"time": {"step": 9.0, "backward": 0.07}, "grad_memory_bytes": 8}])
    {'time': {'backward': 0.06, 'step': 0.2}, 'grad_memory_bytes': 16}
    """
    phases = [p for p in PHASES if any(p in (row.get("time") or {}) for row in rows)]
    time = {p: statistics.median(row["time"][p] for row in rows if p in (row.get("time") or {}))
            for p in phases}
    memory = [row["grad_memory_bytes"] for row in rows if row.get("grad_memory_bytes") is not None]
    return {"time": time, "grad_memory_bytes": max(memory) if memory else None}


def mean_series(runs: Sequence[dict]) -> dict:
    """Element-wise mean over seeds of ``series`` results; gaps stay gaps.

    >>> a = {"steps": [1, 2], "loss": {"en": [2.0, 1.0]}, "phi": [1.0, None],
    ...      "phi_p": [1.0, None], "conflict": {}}
    >>> b = {"steps": [1, 2], "loss": {"en": [4.0, 3.0]}, "phi": [3.0, None],
    ...      "phi_p": [1.0, None], "conflict": {}}
    >>> mean_series([a, b])["loss"]["en"], mean_series([a, b])["phi"]
    ([3.0, 2.0], [2.0, None])
    """
    length = min(len(run["steps"]) for run in runs)
    first = runs[0]

    def mean(lines: list[list]) -> list:
        return [_mean([line[i] for line in lines]) for i in range(length)]

    return {
        "steps": first["steps"][:length],
        "loss": {lang: mean([r["loss"].get(lang, [None] * length) for r in runs])
                 for lang in first["loss"]},
        "phi": mean([r["phi"] for r in runs]),
        "phi_p": mean([r["phi_p"] for r in runs]),
        "conflict": {layer: mean([r["conflict"].get(layer, [None] * length) for r in runs])
                     for layer in first["conflict"]},
    }


def _fraction(pair) -> float | None:
    if not pair or not pair[1]:
        return None
    return pair[0] / pair[1]


def _mean(values: list) -> float | None:
    present = [v for v in values if v is not None]
    return sum(present) / len(present) if present else None
