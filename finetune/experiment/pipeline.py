"""Run an experiment: prepare once, then train, evaluate and measure every method × seed.

Order of work, each step skipped when its marker says it is finished (``layout.py``):

1. check everything that can be checked without work: the config against the trainer's
   and evaluator's settings, every run's TrainConfig, the languages against the tasks;
2. ``prepare`` the base model and data (cached by content: a no-op the second time);
3. evaluate the base model once, and measure its separability by layer;
4. for each method and seed: ``train`` (in-process, engine single), evaluate the final
   checkpoint on seen and unseen languages, measure its separability;
5. compare with the baseline (paired bootstrap), write results.json, report.md, plots.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from pathlib import Path

from eval.atomic_io import read_json, write_json_atomic
from finetune.data.corpus import check_languages
from finetune.errors import ConfigError, FinetuneError
from finetune.experiment.config import ExperimentConfig
from finetune.experiment.layout import BASE, Layout
from finetune.experiment.parallel import parallel_sentences
from finetune.experiment.progress import StepProgress


class EvaluationError(FinetuneError):
    """An evaluation left units failed or unfinished; a rerun retries only those."""


@dataclass(frozen=True)
class Run:
    """One training run of the experiment: a method of the config with one seed."""

    method: str
    seed: int

    @property
    def label(self) -> str:
        return f"{self.method}-seed{self.seed}"


def runs_of(config: ExperimentConfig) -> list[Run]:
    """Seed-major order, so that a stopped experiment has every method for the first seeds."""
    return [Run(m.name, seed) for seed in config.seeds for m in config.methods]


def run_experiment(config: ExperimentConfig, out: str | Path, *,
                   prepare_dir: str | Path | None = None, progress: bool = True) -> Path:
    """Run (or resume) ``config`` in ``out``; returns the path of report.md.

    ``prepare_dir`` shares one ``prepare`` cache between experiments (default:
    ``out/prepared``); prepare is cached by content, so a directory prepared with the same
    languages, seed and settings is reused as it is.
    """
    layout = Layout(Path(out).resolve())
    runs = runs_of(config)
    # The embedded corpus decides which languages exist at all: name that gap before the
    # separability corpus reports it in its own terms.
    check_languages(config.pretrain)
    parallel = parallel_sentences(config.seen + config.unseen, config.separability)
    layout.claim(config.as_dict())

    steps = StepProgress(3 + 3 * len(runs) + 1, enabled=progress)
    steps.start("prepare the base model and data")
    prepared = _prepare(config, Path(prepare_dir) if prepare_dir else layout.root / "prepared",
                        progress)
    _check_languages_are_covered(config, prepared)

    _evaluate(config, layout, prepared, BASE, None, prepared.base, steps, progress)
    _separability(config, layout, BASE, None, prepared.base, parallel, steps)
    for run in runs:
        train_config = _train_config(config, layout, run, prepared.base, prepared.data)
        final = _train(layout, run, train_config, steps, progress)
        _evaluate(config, layout, prepared, run.method, run.seed, final, steps, progress)
        _separability(config, layout, run.method, run.seed, final, parallel, steps)

    steps.start("compare with the baseline, write results.json and report.md")
    from finetune.experiment.report import write_report
    from finetune.experiment.results import build_results

    results = build_results(config, layout, prepared)
    write_json_atomic(layout.results_path, results)
    return write_report(results, layout)


def _train_config(config: ExperimentConfig, layout: Layout, run: Run, base: Path, data: Path):
    from finetune.train import TrainConfig

    spec = config.method(run.method)
    return TrainConfig(
        model=str(base), data=str(data), languages=tuple(config.seen),
        out=str(layout.run_dir(run.method, run.seed)), method=spec.method,
        aggregator=spec.aggregator, aggregator_kwargs=dict(spec.aggregator_kwargs),
        partition=spec.partition, seed=run.seed, engine="single", **config.train)


def _prepare(config: ExperimentConfig, directory: Path, progress: bool):
    from finetune.model import PrepareSettings, prepare

    settings = PrepareSettings.from_mapping(config.prepare)
    return prepare(directory, languages=config.pretrain, seed=config.prepare_seed,
                   settings=settings, progress=progress)


def _check_languages_are_covered(config: ExperimentConfig, prepared) -> None:
    """Every seen and unseen language must be scored, or the averages would silently shrink."""
    from eval.languages.registry import build_registry, load_task_manager
    from eval.languages.selection import plan_run

    registry = build_registry(load_task_manager([str(prepared.tasks)], include_defaults=False))
    try:
        plan = plan_run(registry, config.seen, config.unseen, prepared.benchmarks)
    except ValueError as error:
        raise ConfigError(f"{config.source}: {error}") from None
    uncovered = plan.uncovered_seen + plan.uncovered_unseen
    if uncovered:
        raise ConfigError(f"{config.source}: no task of {list(prepared.benchmarks)} in "
                          f"{prepared.tasks} covers {list(uncovered)}")


def _train(layout: Layout, run: Run, train_config, steps: StepProgress, progress: bool) -> Path:
    step = f"train/{run.method}/seed-{run.seed}"
    if layout.is_done(step):
        steps.skip(f"train {run.method} seed {run.seed}")
        return Path(layout.done_payload(step)["final"])
    steps.start(f"train {run.method} seed {run.seed} ({train_config.steps} steps)")
    from finetune.train import train

    started = time.monotonic()
    result = train(train_config, progress=progress)
    layout.mark_done(step, {"final": str(Path(result.final).resolve()),
                            "seconds": time.monotonic() - started})
    return Path(result.final)


def _evaluate(config: ExperimentConfig, layout: Layout, prepared, method: str,
              seed: int | None, checkpoint: Path, steps: StepProgress, progress: bool) -> None:
    step = f"eval/{method}" + ("" if seed is None else f"/seed-{seed}")
    what = f"evaluate {method}" + ("" if seed is None else f" seed {seed}")
    if layout.is_done(step):
        steps.skip(what)
        return
    steps.start(what)
    from eval.api import EvalSettings, evaluate_checkpoint

    out_dir = layout.eval_dir(method, seed)
    started = time.monotonic()
    summary = evaluate_checkpoint(
        checkpoint, seen=config.seen, unseen=config.unseen, benchmarks=prepared.benchmarks,
        out_dir=out_dir, label=method if seed is None else Run(method, seed).label,
        settings=EvalSettings(**config.eval), include_paths=[prepared.tasks],
        include_defaults=False, show_progress=progress)
    if summary["failures"] or summary["pending"]:
        failed = [f["unit"] for f in summary["failures"]] + summary["pending"]
        raise EvaluationError(f"evaluating {checkpoint} left units {failed} unfinished; see "
                              f"{out_dir}/failures/ and run the same command again to retry")
    layout.mark_done(step, {"eval_dir": str(out_dir), "seconds": time.monotonic() - started})


def _separability(config: ExperimentConfig, layout: Layout, method: str, seed: int | None,
                  checkpoint: Path, parallel: dict, steps: StepProgress) -> None:
    step = f"separability/{method}" + ("" if seed is None else f"/seed-{seed}")
    what = f"separability of {method}" + ("" if seed is None else f" seed {seed}")
    if layout.is_done(step):
        steps.skip(what)
        return
    steps.start(what)
    from eval.api import analyse_checkpoints
    from eval.running.checkpoints import load_checkpoint
    from eval.separability.measures import DEFAULT_THRESHOLD

    out_dir = layout.separability_dir(method, seed)
    label = method if seed is None else Run(method, seed).label
    analyse_checkpoints({label: lambda: load_checkpoint(checkpoint)}, parallel, out_dir,
                        threshold=float(config.separability.get("threshold", DEFAULT_THRESHOLD)))
    layout.mark_done(step, {"separability": str(out_dir / "separability.json")})


def load_separability(layout: Layout, method: str, seed: int | None) -> dict:
    """The per-layer separability result of one checkpoint."""
    payload = read_json(layout.separability_dir(method, seed) / "separability.json")
    return next(iter(payload["results"].values()))
