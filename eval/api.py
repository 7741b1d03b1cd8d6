"""One call for a training script or notebook: evaluate a checkpoint and write its report."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

from eval.checkpoints import CheckpointError, checkpoint_source, from_objects, load_checkpoint
from eval.registry import build_registry, load_task_manager
from eval.reports import write_run_report
from eval.runner import EvalSettings, check_resume, run_evaluation, run_manifest
from eval.selection import EVERY_OTHER, plan_run


def evaluate_checkpoint(
    checkpoint: str | Path | None = None,
    *,
    model: Any = None,
    tokenizer: Any = None,
    seen: Sequence[str],
    unseen: Sequence[str] | str = EVERY_OTHER,
    benchmarks: Sequence[str] | None = None,
    out_dir: str | Path,
    label: str | None = None,
    settings: EvalSettings | None = None,
    device: str = "cpu",
    dtype: str = "auto",
    include_paths: Sequence[str | Path] = (),
    include_defaults: bool = True,
    show_progress: bool = True,
) -> dict:
    """Evaluate an HF path (``checkpoint``) or an in-memory ``model`` + ``tokenizer``.

    With a path, ``tokenizer`` may name a tokenizer directory stored apart from the model.

    Names are checked before the model is loaded, so a typo fails in seconds. Returns the
    run summary (also in ``out_dir/summary.json``, with ``report.md`` and plots).
    """
    if (checkpoint is None) == (model is None):
        raise CheckpointError("give either a checkpoint path or an in-memory model, not both")
    task_manager = load_task_manager([str(p) for p in include_paths], include_defaults)
    registry = build_registry(task_manager)
    plan = plan_run(registry, seen, unseen, benchmarks)
    settings = settings or EvalSettings()
    if model is not None:
        source = label or "<in-memory>"
        loading = {"dtype": str(getattr(model, "dtype", "unknown")), "tokenizer": None}
    else:
        if tokenizer is not None and not isinstance(tokenizer, str | Path):
            raise CheckpointError("with a checkpoint path, tokenizer must be a path too")
        tokenizer_path = None if tokenizer is None else str(tokenizer)
        source = checkpoint_source(checkpoint)
        loading = {"dtype": dtype, "tokenizer": tokenizer_path}
    # A resumed run with other settings fails here, before minutes of weight loading.
    check_resume(out_dir, run_manifest(source, out_dir, settings, label, loading))
    if model is not None:
        loaded = from_objects(model, tokenizer, source=source)
    else:
        loaded = load_checkpoint(checkpoint, device=device, dtype=dtype, tokenizer=tokenizer_path)
    summary = run_evaluation(
        loaded,
        plan,
        task_manager,
        out_dir,
        settings,
        registry.metric_preferences,
        label=label,
        show_progress=show_progress,
        loading=loading,
    )
    write_run_report(out_dir, summary)
    return summary
