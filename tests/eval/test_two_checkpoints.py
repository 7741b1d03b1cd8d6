"""Comparison report and separability analysis for two checkpoints (the elapsed time is
printed, never asserted: timings do not decide tests)."""

from __future__ import annotations

import json
import time

import pytest

from eval.api import analyse_checkpoints
from eval.comparing.compare import compare_runs, load_run
from eval.parallel_corpus import SENTENCES
from eval.reporting.write import write_comparison_report
from eval.running.checkpoints import load_checkpoint
from eval.running.runner import EvalSettings, run_evaluation
from eval.suggestions import UnknownNameError

PNG = b"\x89PNG\r\n\x1a\n"


@pytest.fixture(scope="module")
def two_checkpoint_outputs(
    tmp_path_factory,
    base_checkpoint,
    finetuned_checkpoint,
    local_plan,
    local_task_manager,
    local_registry,
):
    out = tmp_path_factory.mktemp("two_checkpoints")
    started = time.monotonic()
    checkpoints = {
        "base": load_checkpoint(base_checkpoint),
        "finetuned": load_checkpoint(finetuned_checkpoint),
    }
    runs = []
    for label, checkpoint in checkpoints.items():
        run_evaluation(
            checkpoint,
            local_plan,
            local_task_manager,
            out / label,
            EvalSettings(batch_size=8),
            local_registry.metric_preferences,
            label=label,
            show_progress=False,
        )
        runs.append(load_run(out / label))
    comparison = compare_runs(runs, baseline="base", iterations=2000, seed=7)
    write_comparison_report(out / "comparison", comparison, [r.summary for r in runs])
    separability = analyse_checkpoints(checkpoints, SENTENCES, out / "separability")
    elapsed = time.monotonic() - started
    print(f"two evaluations, comparison and separability: {elapsed:.1f} s")
    return out, runs, comparison, separability, elapsed


def test_comparison_report_files(two_checkpoint_outputs):
    out, *_ = two_checkpoint_outputs
    report = (out / "comparison" / "comparison.md").read_text()
    assert "`finetuned` − `base`" in report and "Δ seen" in report
    for name in ("language_scores.png", "seen_vs_unseen.png", "delta_heatmap.png"):
        assert (out / "comparison" / "plots" / name).read_bytes()[:8] == PNG
    saved = json.loads((out / "comparison" / "comparison.json").read_text())
    assert saved["baseline"] == "base" and list(saved["deltas"]) == ["finetuned"]


def test_deltas_are_score_differences_with_bootstrap_intervals(two_checkpoint_outputs):
    _, (base, tuned), comparison, *_ = two_checkpoint_outputs
    delta = comparison["deltas"]["finetuned"]
    assert delta["not_bootstrapped"] == {}
    for split in ("seen", "unseen"):
        expected = tuned.summary["aggregates"][split] - base.summary["aggregates"][split]
        assert delta[split]["delta"] == pytest.approx(expected)
        assert delta[split]["ci_low"] <= delta[split]["ci_high"]
        assert 0 < delta[split]["p_value"] <= 1
    base_units, tuned_units = base.units(), tuned.units()
    for unit_id, stats in delta["per_unit"].items():
        assert stats["delta"] == pytest.approx(
            tuned_units[unit_id]["score"] - base_units[unit_id]["score"]
        )
        assert stats["n_examples"] == base_units[unit_id]["n"]


def test_comparison_is_reproducible_for_a_seed(two_checkpoint_outputs):
    _, runs, comparison, *_ = two_checkpoint_outputs
    again = compare_runs(runs, baseline="base", iterations=2000, seed=7)
    assert again["deltas"] == comparison["deltas"]


def test_unknown_baseline_lists_the_runs(two_checkpoint_outputs):
    _, runs, *_ = two_checkpoint_outputs
    with pytest.raises(UnknownNameError, match="did you mean: base"):
        compare_runs(runs, baseline="bas")


def test_runs_with_different_splits_are_not_compared(two_checkpoint_outputs):
    _, (base, tuned), *_ = two_checkpoint_outputs
    tuned.summary = {**tuned.summary, "seen": ["en"]}
    try:
        with pytest.raises(ValueError, match="splits languages differently"):
            compare_runs([base, tuned], baseline="base")
    finally:
        tuned.summary = load_run(tuned.root).summary


def test_separability_for_both_checkpoints_per_layer(two_checkpoint_outputs):
    out, _, _, separability, _ = two_checkpoint_outputs
    results = separability["results"]
    assert set(results) == {"base", "finetuned"}
    for result in results.values():
        assert [row["layer"] for row in result["layers"]] == [0, 1, 2]  # embeddings + 2 blocks
        for row in result["layers"]:
            assert -1 <= row["silhouette"] <= 1
            assert 0 <= row["probe_accuracy"] <= 1
            assert 0 <= row["language_specific_dims"] <= result["hidden_size"]
    assert (out / "separability" / "separability.png").read_bytes()[:8] == PNG
    assert "| finetuned | 2 |" in (out / "separability" / "separability.md").read_text()


def _with(run, **changes):
    from eval.comparing.compare import LoadedRun

    return LoadedRun(root=run.root, summary={**run.summary, **changes})


