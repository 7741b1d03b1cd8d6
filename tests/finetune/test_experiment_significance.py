"""Seed-averaged (paired) bootstrap intervals, on hand-made eval run directories."""

from __future__ import annotations

import json

import numpy as np
import pytest

from eval.comparing.compare import LoadedRun
from finetune.experiment.significance import paired_intervals, score_intervals


def fake_run(root, label: str, correct: dict[str, list[int]]) -> LoadedRun:
    """An eval run whose unit ``bench/LANG`` answered ``correct[LANG]`` (1 right, 0 wrong)."""
    units = []
    for language, values in correct.items():
        samples = root / label / f"{language}.jsonl"
        samples.parent.mkdir(parents=True, exist_ok=True)
        samples.write_text("".join(
            json.dumps({"task": f"bench_{language}", "doc_id": i, "filter": "none", "acc": v})
            + "\n" for i, v in enumerate(values)))
        units.append({"unit": f"bench/{language}", "benchmark": "bench", "language": language,
                      "metric": "acc,none", "score": float(np.mean(values)),
                      "samples_file": f"{language}.jsonl"})
    summary = {"label": label, "seen": ["en"], "unseen": ["de"], "units": units}
    return LoadedRun(root=root / label, summary=summary)


def test_identical_runs_differ_by_exactly_zero(tmp_path):
    a = fake_run(tmp_path, "a", {"en": [1, 0, 1, 1], "de": [0, 1, 0, 0]})
    b = fake_run(tmp_path, "b", {"en": [1, 0, 1, 1], "de": [0, 1, 0, 0]})
    stats = paired_intervals([a], [b], iterations=200)
    assert stats["seen"] == {"delta": 0.0, "ci_low": 0.0, "ci_high": 0.0,
                             "p_value": stats["seen"]["p_value"]}
    assert stats["seen"]["p_value"] == 1.0


def test_a_run_better_on_every_example_has_an_interval_above_zero(tmp_path):
    rng = np.random.default_rng(0)
    base_values = rng.integers(0, 2, size=(2, 40)).tolist()
    better = [[1] * 40, [1] * 40]
    runs = [fake_run(tmp_path, f"m{s}", {"en": better[0], "de": better[1]}) for s in (0, 1)]
    bases = [fake_run(tmp_path, f"b{s}", {"en": base_values[0], "de": base_values[1]})
             for s in (0, 1)]
    stats = paired_intervals(runs, bases, iterations=500)
    expected = 1.0 - np.mean(base_values[0])
    assert stats["seen"]["delta"] == pytest.approx(expected)
    assert 0 < stats["seen"]["ci_low"] <= stats["seen"]["delta"] <= stats["seen"]["ci_high"]
    assert stats["per_language"]["de"]["delta"] == pytest.approx(1.0 - np.mean(base_values[1]))


def test_scores_average_over_seeds_and_intervals_bracket_them(tmp_path):
    runs = [fake_run(tmp_path, "s0", {"en": [1, 1, 0, 0] * 5, "de": [1, 0, 0, 0] * 5}),
            fake_run(tmp_path, "s1", {"en": [1, 1, 1, 0] * 5, "de": [0, 0, 0, 0] * 5})]
    stats = score_intervals(runs, iterations=500)
    assert stats["seen"]["delta"] == pytest.approx((0.5 + 0.75) / 2)
    assert stats["unseen"]["delta"] == pytest.approx(0.125)
    assert stats["seen"]["ci_low"] < stats["seen"]["delta"] < stats["seen"]["ci_high"]
    assert stats["not_bootstrapped"] == {}


def test_a_metric_that_is_not_a_mean_gets_no_interval(tmp_path):
    run = fake_run(tmp_path, "r", {"en": [1, 0], "de": [1, 1]})
    run.summary["units"][0]["score"] = 0.9  # corpus-level: not the mean of the examples
    stats = score_intervals([run], iterations=50)
    assert stats["seen"]["ci_low"] is None and stats["seen"]["delta"] == 0.9
    assert "bench/en" in stats["not_bootstrapped"]
