"""One call per job for a training script or notebook: evaluate a checkpoint, or measure
language separability, and write the report."""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Any

from eval.languages.registry import build_registry, load_task_manager
from eval.languages.selection import EVERY_OTHER, plan_run
from eval.reporting.write import write_run_report, write_separability_report
from eval.running.checkpoints import (
    CheckpointError,
    LoadedCheckpoint,
    adapter_source,
    checkpoint_source,
    from_objects,
    load_checkpoint,
)
from eval.running.runner import (
    EvalSettings,
    check_resume,
    process_rank,
    run_evaluation,
    run_manifest,
)

# The stable surface for training scripts and notebooks; the subpackages may move.
__all__ = ["EvalSettings", "analyse_checkpoints", "evaluate_checkpoint"]


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
    revision: str | None = None,
    trust_remote_code: bool = False,
    peft: str | Path | None = None,
) -> dict:
    """Evaluate an HF path (``checkpoint``) or an in-memory ``model`` + ``tokenizer``.

    With a path, ``tokenizer`` may name a tokenizer directory stored apart from the model,
    ``revision`` a hub branch, tag or commit, ``peft`` a PEFT adapter directory applied on
    top; ``trust_remote_code`` lets transformers run the checkpoint's own model code.
    Under ``accelerate launch`` / ``torchrun`` each process takes every world-th unit on
    its own GPU (``device="cuda"`` becomes ``cuda:<local rank>``).

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
        if revision is not None or peft is not None:
            raise CheckpointError("revision and peft apply to a checkpoint path; an in-memory "
                                  "model is evaluated as it is")
        source = label or "<in-memory>"
        loading = {"dtype": str(getattr(model, "dtype", "unknown")), "tokenizer": None}
    else:
        if tokenizer is not None and not isinstance(tokenizer, str | Path):
            raise CheckpointError("with a checkpoint path, tokenizer must be a path too")
        tokenizer_path = None if tokenizer is None else str(tokenizer)
        source = checkpoint_source(checkpoint)
        loading = {"dtype": dtype, "tokenizer": tokenizer_path, "revision": revision,
                   "peft": adapter_source(peft), "trust_remote_code": trust_remote_code}
    # A resumed run with other settings fails here, before minutes of weight loading.
    check_resume(out_dir, run_manifest(source, out_dir, settings, label, loading))
    if model is not None:
        loaded = from_objects(model, tokenizer, source=source)
    else:
        loaded = load_checkpoint(checkpoint, device=_process_device(device), dtype=dtype,
                                 tokenizer=tokenizer_path, revision=revision,
                                 trust_remote_code=trust_remote_code, peft=peft)
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
        on_summary=lambda final: write_run_report(out_dir, final),
    )
    return summary



def analyse_checkpoints(
    checkpoints: Mapping[str, LoadedCheckpoint | Callable[[], LoadedCheckpoint]],
    parallel: Mapping[str, Sequence[str]],
    out_dir: str | Path,
    **options: Any,
) -> dict:
    """Per-layer separability of ``checkpoints`` (loaded, or zero-argument loaders) on the
    ``parallel`` sentences, written to ``out_dir`` as separability.json, .md and .png.

    ``options`` are those of ``eval.separability.analysis.measure_checkpoints`` (threshold,
    seed, batch_size, bootstrap_iterations, baseline), with its defaults. Returns the
    JSON payload.
    """
    # Imported here: the analysis pulls in torch and scikit-learn (seconds), which
    # evaluate_checkpoint's callers and `python -m eval run` do not need.
    from eval.separability.analysis import measure_checkpoints

    separability = measure_checkpoints(checkpoints, parallel, **options)
    write_separability_report(out_dir, separability)
    return separability


def _process_device(device: str) -> str:
    """The device of this process: under a data-parallel launch, plain "cuda" means this
    process's own GPU; "auto" (one model over all GPUs) cannot be shared by processes."""
    rank, world = process_rank()
    if world == 1:
        return device
    if device == "auto":
        raise ValueError("--device auto spreads one model over all GPUs; under accelerate "
                         "launch / torchrun give --device cuda (one GPU per process)")
    if device == "cuda":
        import os

        return f"cuda:{os.environ.get('LOCAL_RANK', rank)}"
    return device
