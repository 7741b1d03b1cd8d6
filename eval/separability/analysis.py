"""Separability of languages per layer for several checkpoints, as one JSON-ready payload."""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence

from eval.running.checkpoints import LoadedCheckpoint
from eval.separability.hidden_states import sentence_representations
from eval.separability.measures import (
    DEFAULT_THRESHOLD,
    compare_layers,
    parallel_dataset,
    separability_by_layer,
)
from eval.suggestions import UnknownNameError

SEPARABILITY_FORMAT = "refmoo-eval-separability/1"


def measure_checkpoints(
    checkpoints: Mapping[str, LoadedCheckpoint | Callable[[], LoadedCheckpoint]],
    parallel: Mapping[str, Sequence[str]],
    threshold: float = DEFAULT_THRESHOLD,
    seed: int = 0,
    batch_size: int = 16,
    bootstrap_iterations: int = 1000,
    baseline: str | None = None,
) -> dict:
    """Per-layer separability of every checkpoint on the same parallel sentences.

    A checkpoint may be given as a loader (a zero-argument callable); it is then loaded
    only for its own turn and released after, so several large models need not fit in
    memory together. Silhouette and probe accuracy get 95 % bootstrap intervals over
    sentences, and every checkpoint is tested against ``baseline`` (default: the first)
    per layer by a paired bootstrap over sentences. Returns what ``separability.json``
    holds; ``eval.api.analyse_checkpoints`` also writes it with its report.
    """
    texts, labels, groups = parallel_dataset(parallel)
    if baseline is not None and baseline not in checkpoints:
        raise UnknownNameError("baseline checkpoint", baseline, checkpoints,
                               note=f"the checkpoints are labelled {', '.join(checkpoints)}")
    results = {}
    for label, given in checkpoints.items():
        checkpoint = given() if callable(given) else given
        reps = sentence_representations(checkpoint.model, checkpoint.tokenizer, texts, batch_size)
        results[label] = {
            "checkpoint": checkpoint.source,
            **separability_by_layer(reps, labels, groups, threshold, seed,
                                    bootstrap_iterations),
        }
        del checkpoint
    base = baseline or next(iter(results))
    comparisons = {
        label: compare_layers(results[base], result, max(bootstrap_iterations, 1), seed)
        for label, result in results.items()
        if label != base
    } if bootstrap_iterations > 0 else {}
    return {"format": SEPARABILITY_FORMAT, "seed": seed, "baseline": base,
            "bootstrap_iterations": bootstrap_iterations, "results": results,
            "comparisons": comparisons}
