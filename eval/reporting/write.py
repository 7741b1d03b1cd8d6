"""Write the human-facing outputs of a run, a comparison or a separability analysis:
Markdown plus PNG plots (and CSV tables, and the JSON they are rendered from)."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

from eval.atomic_io import write_json_atomic, write_text_atomic
from eval.reporting import plots, tables
from eval.reporting.markdown import comparison_report, run_report, separability_report


def write_run_report(run_dir: str | Path, summary: dict) -> Path:
    """report.md and plots/ inside a run directory; returns the report's path."""
    root = Path(run_dir)
    tables.write_csv(root / "scores.csv", tables.score_rows([summary]), tables.SCORE_COLUMNS)
    figures = {}
    if summary["units"]:
        plots.language_scores([summary], root / "plots" / "language_scores.png")
        plots.seen_vs_unseen([summary], root / "plots" / "seen_vs_unseen.png")
        figures = {
            "per-language scores": "plots/language_scores.png",
            "seen vs unseen": "plots/seen_vs_unseen.png",
        }
    return write_text_atomic(root / "report.md", run_report(summary, figures))


def write_comparison_report(
    out_dir: str | Path, comparison: dict, summaries: Sequence[dict]
) -> Path:
    """comparison.json, comparison.md and plots/ in ``out_dir``; returns the Markdown path."""
    root = Path(out_dir)
    write_json_atomic(root / "comparison.json", comparison)
    tables.write_csv(root / "scores.csv", tables.score_rows(summaries), tables.SCORE_COLUMNS)
    tables.write_csv(root / "deltas.csv", tables.delta_rows(comparison), tables.DELTA_COLUMNS)
    plots.language_scores(summaries, root / "plots" / "language_scores.png")
    plots.seen_vs_unseen(summaries, root / "plots" / "seen_vs_unseen.png")
    figures = {
        "per-language scores": "plots/language_scores.png",
        "seen vs unseen": "plots/seen_vs_unseen.png",
    }
    if comparison["deltas"]:
        plots.delta_heatmap(comparison, root / "plots" / "delta_heatmap.png")
        figures["deltas against the baseline"] = "plots/delta_heatmap.png"
    return write_text_atomic(root / "comparison.md", comparison_report(comparison, figures))


def write_separability_report(out_dir: str | Path, separability: dict) -> Path:
    """separability.json, .png and .md in ``out_dir``; returns the Markdown path.

    ``separability`` is ``eval.separability.analysis.measure_checkpoints``'s result.
    """
    root = Path(out_dir)
    write_json_atomic(root / "separability.json", separability)
    results = separability["results"]
    plots.separability_by_layer(results, root / "separability.png")
    report = separability_report(results, separability["comparisons"], separability["baseline"])
    return write_text_atomic(root / "separability.md", report)
