"""Compare several finished runs against a baseline run: deltas and their significance."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from eval.atomic_io import read_json, read_jsonl
from eval.comparing.bootstrap import resample_means, significance, unit_rng
from eval.running.aggregate import aggregate
from eval.running.scores import mean_matches_score, per_example_values
from eval.running.summary import SUMMARY_FORMAT
from eval.suggestions import UnknownNameError

COMPARISON_FORMAT = "refmoo-eval-comparison/1"


@dataclass
class LoadedRun:
    root: Path
    summary: dict

    @property
    def label(self) -> str:
        return self.summary["label"]

    def units(self) -> dict[str, dict]:
        return {u["unit"]: u for u in self.summary["units"]}

    def example_values(self, unit: dict) -> dict[tuple[str, int], float]:
        rows = read_jsonl(self.root / unit["samples_file"])
        return per_example_values(rows, unit["metric"])


def load_run(run_dir: str | Path) -> LoadedRun:
    root = Path(run_dir)
    path = root / "summary.json"
    if not path.is_file():
        raise FileNotFoundError(f"{root} has no summary.json; is it an eval run directory?")
    summary = read_json(path)
    if summary.get("format") != SUMMARY_FORMAT:
        raise ValueError(f"{path} is not a {SUMMARY_FORMAT} summary")
    return LoadedRun(root=root, summary=summary)


# Settings under which two runs' scores are not comparable.
COMPARED_SETTINGS = ("num_fewshot", "limit", "apply_chat_template", "dtype",
                     "system_instruction", "gen_kwargs", "max_length")


class SettingsMismatch(ValueError):
    """Runs evaluated under different settings; ``allow_mismatch=True`` compares anyway."""


def settings_mismatches(runs: Sequence[LoadedRun], baseline: LoadedRun) -> list[str]:
    """One line per setting (and benchmark list) in which a run differs from the baseline."""
    problems = []
    for run in runs:
        if run is baseline:
            continue
        for key in COMPARED_SETTINGS:
            mine, theirs = run.summary["settings"].get(key), baseline.summary["settings"].get(key)
            if mine != theirs:
                problems.append(f"{run.label!r} has {key}={mine!r}, "
                                f"{baseline.label!r} has {key}={theirs!r}")
        if sorted(run.summary["benchmarks"]) != sorted(baseline.summary["benchmarks"]):
            problems.append(f"{run.label!r} ran benchmarks {run.summary['benchmarks']}, "
                            f"{baseline.label!r} ran {baseline.summary['benchmarks']}")
    return problems


def compare_runs(
    runs: Sequence[LoadedRun], baseline: str, iterations: int = 10_000, seed: int = 0,
    *, allow_mismatch: bool = False,
) -> dict:
    """Deltas of every run against ``baseline`` (a run label), with paired bootstrap tests.

    Runs evaluated with other settings (few-shot count, limit, chat template, dtype,
    benchmark list) are refused unless ``allow_mismatch``; then the comparison lists the
    mismatches and the report shows them in a banner."""
    by_label = {run.label: run for run in runs}
    if len(by_label) != len(runs):
        raise ValueError(f"run labels must be distinct, got {[r.label for r in runs]}")
    if baseline not in by_label:
        raise UnknownNameError("baseline run", baseline, by_label,
                               note=f"the runs are labelled {', '.join(by_label)}")
    base = by_label[baseline]
    mismatches = settings_mismatches(runs, base)
    if mismatches and not allow_mismatch:
        raise SettingsMismatch(
            "the runs were evaluated under different settings; their scores are not "
            "comparable:\n  " + "\n  ".join(mismatches)
            + "\n(compare anyway with --allow-mismatch)")
    seen, unseen = base.summary["seen"], base.summary["unseen"]
    for run in runs:
        if (run.summary["seen"], run.summary["unseen"]) != (seen, unseen):
            raise ValueError(
                f"run {run.label!r} splits languages differently from {baseline!r}; "
                "seen/unseen averages would not be comparable"
            )
    deltas = {
        run.label: _compare_pair(base, run, seen, unseen, iterations, seed)
        for run in runs
        if run.label != baseline
    }
    return {
        "format": COMPARISON_FORMAT,
        "baseline": baseline,
        "runs": [run.label for run in runs],
        "checkpoints": {run.label: run.summary["checkpoint"] for run in runs},
        "settings": {run.label: run.summary["settings"] for run in runs},
        "mismatches": mismatches,
        "seen": seen,
        "unseen": unseen,
        "scores": {
            run.label: {
                "aggregates": run.summary["aggregates"],
                "units": {u["unit"]: u["score"] for u in run.summary["units"]},
            }
            for run in runs
        },
        "deltas": deltas,
        "bootstrap": {
            "iterations": iterations,
            "seed": seed,
            "method": "paired bootstrap over examples, units resampled independently; "
            "percentile interval; p = (1 + #|rep - obs| >= |obs|) / (1 + B)",
        },
    }


def _compare_pair(base: LoadedRun, other: LoadedRun, seen, unseen, iterations, seed) -> dict:
    base_units, other_units = base.units(), other.units()
    common = sorted(set(base_units) & set(other_units))
    observed, replicates, per_unit, held_out = {}, {}, {}, {}
    for unit_id in common:
        b, o = base_units[unit_id], other_units[unit_id]
        key = (b["benchmark"], b["language"])
        observed[key] = o["score"] - b["score"]
        differences, reason = _paired_differences(base, b, other, o)
        if differences is None:
            replicates[key] = None
            held_out[unit_id] = reason
            per_unit[unit_id] = significance(observed[key], None)
            continue
        replicates[key] = resample_means(differences, iterations, unit_rng(seed, unit_id))
        per_unit[unit_id] = {
            **significance(observed[key], replicates[key]),
            "n_examples": int(differences.size),
        }
    stats = _zip_trees(aggregate(observed, seen, unseen), aggregate(replicates, seen, unseen))
    on_common = {
        label: aggregate({(u["benchmark"], u["language"]): u["score"]
                          for unit_id, u in units.items() if unit_id in common}, seen, unseen)
        for label, units in ((base.label, base_units), (other.label, other_units))
    }
    return {
        **stats,
        # The scores each Δ is the difference of: both runs averaged on the common units.
        "common_units": common,
        "on_common_units": on_common,
        "per_unit": per_unit,
        "not_bootstrapped": held_out,
        "only_in_baseline": sorted(set(base_units) - set(other_units)),
        "only_in_run": sorted(set(other_units) - set(base_units)),
    }


def _paired_differences(base: LoadedRun, b: dict, other: LoadedRun, o: dict):
    """Per-example candidate-minus-baseline values, or (None, why not)."""
    if b["metric"] != o["metric"]:
        return None, f"metrics differ ({b['metric']} vs {o['metric']})"
    base_values, other_values = base.example_values(b), other.example_values(o)
    if not (
        mean_matches_score(base_values, b["score"]) and mean_matches_score(other_values, o["score"])
    ):
        return None, f"{b['metric']} is not a mean over examples"
    if base_values.keys() != other_values.keys():
        return None, "the runs scored different examples"
    keys = sorted(base_values)
    return np.array([other_values[k] - base_values[k] for k in keys]), None


def _zip_trees(observed, replicates):
    if isinstance(observed, dict):
        return {k: _zip_trees(observed[k], replicates.get(k)) for k in observed}
    if observed is None:
        return None
    return significance(observed, replicates)
