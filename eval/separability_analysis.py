"""Separability of languages per layer for several checkpoints, written as JSON, Markdown, PNG."""

from __future__ import annotations

import json
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path

from eval import plots
from eval.atomic_io import write_json_atomic, write_text_atomic
from eval.checkpoints import LoadedCheckpoint
from eval.hidden_states import sentence_representations
from eval.language_codes import canonical_language
from eval.separability import DEFAULT_THRESHOLD, parallel_dataset, separability_by_layer

SEPARABILITY_FORMAT = "refmoo-eval-separability/1"


def load_parallel_file(path: str | Path) -> dict[str, list[str]]:
    """JSONL, one object per sentence mapping language code to its translation."""
    parallel: dict[str, list[str]] = {}
    rows = [
        json.loads(line)
        for line in Path(path).read_text(encoding="utf-8").splitlines()
        if line.strip()
    ]
    for number, row in enumerate(rows, start=1):
        if set(row) != set(rows[0]):
            raise ValueError(
                f"{path}:{number} has languages {sorted(row)}, "
                f"line 1 has {sorted(rows[0])}; every line needs the same ones"
            )
        for code, text in row.items():
            parallel.setdefault(canonical_language(code), []).append(text)
    return parallel


def analyse_checkpoints(
    checkpoints: Mapping[str, LoadedCheckpoint | Callable[[], LoadedCheckpoint]],
    parallel: Mapping[str, Sequence[str]],
    out_dir: str | Path,
    threshold: float = DEFAULT_THRESHOLD,
    seed: int = 0,
    batch_size: int = 16,
) -> dict:
    """Per-layer separability of every checkpoint on the same parallel sentences.

    A checkpoint may be given as a loader (a zero-argument callable); it is then loaded
    only for its own turn and released after, so several large models need not fit in
    memory together.
    """
    texts, labels, groups = parallel_dataset(parallel)
    results = {}
    for label, given in checkpoints.items():
        checkpoint = given() if callable(given) else given
        reps = sentence_representations(checkpoint.model, checkpoint.tokenizer, texts, batch_size)
        results[label] = {
            "checkpoint": checkpoint.source,
            **separability_by_layer(reps, labels, groups, threshold, seed),
        }
        del checkpoint
    payload = {"format": SEPARABILITY_FORMAT, "seed": seed, "results": results}
    root = Path(out_dir)
    write_json_atomic(root / "separability.json", payload)
    plots.separability_by_layer(results, root / "separability.png")
    write_text_atomic(root / "separability.md", _markdown(results))
    return payload


def _markdown(results: dict) -> str:
    any_result = next(iter(results.values()))
    lines = [
        "# Language separability per layer",
        "",
        f"- languages: {', '.join(any_result['languages'])}; "
        f"{any_result['n_sentences']} sentences in all",
        f"- probe chance: {any_result['probe_chance']:.3f}; language-specific dimension: "
        f"eta² >= {any_result['threshold']} (eta² expected with no language effect: "
        f"{any_result['eta2_null']:.3f})",
        "",
        "| checkpoint | layer | silhouette | probe acc | lang-specific dims | fraction |",
        "| --- | --- | --- | --- | --- | --- |",
    ]
    for label, result in results.items():
        for row in result["layers"]:
            lines.append(
                f"| {label} | {row['layer']} | {row['silhouette']:.4f} | "
                f"{row['probe_accuracy']:.4f} | {row['language_specific_dims']} | "
                f"{row['language_specific_fraction']:.4f} |"
            )
    lines += ["", "![separability per layer](separability.png)", ""]
    return "\n".join(lines)
