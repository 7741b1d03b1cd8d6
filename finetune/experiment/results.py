"""results.json: every number of the experiment, rebuilt from the files its steps wrote.

Nothing comes from memory: scores from eval's run summaries, intervals from their logged
samples, curves and costs from the trainer's log.jsonl, separability from its JSON. So
results.json is the same whether the experiment ran in one go or was resumed, and every
number in it can be recomputed from the run directories it names.
"""

from __future__ import annotations

import statistics

from eval.atomic_io import read_json
from eval.comparing.compare import load_run
from finetune.experiment.config import ExperimentConfig
from finetune.experiment.layout import BASE, Layout
from finetune.experiment.logs import cost, read_log
from finetune.experiment.pipeline import load_separability, runs_of
from finetune.experiment.significance import paired_intervals, score_intervals

RESULTS_FORMAT = "refmoo-finetune-experiment/1"
SEPARABILITY_MEASURES = ("silhouette", "probe_accuracy", "language_specific_fraction")


def build_results(config: ExperimentConfig, layout: Layout, prepared) -> dict:
    base_run = load_run(layout.eval_dir(BASE, None))
    runs = [_run_entry(layout, run.method, run.seed) for run in runs_of(config)]
    loaded = {(run.method, run.seed): load_run(layout.eval_dir(run.method, run.seed))
              for run in runs_of(config)}
    baseline = [loaded[(config.baseline, seed)] for seed in config.seeds]
    methods = {}
    for spec in config.methods:
        mine = [loaded[(spec.name, seed)] for seed in config.seeds]
        scores = score_intervals(mine, config.bootstrap_iterations, config.bootstrap_seed,
                                 config.confidence)
        versus = None
        if spec.name != config.baseline:
            versus = paired_intervals(mine, baseline, config.bootstrap_iterations,
                                      config.bootstrap_seed, config.confidence)
        own = [r for r in runs if r["method"] == spec.name]
        methods[spec.name] = {
            "method": spec.method,
            "aggregator": None if spec.method == "standard" else spec.aggregator,
            "partition": spec.partition if spec.method == "bucket" else None,
            "description": spec.describe(),
            "seeds": list(config.seeds),
            "seen": _mean([r["seen"] for r in own]),
            "unseen": _mean([r["unseen"] for r in own]),
            "seen_ci": _interval(scores["seen"]),
            "unseen_ci": _interval(scores["unseen"]),
            "seen_over_seeds": _spread([r["seen"] for r in own]),
            "unseen_over_seeds": _spread([r["unseen"] for r in own]),
            "per_language": {lang: stats["delta"]
                             for lang, stats in scores["per_language"].items()},
            "per_language_ci": {lang: _interval(stats)
                                for lang, stats in scores["per_language"].items()},
            "vs_baseline": None if versus is None else {
                "seen": versus["seen"], "unseen": versus["unseen"],
                "per_language": versus["per_language"],
                "not_bootstrapped": versus["not_bootstrapped"]},
            "time": _median_time([r["time"] for r in own]),
            "grad_memory_bytes": max((r["grad_memory_bytes"] or 0) for r in own) or None,
            "separability": _mean_layers([r["separability"] for r in own]),
        }
    base_summary = base_run.summary
    return {
        "format": RESULTS_FORMAT,
        "config": config.name,
        "settings": config.as_dict(),
        "languages": {"pretrain": list(config.pretrain), "seen": list(config.seen),
                      "unseen": list(config.unseen)},
        "benchmarks": list(base_summary["benchmarks"]),
        "baseline": config.baseline,
        "intervals": (
            f"{config.confidence:.0%} percentile intervals of a bootstrap over evaluation "
            f"examples ({config.bootstrap_iterations} resamples, seed "
            f"{config.bootstrap_seed}): seen_ci/unseen_ci for the seed-averaged score; "
            f"vs_baseline for the paired difference to {config.baseline!r} (seed s paired "
            "with seed s, each example with itself; eval.comparing.bootstrap). They cover "
            "the finite evaluation set, not training randomness: *_over_seeds gives the "
            "spread of the per-seed scores."),
        "base": {
            "checkpoint": str(prepared.base),
            "eval_dir": str(layout.eval_dir(BASE, None)),
            "seen": base_summary["aggregates"]["seen"],
            "unseen": base_summary["aggregates"]["unseen"],
            "per_language": base_summary["aggregates"]["per_language"],
            "separability": _layers(load_separability(layout, BASE, None)),
        },
        "runs": runs,
        "methods": methods,
    }


def _run_entry(layout: Layout, method: str, seed: int) -> dict:
    run_dir = layout.run_dir(method, seed)
    summary = read_json(layout.eval_dir(method, seed) / "summary.json")
    train_step = layout.done_payload(f"train/{method}/seed-{seed}")
    log = read_log(run_dir / "log.jsonl")
    spent = cost(log)
    return {
        "method": method,
        "seed": seed,
        "seen": summary["aggregates"]["seen"],
        "unseen": summary["aggregates"]["unseen"],
        "per_language": summary["aggregates"]["per_language"],
        "checkpoint": train_step["final"],
        "train_dir": str(run_dir),
        "eval_dir": str(layout.eval_dir(method, seed)),
        "steps": len(log),
        "final_loss": log[-1]["loss"] if log else None,
        "train_seconds": train_step.get("seconds"),
        "time": spent["time"],
        "grad_memory_bytes": spent["grad_memory_bytes"],
        "separability": _layers(load_separability(layout, method, seed)),
    }


def _layers(result: dict) -> list[dict]:
    return [{"layer": row["layer"], **{k: row[k] for k in SEPARABILITY_MEASURES}}
            for row in result["layers"]]


def _mean_layers(per_seed: list[list[dict]]) -> list[dict]:
    return [{"layer": rows[0]["layer"],
             **{k: _mean([row[k] for row in rows]) for k in SEPARABILITY_MEASURES}}
            for rows in zip(*per_seed, strict=True)]


def _median_time(per_seed: list[dict]) -> dict:
    phases = list(dict.fromkeys(p for t in per_seed for p in t))
    return {p: statistics.median(t[p] for t in per_seed if p in t) for p in phases}


def _interval(stats: dict | None) -> list[float] | None:
    if not stats or stats["ci_low"] is None:
        return None
    return [stats["ci_low"], stats["ci_high"]]


def _spread(values: list) -> dict:
    present = [v for v in values if v is not None]
    return {"min": min(present, default=None), "max": max(present, default=None),
            "std": statistics.stdev(present) if len(present) > 1 else None}


def _mean(values: list):
    present = [v for v in values if v is not None]
    return sum(present) / len(present) if len(present) == len(values) and present else None