def test_runs_under_other_settings_are_refused_unless_allowed(two_checkpoint_outputs, tmp_path):
    from eval.comparing.compare import SettingsMismatch

    _, (base, tuned), *_ = two_checkpoint_outputs
    two_shot = _with(tuned, settings={**tuned.summary["settings"], "num_fewshot": 2})
    with pytest.raises(SettingsMismatch, match="num_fewshot=2"):
        compare_runs([base, two_shot], baseline="base", iterations=200)
    fewer = _with(tuned, benchmarks=tuned.summary["benchmarks"][:1])
    with pytest.raises(SettingsMismatch, match="ran benchmarks"):
        compare_runs([base, fewer], baseline="base", iterations=200)
    allowed = compare_runs([base, two_shot], baseline="base", iterations=200,
                           allow_mismatch=True)
    assert allowed["mismatches"] == ["'finetuned' has num_fewshot=2, 'base' has num_fewshot=None"]
    report = write_comparison_report(tmp_path, allowed, [base.summary, two_shot.summary])
    assert "WARNING: these runs were evaluated under different settings" in report.read_text()


def test_averages_beside_a_delta_are_taken_on_the_common_units(two_checkpoint_outputs,
                                                                tmp_path):
    _, (base, tuned), *_ = two_checkpoint_outputs
    dropped = tuned.summary["units"][0]
    partial = _with(tuned, units=tuned.summary["units"][1:])
    comparison = compare_runs([base, partial], baseline="base", iterations=200)
    delta = comparison["deltas"]["finetuned"]
    assert dropped["unit"] in delta["only_in_baseline"]
    common = delta["on_common_units"]
    for split in ("seen", "unseen"):
        assert delta[split]["delta"] == pytest.approx(common["finetuned"][split]
                                                      - common["base"][split])
    text = write_comparison_report(tmp_path, comparison,
                                   [base.summary, partial.summary]).read_text()
    row = next(line for line in text.splitlines()
               if line.startswith("| finetuned | ") and "→" in line)
    assert f"{common['base']['seen']:.4f} → {common['finetuned']['seen']:.4f}" in row
    assert "## What was compared" in text and str(base.summary["checkpoint"]) in text


# ------------------------------------------------ tables, CSV, separability (issue 11 §6)

def test_comparison_has_language_and_unit_tables_and_csv(two_checkpoint_outputs):
    import csv

    out, _, comparison, *_ = two_checkpoint_outputs
    report = (out / "comparison" / "comparison.md").read_text()
    assert "## Scores per language" in report
    assert "| language | split | base | finetuned |" in report
    assert "Per benchmark and language, Δ (p):" in report
    assert "| language | local_wordorder | local_xnli |" in report
    with open(out / "comparison" / "deltas.csv", newline="") as handle:
        deltas = list(csv.DictReader(handle))
    seen = next(r for r in deltas if r["level"] == "split" and r["split"] == "seen")
    assert float(seen["delta"]) == pytest.approx(comparison["deltas"]["finetuned"]["seen"]["delta"])
    assert float(seen["p_value"]) == comparison["deltas"]["finetuned"]["seen"]["p_value"]
    units = [r for r in deltas if r["level"] == "unit"]
    assert len(units) == len(comparison["deltas"]["finetuned"]["per_unit"])
    with open(out / "comparison" / "scores.csv", newline="") as handle:
        scores = list(csv.DictReader(handle))
    assert {r["run"] for r in scores} == {"base", "finetuned"}


def test_headline_gives_p_values_next_to_the_seen_and_unseen_delta(two_checkpoint_outputs):
    from eval.reporting.markdown import headline

    _, _, comparison, *_ = two_checkpoint_outputs
    (line,) = headline(comparison)
    p_seen = comparison["deltas"]["finetuned"]["seen"]["p_value"]
    assert line.startswith("finetuned − base: seen ") and f"(p {p_seen:.4f})" in line


def test_unknown_baseline_names_every_label(two_checkpoint_outputs):
    _, runs, *_ = two_checkpoint_outputs
    with pytest.raises(UnknownNameError, match="the runs are labelled base, finetuned"):
        compare_runs(runs, baseline="sft")


def test_separability_has_sentence_intervals_and_a_between_checkpoint_test(
    two_checkpoint_outputs,
):
    out, *_, separability, _ = two_checkpoint_outputs
    assert separability["baseline"] == "base"
    for row in separability["results"]["finetuned"]["layers"]:
        low, high = row["probe_accuracy_ci"]
        assert low <= row["probe_accuracy"] <= high
        assert len(row["per_sentence"]["probe_accuracy"]) == len(SENTENCES["en"])
    layers = separability["comparisons"]["finetuned"]
    assert [row["layer"] for row in layers] == [0, 1, 2]
    # Layer 0 is the embedding table: the fine-tune moved it, but the Δ is the one measured.
    base = separability["results"]["base"]["layers"]
    tuned = separability["results"]["finetuned"]["layers"]
    for row, b, t in zip(layers, base, tuned, strict=True):
        assert row["silhouette"]["delta"] == pytest.approx(t["silhouette"] - b["silhouette"])
    assert "`finetuned` − `base`" in (out / "separability" / "separability.md").read_text()
