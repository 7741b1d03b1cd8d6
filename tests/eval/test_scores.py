import pytest

from eval.running.scores import choose_metric, mean_matches_score, per_example_values, unit_score

RAW = {
    "results": {
        "t": {
            "alias": "t",
            "sample_len": 4,
            "perplexity,none": 12.0,
            "perplexity_stderr,none": 1.0,
            "acc,none": 0.5,
            "acc_stderr,none": 0.25,
            "exact_match,strict-match": 0.25,
            "exact_match_stderr,strict-match": "N/A",
            "exact_match,flexible-extract": 0.75,
            "exact_match_stderr,flexible-extract": 0.2,
        }
    },
    "higher_is_better": {"t": {"perplexity": False, "acc": True, "exact_match": True}},
}


def test_preferred_metric_wins_and_can_pin_a_filter():
    assert choose_metric(RAW, "t", ["exact_match,flexible-extract"]) == (
        "exact_match,flexible-extract"
    )
    assert choose_metric(RAW, "t", ["exact_match"]) == "exact_match,strict-match"
    assert choose_metric(RAW, "t", ["missing", "acc"]) == "acc,none"


def test_fallback_skips_lower_is_better_metrics():
    assert choose_metric(RAW, "t") == "acc,none"


def test_unit_score_reads_score_stderr_and_size():
    score = unit_score(RAW, "t", ["acc"])
    assert (score.score, score.stderr, score.n, score.higher_is_better) == (0.5, 0.25, 4, True)
    assert unit_score(RAW, "t", ["exact_match"]).stderr is None  # lm-eval's "N/A"


def test_per_example_values_follow_metric_and_filter():
    rows = [
        {"task": "t", "doc_id": 0, "filter": "none", "acc": 1.0},
        {"task": "t", "doc_id": 1, "filter": "none", "acc": 0.0},
        {"task": "t", "doc_id": 0, "filter": "strict-match", "exact_match": 1.0},
        {"task": "t", "doc_id": 1, "filter": "strict-match", "exact_match": [0.1, 0.2]},
    ]
    assert per_example_values(rows, "acc,none") == {("t", 0): 1.0, ("t", 1): 0.0}
    # Non-scalar per-example values (corpus-level metrics) are not bootstrappable.
    assert per_example_values(rows, "exact_match,strict-match") == {("t", 0): 1.0}


@pytest.mark.parametrize(("score", "expected"), [(0.5, True), (0.6, False)])
def test_mean_check_tells_mean_metrics_from_corpus_metrics(score, expected):
    assert mean_matches_score({("t", 0): 1.0, ("t", 1): 0.0}, score) is expected
    assert mean_matches_score({}, 0.0) is False
