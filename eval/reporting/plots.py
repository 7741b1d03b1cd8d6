"""PNG figures for runs, comparisons and the separability analysis.

Every figure is written atomically (rendered to a temporary file, then moved), like the
JSON results, so a crash while plotting never leaves a truncated PNG behind. Figures are
matplotlib ``Figure`` objects rather than pyplot's: they need no backend, so importing
this module leaves the importer's backend alone (a notebook keeps its inline one).
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import numpy as np
from matplotlib.figure import Figure  # not pyplot: no backend needed, none switched
from matplotlib.ticker import MaxNLocator

from eval.atomic_io import write_atomic


def language_scores(summaries: Sequence[dict], path: str | Path) -> Path:
    """Grouped bars: per-language score of each run, seen languages first."""
    first = summaries[0]
    languages = [
        lang
        for lang in [*first["seen"], *first["unseen"]]
        if any(lang in s["aggregates"]["per_language"] for s in summaries)
    ]
    fig = Figure(figsize=(max(6.0, 0.6 * len(languages) * len(summaries) + 2), 4))
    ax = fig.subplots()
    width = 0.8 / len(summaries)
    x = np.arange(len(languages))
    for i, summary in enumerate(summaries):
        per_language = summary["aggregates"]["per_language"]
        errors = summary["aggregates_stderr"]["per_language"]
        heights = [per_language.get(lang, np.nan) for lang in languages]
        yerr = [_or_zero(errors.get(lang)) for lang in languages]
        ax.bar(x + i * width, heights, width, yerr=yerr, capsize=2, label=summary["label"])
    seen_count = sum(lang in first["seen"] for lang in languages)
    if 0 < seen_count < len(languages):
        ax.axvline(_gap_after(seen_count - 1, width), color="grey", linestyle="--", linewidth=1)
    ax.set_xticks(x + width * (len(summaries) - 1) / 2, languages)
    ax.set_ylabel("score (macro over benchmarks)")
    ax.set_title("Per-language scores (seen left of the dashed line)")
    ax.legend(fontsize="small")
    return _save(fig, path)


def _gap_after(group: int, width: float) -> float:
    """x of the middle of the gap after bar group ``group``: a group of bars of ``width``
    starting at x = group (bar centres group, group + width, ...) spans
    [group - width/2, group + 0.8 - width/2], so the gap to the next one is centred at
    group + 0.9 - width/2."""
    return group + 0.9 - width / 2


def seen_vs_unseen(summaries: Sequence[dict], path: str | Path) -> Path:
    """Seen and unseen averages of each run, with standard-error bars."""
    fig = Figure(figsize=(max(4.0, 1.2 * len(summaries) + 2), 4))
    ax = fig.subplots()
    x = np.arange(len(summaries))
    for offset, split in ((-0.2, "seen"), (0.2, "unseen")):
        heights = [_or_nan(s["aggregates"][split]) for s in summaries]
        yerr = [_or_zero(s["aggregates_stderr"][split]) for s in summaries]
        ax.bar(x + offset, heights, 0.4, yerr=yerr, capsize=3, label=split)
    ax.set_xticks(x, [s["label"] for s in summaries])
    ax.set_ylabel("macro-average score")
    ax.set_title("Seen vs unseen languages")
    ax.legend()
    return _save(fig, path)


def delta_heatmap(comparison: dict, path: str | Path) -> Path:
    """Runs x languages, colour = per-language delta against the baseline; * = p < 0.05."""
    runs = list(comparison["deltas"])
    languages = [
        lang
        for lang in [*comparison["seen"], *comparison["unseen"]]
        if any(lang in comparison["deltas"][r]["per_language"] for r in runs)
    ]
    values = np.full((len(runs), len(languages)), np.nan)
    marks = np.zeros_like(values, dtype=bool)
    for i, run in enumerate(runs):
        for j, lang in enumerate(languages):
            stats = comparison["deltas"][run]["per_language"].get(lang)
            if stats:
                values[i, j] = stats["delta"]
                marks[i, j] = stats["p_value"] is not None and stats["p_value"] < 0.05
    limit = float(np.nanmax(np.abs(values))) if np.isfinite(values).any() else 1.0
    fig = Figure(figsize=(max(5.0, 0.8 * len(languages) + 3), 1.0 + 0.6 * len(runs)))
    ax = fig.subplots()
    image = ax.imshow(values, cmap="RdBu", vmin=-limit or -1, vmax=limit or 1, aspect="auto")
    for i in range(len(runs)):
        for j in range(len(languages)):
            if np.isfinite(values[i, j]):
                ax.text(
                    j,
                    i,
                    f"{values[i, j]:+.3f}{'*' if marks[i, j] else ''}",
                    ha="center",
                    va="center",
                    fontsize=7,
                    color=text_colour(values[i, j], limit),
                )
    seen_count = sum(lang in comparison["seen"] for lang in languages)
    if 0 < seen_count < len(languages):
        ax.axvline(seen_count - 0.5, color="black", linewidth=1.5)
    ax.set_xticks(range(len(languages)), languages)
    ax.set_yticks(range(len(runs)), runs)
    ax.set_title(f"Δ vs {comparison['baseline']} (seen | unseen; * p < 0.05)")
    fig.colorbar(image, ax=ax, shrink=0.8)
    return _save(fig, path)


def text_colour(value: float, limit: float) -> str:
    """White on the dark ends of the diverging RdBu map, black on its light middle."""
    return "white" if limit and abs(value) / limit > 0.6 else "black"


# Checkpoints often trace the same curve (a base model and a light fine-tune); marker,
# dash pattern and a small horizontal offset keep overlapping lines apart.
_MARKERS = ("o", "s", "^", "D", "v", "P", "X")
_DASHES = ("-", "--", "-.", ":")


def separability_by_layer(results: dict[str, dict], path: str | Path) -> Path:
    """One panel per separability measure, one line per checkpoint, layer on the x axis."""
    panels = (
        ("silhouette", "silhouette of language clusters"),
        ("probe_accuracy", "held-out language-ID probe accuracy"),
        ("language_specific_fraction", "fraction of language-specific dims"),
    )
    fig = Figure(figsize=(5 * len(panels), 3.8))
    axes = fig.subplots(1, len(panels))
    count = len(results)
    for ax, (key, title) in zip(axes, panels, strict=True):
        for i, (label, result) in enumerate(results.items()):
            shift = 0.08 * (i - (count - 1) / 2)
            layers = np.array([row["layer"] for row in result["layers"]]) + shift
            values = [row[key] for row in result["layers"]]
            (line,) = ax.plot(layers, values, marker=_MARKERS[i % len(_MARKERS)],
                              linestyle=_DASHES[i % len(_DASHES)], markersize=4,
                              alpha=0.85, label=label)
            intervals = [row.get(f"{key}_ci") for row in result["layers"]]
            if all(intervals):  # bootstrap interval over sentences, where computed
                low, high = zip(*intervals, strict=True)
                ax.fill_between(layers, low, high, color=line.get_color(), alpha=0.15)
        ax.set_title(title, fontsize="medium")
        ax.set_xlabel("layer (0 = embeddings)")
        ax.xaxis.set_major_locator(MaxNLocator(integer=True))
    chance = next(iter(results.values()))["probe_chance"]
    axes[1].axhline(chance, color="grey", linestyle=":", linewidth=1, label="chance")
    axes[0].legend(fontsize="small")
    axes[1].legend(fontsize="small")
    return _save(fig, path)


def _save(fig, path: str | Path) -> Path:
    fig.tight_layout()
    return write_atomic(path, lambda tmp: fig.savefig(tmp, format="png", dpi=110))


def _or_zero(value):
    return 0.0 if value is None else value


def _or_nan(value):
    return np.nan if value is None else value
