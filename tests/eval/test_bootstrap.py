import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from eval.comparing import bootstrap
from eval.comparing.bootstrap import resample_means, significance, unit_rng


def test_no_difference_is_not_significant():
    replicates = resample_means(np.zeros(50), 2000, unit_rng(0, "u"))
    stats = significance(0.0, replicates)
    assert stats["p_value"] == 1.0
    assert stats["ci_low"] == stats["ci_high"] == 0.0


def test_a_consistent_improvement_is_significant_and_its_interval_excludes_zero():
    rng = np.random.default_rng(1)
    differences = (rng.random(200) < 0.3).astype(float)  # 30 % of examples flip to correct
    replicates = resample_means(differences, 2000, unit_rng(0, "u"))
    stats = significance(differences.mean(), replicates)
    assert stats["p_value"] < 0.01
    assert 0 < stats["ci_low"] < differences.mean() < stats["ci_high"]


def test_noise_around_zero_is_not_significant():
    differences = np.tile([1.0, -1.0, 0.0, 0.0], 25)
    stats = significance(differences.mean(), resample_means(differences, 2000, unit_rng(0, "u")))
    assert stats["p_value"] > 0.5


def test_replicates_depend_only_on_seed_and_unit():
    data = np.arange(10.0)
    first = resample_means(data, 100, unit_rng(3, "xnli/en"))
    assert np.array_equal(first, resample_means(data, 100, unit_rng(3, "xnli/en")))
    assert not np.array_equal(first, resample_means(data, 100, unit_rng(3, "xnli/de")))
    assert not np.array_equal(first, resample_means(data, 100, unit_rng(4, "xnli/en")))


def test_drawing_in_chunks_gives_the_same_replicates(monkeypatch):
    data = np.random.default_rng(0).random(37)
    whole = resample_means(data, 64, unit_rng(0, "u"))
    monkeypatch.setattr(bootstrap, "_MAX_DRAW", 37 * 5)
    assert np.array_equal(whole, resample_means(data, 64, unit_rng(0, "u")))


def test_empty_unit_cannot_be_bootstrapped():
    with pytest.raises(ValueError):
        resample_means(np.array([]), 10, unit_rng(0, "u"))


@settings(max_examples=200, deadline=None)
@given(st.lists(st.sampled_from([-1.0, 0.0, 1.0]), min_size=1, max_size=12),
       st.integers(0, 10**6), st.sampled_from([0.9, 0.95, 0.99]))
def test_the_interval_excludes_zero_exactly_when_p_is_at_most_alpha(values, seed, confidence):
    # Small units of accuracy differences: many replicates tie at exactly 0.
    differences = np.array(values)
    replicates = resample_means(differences, 1000, unit_rng(seed, "u"))
    stats = significance(differences.mean(), replicates, confidence)
    excludes_zero = stats["ci_low"] > 0 or stats["ci_high"] < 0
    assert excludes_zero == (stats["p_value"] <= 1 - confidence)


def test_the_audited_small_unit_agrees():
    # n = 8 with three improvements: the old centred p-value said 0.059 beside an
    # interval that excluded 0.
    differences = np.array([1.0, 1.0, 1.0, 0.0, 0.0, 0.0, 0.0, 0.0])
    replicates = resample_means(differences, 10_000, unit_rng(0, "xnli/de"))
    stats = significance(differences.mean(), replicates)
    assert (stats["ci_low"] > 0) == (stats["p_value"] <= 0.05)
    assert stats["p_value"] == pytest.approx(2 * np.mean(replicates <= 0), abs=1e-12)
