"""Separability of languages per layer for several checkpoints, written as JSON, Markdown, PNG."""

from __future__ import annotations

import json
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path

from eval.atomic_io import write_json_atomic, write_text_atomic
from eval.hidden_states import sentence_representations
from eval.languages.codes import canonical_language
from eval.reporting import plots
from eval.running.checkpoints import LoadedCheckpoint
from eval.separability import (
    DEFAULT_THRESHOLD,
    compare_layers,
    parallel_dataset,
    separability_by_layer,
)
from eval.suggestions import UnknownNameError

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


def load_parallel_dir(path: str | Path) -> dict[str, list[str]]:
    """A larger parallel corpus from local files, one per language, named by its code:

    * FLORES-style: ``eng_Latn.devtest`` (or ``.dev``, ``.txt``), one sentence per line,
      line i the same sentence in every file;
    * Belebele-style: ``eng_Latn.jsonl`` rows with ``link`` and ``flores_passage``; the
      passages (FLORES paragraphs, repeated once per question) are deduplicated by link
      and kept for the links every language has, in link order.
    """
    root = Path(path)
    files = sorted(f for f in root.iterdir() if f.is_file() and not f.name.startswith("."))
    if not files:
        raise FileNotFoundError(f"no parallel files in {root}")
    by_language: dict[str, list[str] | dict[str, str]] = {}
    for file in files:
        code = canonical_language(file.name.split(".")[0])
        if file.suffix == ".jsonl":
            rows = [json.loads(line) for line in file.read_text(encoding="utf-8").splitlines()
                    if line.strip()]
            by_language[code] = {row["link"]: row["flores_passage"] for row in rows}
        else:
            by_language[code] = [line.strip() for line in
                                 file.read_text(encoding="utf-8").splitlines() if line.strip()]
    if all(isinstance(v, dict) for v in by_language.values()):
        common = sorted(set.intersection(*(set(v) for v in by_language.values())))
        return {code: [passages[link] for link in common]
                for code, passages in by_language.items()}
    lengths = {code: len(v) for code, v in by_language.items()}
    if any(isinstance(v, dict) for v in by_language.values()) or len(set(lengths.values())) != 1:
        raise ValueError(f"{root}: the files are not aligned line by line ({lengths})")
    return {code: list(v) for code, v in by_language.items()}


def analyse_checkpoints(
    checkpoints: Mapping[str, LoadedCheckpoint | Callable[[], LoadedCheckpoint]],
    parallel: Mapping[str, Sequence[str]],
    out_dir: str | Path,
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
    per layer by a paired bootstrap over sentences.
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
    payload = {"format": SEPARABILITY_FORMAT, "seed": seed, "baseline": base,
               "bootstrap_iterations": bootstrap_iterations, "results": results,
               "comparisons": comparisons}
    root = Path(out_dir)
    write_json_atomic(root / "separability.json", payload)
    plots.separability_by_layer(results, root / "separability.png")
    write_text_atomic(root / "separability.md", _markdown(results, comparisons, base))
    return payload


def _markdown(results: dict, comparisons: dict | None = None, baseline: str = "") -> str:
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
        "- intervals: 95 % bootstrap over sentences (every translation of a sentence "
        "resampled together); they say how much a measure moves on another sample of "
        "sentences this size",
        "",
        "| checkpoint | layer | silhouette [95% CI] | probe acc [95% CI] | lang-specific dims "
        "| fraction |",
        "| --- | --- | --- | --- | --- | --- |",
    ]
    for label, result in results.items():
        for row in result["layers"]:
            lines.append(
                f"| {label} | {row['layer']} | {_with_ci(row, 'silhouette')} | "
                f"{_with_ci(row, 'probe_accuracy')} | {row['language_specific_dims']} | "
                f"{row['language_specific_fraction']:.4f} |"
            )
    for label, rows in (comparisons or {}).items():
        lines += [
            "",
            f"## `{label}` − `{baseline}`",
            "",
            "Paired bootstrap over sentences; `*` marks p ≤ 0.05 (the interval excludes 0).",
            "",
            "| layer | Δ silhouette [95% CI] | p | Δ probe acc [95% CI] | p |",
            "| --- | --- | --- | --- | --- |",
        ]
        for row in rows:
            cells = []
            for key in ("silhouette", "probe_accuracy"):
                stats = row[key]
                star = " *" if stats["p_value"] <= 0.05 else ""
                cells += [f"{stats['delta']:+.4f} [{stats['ci_low']:+.4f}, "
                          f"{stats['ci_high']:+.4f}]{star}", f"{stats['p_value']:.4f}"]
            lines.append(f"| {row['layer']} | " + " | ".join(cells) + " |")
    lines += ["", "![separability per layer](separability.png)", ""]
    return "\n".join(lines)


def _with_ci(row: dict, key: str) -> str:
    interval = row.get(f"{key}_ci")
    text = f"{row[key]:.4f}"
    return text if not interval else text + f" [{interval[0]:.4f}, {interval[1]:.4f}]"
