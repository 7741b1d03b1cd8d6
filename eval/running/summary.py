"""Build a run's summary.json from its raw lm-eval files (never from in-memory state).

Rebuilding from disk after every unit means the summary of an interrupted or resumed run
describes exactly the units whose raw output exists.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

from eval.atomic_io import write_json_atomic
from eval.languages.selection import RunPlan
from eval.running.aggregate import aggregate, aggregate_stderr
from eval.running.scores import unit_score
from eval.running.store import RunStore

SUMMARY_FORMAT = "refmoo-eval-run/1"


def build_summary(
    store: RunStore, plan: RunPlan, metric_preferences: Mapping[str, Sequence[str]]
) -> dict:
    manifest = store.manifest()
    units, failures, pending = [], [], []
    for unit in plan.units:
        if store.is_done(unit):
            raw = store.load_raw(unit)
            score = unit_score(raw, unit.lm_eval_name, metric_preferences.get(unit.benchmark, ()))
            units.append(
                {
                    "unit": unit.unit_id,
                    "benchmark": unit.benchmark,
                    "language": unit.language,
                    "split": plan.split_of(unit.language),
                    "lm_eval_task": unit.lm_eval_name,
                    "metric": score.metric,
                    "score": score.score,
                    "stderr": score.stderr,
                    "n": score.n,
                    "higher_is_better": score.higher_is_better,
                    "raw_file": str(store.raw_path(unit).relative_to(store.root)),
                    "samples_file": str(store.samples_path(unit).relative_to(store.root)),
                }
            )
        elif (failure := store.load_failure(unit)) is not None:
            failures.append({"unit": unit.unit_id, "error": failure["error"]})
        else:
            pending.append(unit.unit_id)

    # A lower-is-better metric (perplexity) cannot be averaged with accuracies.
    comparable = [u for u in units if u["higher_is_better"]]
    keys = {(u["benchmark"], u["language"]): u for u in comparable}
    aggregates = aggregate({k: u["score"] for k, u in keys.items()}, plan.seen, plan.unseen)
    stderrs = aggregate_stderr({k: u["stderr"] for k, u in keys.items()}, plan.seen, plan.unseen)
    return {
        "format": SUMMARY_FORMAT,
        "label": manifest["label"],
        "checkpoint": manifest["checkpoint"],
        "settings": {k: v for k, v in manifest.items() if k not in ("label", "checkpoint")},
        "benchmarks": list(plan.benchmarks),
        "seen": list(plan.seen),
        "unseen": list(plan.unseen),
        "uncovered": {"seen": list(plan.uncovered_seen), "unseen": list(plan.uncovered_unseen)},
        "units": units,
        "failures": failures,
        "pending": pending,
        "aggregates": aggregates,
        "aggregates_stderr": stderrs,
    }


def write_summary(
    store: RunStore, plan: RunPlan, metric_preferences: Mapping[str, Sequence[str]]
) -> dict:
    summary = build_summary(store, plan, metric_preferences)
    write_json_atomic(store.summary_path, summary)
    return summary
