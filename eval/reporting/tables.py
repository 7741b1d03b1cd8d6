"""Flat tables of runs and comparisons, for CSV export (pandas, R, a spreadsheet).

Every row is one number with what it is a number of, so a table of the paper can be
pivoted from the file without reading JSON: ``scores.csv`` holds each run's per-unit
scores and averages, ``deltas.csv`` each delta against the baseline with its bootstrap
interval and p-value.
"""

from __future__ import annotations

import csv
import io
from collections.abc import Iterable, Sequence
from pathlib import Path

from eval.atomic_io import write_text_atomic

SCORE_COLUMNS = ("run", "level", "benchmark", "language", "split", "metric", "score",
                 "stderr", "n")
DELTA_COLUMNS = ("run", "baseline", "level", "benchmark", "language", "split", "delta",
                 "ci_low", "ci_high", "p_value", "n_examples")


def score_rows(summaries: Sequence[dict]) -> list[dict]:
    """One row per unit, per-language, per-benchmark and split average of every run."""
    rows = []
    for summary in summaries:
        run = summary["label"]
        split_of = {lang: "seen" for lang in summary["seen"]}
        split_of.update({lang: "unseen" for lang in summary["unseen"]})
        for unit in summary["units"]:
            rows.append({"run": run, "level": "unit", "benchmark": unit["benchmark"],
                         "language": unit["language"], "split": unit["split"],
                         "metric": unit["metric"], "score": unit["score"],
                         "stderr": unit["stderr"], "n": unit["n"]})
        agg, err = summary["aggregates"], summary["aggregates_stderr"]
        for lang, score in agg["per_language"].items():
            rows.append({"run": run, "level": "language", "language": lang,
                         "split": split_of.get(lang), "score": score,
                         "stderr": err["per_language"].get(lang)})
        for bench, by_split in agg["per_benchmark"].items():
            for split, score in by_split.items():
                rows.append({"run": run, "level": "benchmark", "benchmark": bench,
                             "split": split, "score": score})
        for split in ("seen", "unseen"):
            rows.append({"run": run, "level": "split", "split": split, "score": agg[split],
                         "stderr": err[split]})
    return rows


def delta_rows(comparison: dict) -> list[dict]:
    """One row per unit, language, benchmark and split delta of every run vs the baseline."""
    rows = []
    base = comparison["baseline"]
    split_of = {lang: "seen" for lang in comparison["seen"]}
    split_of.update({lang: "unseen" for lang in comparison["unseen"]})
    def row(run, level, stats, **where):
        return {"run": run, "baseline": base, "level": level, **where,
                **{k: stats.get(k) for k in ("delta", "ci_low", "ci_high", "p_value",
                                             "n_examples")}}

    for run, delta in comparison["deltas"].items():
        for unit_id, stats in delta["per_unit"].items():
            bench, lang = unit_id.split("/", 1)
            rows.append(row(run, "unit", stats, benchmark=bench, language=lang,
                            split=split_of.get(lang)))
        for lang, stats in delta["per_language"].items():
            if stats:
                rows.append(row(run, "language", stats, language=lang, split=split_of.get(lang)))
        for bench, by_split in delta["per_benchmark"].items():
            for split, stats in by_split.items():
                if stats:
                    rows.append(row(run, "benchmark", stats, benchmark=bench, split=split))
        for split in ("seen", "unseen"):
            if delta[split]:
                rows.append(row(run, "split", delta[split], split=split))
    return rows


def write_csv(path: str | Path, rows: Iterable[dict], columns: Sequence[str]) -> Path:
    buffer = io.StringIO()
    writer = csv.DictWriter(buffer, fieldnames=list(columns), lineterminator="\n")
    writer.writeheader()
    for row in rows:
        writer.writerow({k: "" if row.get(k) is None else row[k] for k in columns})
    return write_text_atomic(path, buffer.getvalue())
