"""Evaluate one checkpoint on a run plan, one lm-eval call per (benchmark, language) unit.

One ``simple_evaluate`` call per unit costs little (the model is loaded once and reused)
and buys isolation: a unit that fails is recorded and the others keep their results,
and a resumed run re-does only units without a raw file.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import asdict, dataclass
from pathlib import Path

from tqdm import tqdm

from eval.languages.selection import RunPlan
from eval.running.checkpoints import LoadedCheckpoint, as_lm_eval_model
from eval.running.hub import HubUnreachable, hub_failure_message, is_hub_failure
from eval.running.store import RunStore
from eval.running.summary import write_summary

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class EvalSettings:
    """How lm-eval evaluates each unit. ``batch_size`` may be "auto" (lm-eval finds the
    largest batch that fits; the command line's default on GPUs). ``system_instruction``,
    ``gen_kwargs`` ("temperature=0,max_gen_toks=256", for generation tasks only) and
    ``max_length`` (context cap, left-truncated) change scores; ``cache_requests`` (lm-eval
    keeps the built requests of a task, so a rerun skips dataset processing) and
    ``use_cache`` (an SQLite path prefix where lm-eval keeps model answers; one per
    checkpoint) only save time."""

    limit: int | float | None = None
    num_fewshot: int | None = None
    batch_size: int | str = 1
    apply_chat_template: bool = False
    seed: int = 1234
    # lm-eval bootstraps stderr only for metrics without a closed form (BLEU, F1...);
    # its default of 100000 resamples is slow on CPU for little gain in a report.
    stderr_bootstrap_iters: int = 1000
    system_instruction: str | None = None
    gen_kwargs: str | None = None
    max_length: int | None = None
    cache_requests: bool = False
    use_cache: str | None = None


def run_manifest(
    source: str,
    out_dir: str | Path,
    settings: EvalSettings,
    label: str | None = None,
    loading: Mapping[str, object] | None = None,
) -> dict:
    """The settings a run directory records: what was evaluated, and everything that changes
    its scores (``loading``: how the model was loaded, e.g. dtype and tokenizer). Built from
    the arguments alone, so a resumed run is checked before the model is loaded."""
    from lm_eval import __version__ as lm_eval_version

    return {
        "label": label or Path(out_dir).name,
        "checkpoint": source,
        "lm_eval_version": lm_eval_version,
        **asdict(settings),
        **dict(loading or {}),
    }


def check_resume(out_dir: str | Path, manifest: dict) -> None:
    """Refuse to resume ``out_dir`` under other settings (raises ``RunSettingsMismatch``)."""
    RunStore(out_dir).start(manifest)


def run_evaluation(
    checkpoint: LoadedCheckpoint,
    plan: RunPlan,
    task_manager,
    out_dir: str | Path,
    settings: EvalSettings,
    metric_preferences: Mapping[str, Sequence[str]],
    label: str | None = None,
    show_progress: bool = True,
    loading: Mapping[str, object] | None = None,
    on_summary: Callable[[dict], object] | None = None,
) -> dict:
    """Evaluate every unfinished unit of ``plan``; return the run's summary.

    ``on_summary`` (e.g. writing the report) runs on the final summary, inside the same
    check as the summary itself: under data parallelism the process that finishes last
    must be the one whose summary and report stay on disk."""
    from lm_eval import simple_evaluate

    store = RunStore(out_dir)
    store.start(run_manifest(checkpoint.source, out_dir, settings, label, loading))
    _report_uncovered(plan)
    rank, world = process_rank()
    mine = [unit for i, unit in enumerate(plan.units) if i % world == rank]
    todo = [unit for unit in mine if not store.is_done(unit)]
    pace = _Pace(len(todo), announce=tqdm.write if show_progress else log.info)
    pace.start(len(plan.units), len(mine) - len(todo), plan, rank, world)
    lm = (
        as_lm_eval_model(checkpoint, batch_size=settings.batch_size,
                         max_length=settings.max_length)
        if todo else None
    )
    progress = tqdm(todo, desc="units", unit="unit", disable=not show_progress)
    for unit in progress:
        progress.set_postfix_str(unit.unit_id)
        started = time.monotonic()
        try:
            output = simple_evaluate(
                model=lm,
                tasks=[unit.lm_eval_name],
                task_manager=task_manager,
                limit=settings.limit,
                num_fewshot=settings.num_fewshot,
                apply_chat_template=settings.apply_chat_template,
                system_instruction=settings.system_instruction,
                gen_kwargs=settings.gen_kwargs,
                cache_requests=settings.cache_requests,
                use_cache=settings.use_cache,
                log_samples=True,
                bootstrap_iters=settings.stderr_bootstrap_iters,
                random_seed=settings.seed,
                numpy_random_seed=settings.seed,
                torch_random_seed=settings.seed,
                fewshot_random_seed=settings.seed,
            )
            store.save_unit(unit, output)
            log.info("%s done in %.1fs", unit.unit_id, time.monotonic() - started)
            pace.unit_done(time.monotonic() - started)
        except Exception as err:  # one unit's failure must not cost the others
            store.save_failure(unit, err)
            log.error("%s failed: %s: %s", unit.unit_id, type(err).__name__, err)
            if is_hub_failure(err):
                # Every other unit would spend its own retries on the same missing hub.
                write_summary(store, plan, metric_preferences)
                raise HubUnreachable(
                    hub_failure_message(plan, unit.unit_id, err, offline=_offline())
                ) from err
        write_summary(store, plan, metric_preferences)
    return _settle(store, plan, metric_preferences, on_summary)


def _settle(store: RunStore, plan: RunPlan, metric_preferences, on_summary) -> dict:
    """Write the summary (and ``on_summary``'s files) until no unit file changed meanwhile.

    Another process of a data-parallel run may finish a unit while this one summarises;
    then it summarises again after its own write, and so does this one: whichever writes
    last has read every unit file."""
    while True:
        before = _unit_files(store)
        summary = write_summary(store, plan, metric_preferences)
        if on_summary is not None:
            on_summary(summary)
        if _unit_files(store) == before:
            return summary


def _unit_files(store: RunStore) -> set[tuple[str, int]]:
    files = set()
    for folder in ("raw", "failures"):
        for path in (store.root / folder).glob("*.json"):
            try:
                files.add((str(path), path.stat().st_mtime_ns))
            except FileNotFoundError:  # a failure file removed by a retry that succeeded
                continue
    return files


def process_rank() -> tuple[int, int]:
    """(rank, world size) of this process under ``accelerate launch`` or ``torchrun``.

    Data parallelism is over units: each process loads the model once on its own GPU and
    evaluates every world-th unit of the plan (units are independent lm-eval calls, so
    no collective is needed); all write into the same run directory, whose files are
    per unit and atomic."""
    import os

    world = int(os.environ.get("WORLD_SIZE", "1"))
    rank = int(os.environ.get("RANK", os.environ.get("LOCAL_RANK", "0")))
    return (rank, world) if 0 <= rank < world else (0, 1)


class _Pace:
    """Says how much work a run has before it starts, and a rough time once the first
    unit has been timed (units of one plan take roughly alike; tqdm's ETA follows)."""

    def __init__(self, todo: int, announce) -> None:
        self.todo, self.announce, self.timed = todo, announce, []

    def start(self, total: int, done: int, plan: RunPlan, rank: int, world: int) -> None:
        share = f" (process {rank} of {world}: every {world}th unit)" if world > 1 else ""
        self.announce(
            f"{self.todo} units to evaluate{share}, {done} already done, of {total} in "
            f"the plan ({len(plan.benchmarks)} benchmarks, "
            f"{len(plan.seen) + len(plan.unseen)} languages); a rough time follows the "
            "first unit"
        )

    def unit_done(self, seconds: float) -> None:
        self.timed.append(seconds)
        left = self.todo - len(self.timed)
        if len(self.timed) == 1 and left > 0:
            self.announce(
                f"first unit took {_duration(seconds)}; roughly {_duration(seconds * left)} "
                f"for the other {left}"
            )


def _duration(seconds: float) -> str:
    if seconds < 90:
        return f"{seconds:.0f} s"
    if seconds < 5400:
        return f"{seconds / 60:.0f} min"
    return f"{seconds / 3600:.1f} h"


def _offline() -> bool:
    import os

    return os.environ.get("HF_DATASETS_OFFLINE") == "1" or os.environ.get("HF_HUB_OFFLINE") == "1"


def _report_uncovered(plan: RunPlan) -> None:
    for split, languages in (("seen", plan.uncovered_seen), ("unseen", plan.uncovered_unseen)):
        if languages:
            log.warning(
                "%s languages without coverage in %s: %s",
                split,
                ", ".join(plan.benchmarks),
                ", ".join(languages),
            )
