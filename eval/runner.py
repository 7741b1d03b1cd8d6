"""Evaluate one checkpoint on a run plan, one lm-eval call per (benchmark, language) unit.

One ``simple_evaluate`` call per unit costs little (the model is loaded once and reused)
and buys isolation: a unit that fails is recorded and the others keep their results,
and a resumed run re-does only units without a raw file.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass
from pathlib import Path

from tqdm import tqdm

from eval.checkpoints import LoadedCheckpoint, as_lm_eval_model
from eval.hub import HubUnreachable, hub_failure_message, is_hub_failure
from eval.run_store import RunStore
from eval.selection import RunPlan
from eval.summary import write_summary

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class EvalSettings:
    limit: int | float | None = None
    num_fewshot: int | None = None
    batch_size: int | str = 1
    apply_chat_template: bool = False
    seed: int = 1234
    # lm-eval bootstraps stderr only for metrics without a closed form (BLEU, F1...);
    # its default of 100000 resamples is slow on CPU for little gain in a report.
    stderr_bootstrap_iters: int = 1000


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
) -> dict:
    """Evaluate every unfinished unit of ``plan``; return the run's summary."""
    from lm_eval import simple_evaluate

    store = RunStore(out_dir)
    store.start(run_manifest(checkpoint.source, out_dir, settings, label, loading))
    _report_uncovered(plan)
    todo = [unit for unit in plan.units if not store.is_done(unit)]
    log.info(
        "%d of %d units to evaluate (%d already done)",
        len(todo),
        len(plan.units),
        len(plan.units) - len(todo),
    )
    lm = as_lm_eval_model(checkpoint, batch_size=settings.batch_size) if todo else None
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
                log_samples=True,
                bootstrap_iters=settings.stderr_bootstrap_iters,
                random_seed=settings.seed,
                numpy_random_seed=settings.seed,
                torch_random_seed=settings.seed,
                fewshot_random_seed=settings.seed,
            )
            store.save_unit(unit, output)
            log.info("%s done in %.1fs", unit.unit_id, time.monotonic() - started)
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
    return write_summary(store, plan, metric_preferences)


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
