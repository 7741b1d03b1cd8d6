import math

import numpy as np
import pytest

from eval.running.aggregate import aggregate, aggregate_stderr

SCORES = {
    ("a", "en"): 0.8,
    ("b", "en"): 0.6,
    ("a", "de"): 0.4,
    ("a", "fr"): 0.3,
    ("b", "fr"): 0.1,
}


def test_macro_averages_weigh_languages_then_benchmarks_equally():
    result = aggregate(SCORES, seen=["en", "de"], unseen=["fr"])
    assert result["per_language"] == pytest.approx({"en": 0.7, "de": 0.4, "fr": 0.2})
    assert result["seen"] == pytest.approx((0.7 + 0.4) / 2)
    assert result["unseen"] == pytest.approx(0.2)
    assert result["per_benchmark"]["a"] == pytest.approx({"seen": 0.6, "unseen": 0.3, "all": 0.5})
    assert result["per_benchmark"]["b"]["seen"] == pytest.approx(0.6)


def test_empty_split_is_none():
    assert aggregate(SCORES, seen=["en"], unseen=["ja"])["unseen"] is None


def test_stderr_of_a_mean_of_independent_terms():
    stderrs = {key: 0.1 for key in SCORES}
    result = aggregate_stderr(stderrs, seen=["en", "de"], unseen=["fr"])
    en = math.sqrt(2 * 0.01) / 2
    assert result["per_language"]["en"] == pytest.approx(en)
    assert result["seen"] == pytest.approx(math.sqrt(en**2 + 0.01) / 2)
    stderrs[("a", "de")] = None
    assert aggregate_stderr(stderrs, ["en", "de"], ["fr"])["seen"] is None


def test_arrays_aggregate_elementwise_like_floats():
    arrays = {key: np.array([value, 2 * value]) for key, value in SCORES.items()}
    floats = aggregate(SCORES, ["en", "de"], ["fr"])
    replicated = aggregate(arrays, ["en", "de"], ["fr"])
    assert replicated["seen"] == pytest.approx([floats["seen"], 2 * floats["seen"]])
    assert replicated["per_benchmark"]["a"]["all"][1] == pytest.approx(1.0)
