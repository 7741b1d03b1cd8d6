"""Certificates against constructed stationarity classes, refereed by cvxpy."""

import math

import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from refmoo import MGDA, Partition, pareto_stationarity, refined_pareto_stationarity
from refmoo.exact import exact_inner
from refmoo.referee import cvxpy_min_norm
from refmoo.testing import (
    NON_STATIONARY,
    STRONG,
    WEAK,
    assert_pareto_stationary,
    assert_refined_stationary,
    bucketed_matrices,
    gradient_matrices,
)

scales = {"min_exp": -12, "max_exp": 12}
EPS = torch.finfo(torch.float64).eps


@settings(max_examples=40)
@given(gradient_matrices(kind=st.sampled_from([STRONG, WEAK]), K=st.integers(1, 6), **scales))
def test_stationary_matrices_are_certified_stationary(G):
    cert = pareto_stationarity(G)
    assert cert.stationary, cert
    assert cert.direction is None
    assert_pareto_stationary(G)  # the referee agrees
    assert abs(float(cert.weights.sum()) - 1) < 1e-12 and bool((cert.weights >= 0).all())


@settings(max_examples=40)
@given(gradient_matrices(kind=NON_STATIONARY, K=st.integers(1, 6), **scales))
def test_non_stationary_matrices_get_a_valid_gordan_direction(G):
    cert = pareto_stationarity(G)
    assert not cert.stationary
    d = cert.direction
    inner = G.to(torch.float64) @ d
    assert float(inner.max()) < 0, "the direction must decrease every objective"
    # The margin is summed per bucket, G @ d by BLAS: two roundings of the same
    # D-term inner products, each within γ_{D+1}·Σ_i |g_ki||d_i|.
    D = G.shape[1]
    rounding = 2 * (D + 1) * EPS * float((G.abs().to(torch.float64) @ d.abs()).max())
    assert abs(float(cert.margin) + float(inner.max())) <= rounding
    # KKT of the min-norm problem: the margin is at least φ².
    assert float(cert.margin) >= float(cert.residual) ** 2 * (1 - 1e-9)


@settings(max_examples=40)
@given(gradient_matrices(K=st.integers(1, 6), D=st.integers(1, 10), **scales))
def test_residual_matches_the_referee(G):
    cert = pareto_stationarity(G)
    _, value = cvxpy_min_norm(G)
    scale = float(torch.linalg.vector_norm(G, dim=1).max())
    assert abs(float(cert.residual) - math.sqrt(max(value, 0))) <= 1e-6 * scale


@settings(max_examples=40)
@given(bucketed_matrices(**scales))
def test_refined_certificate_follows_the_per_bucket_classes(case):
    G, p, kinds = case
    cert = refined_pareto_stationarity(G, p)
    expected = torch.tensor([k != NON_STATIONARY for k in kinds])
    assert torch.equal(cert.bucket_stationary, expected), (kinds, cert)
    assert cert.stationary == all(k != NON_STATIONARY for k in kinds)
    torch.testing.assert_close(cert.measure, cert.bucket_residuals.square().sum().sqrt())
    if cert.stationary:
        assert_refined_stationary(G, p)
        return
    d = cert.direction
    for b, idx in enumerate(p):
        block_inner = G[:, idx] @ d[idx]
        if kinds[b] == NON_STATIONARY:
            assert float(block_inner.max()) < 0
            assert float(cert.bucket_margins[b]) > 0
        else:
            assert bool((d[idx] == 0).all())
    assert float((G @ d).max()) < 0
    assert float(cert.margin) >= float(cert.bucket_margins.sum()) * (1 - 1e-9)


@settings(max_examples=30)
@given(bucketed_matrices(), st.integers(-12, 12))
def test_verdicts_do_not_depend_on_scale(case, exponent):
    G, p, _ = case
    a = refined_pareto_stationarity(G, p)
    b = refined_pareto_stationarity(G * 10.0**exponent, p)
    assert torch.equal(a.bucket_stationary, b.bucket_stationary)


def test_design_counterexample_is_rps_but_not_ps():
    G = torch.tensor([[1.0, 1.0], [-1.0, -2.0]], dtype=torch.float64)
    assert refined_pareto_stationarity(G, Partition.singletons(2)).stationary
    cert = pareto_stationarity(G)
    assert not cert.stationary
    # φ² = 1/13: λ = (8/13, 5/13) gives Gᵀλ = (3/13, -2/13).
    assert abs(float(cert.residual) ** 2 - 1 / 13) < 1e-15


def test_single_language_is_stationary_only_at_zero():
    assert not pareto_stationarity(torch.tensor([[1e-9, 0.0]], dtype=torch.float64)).stationary
    assert pareto_stationarity(torch.zeros(1, 3, dtype=torch.float64)).stationary


def test_atol_makes_tiny_gradients_stationary():
    G = torch.tensor([[1e-10, 0.0], [0.0, 1e-10]], dtype=torch.float64)
    assert not pareto_stationarity(G).stationary
    assert pareto_stationarity(G, atol=1e-9).stationary


@pytest.mark.parametrize("tol", [1e-10, 1e-12, 0.0])
@settings(max_examples=40)
@given(G=gradient_matrices(kind=st.sampled_from([STRONG, WEAK]), K=st.integers(2, 6), **scales))
def test_not_stationary_only_with_a_strict_descent_direction(tol, G):
    # Stationary by construction, up to the rounding of G's entries. At these
    # tolerances the Gram-based φ cannot tell (its floor is ~√ε relative); the
    # certificate may still say "not stationary", but only with a direction whose
    # inner products with the float rows are negative in exact arithmetic.
    cert = pareto_stationarity(G, tol)
    if cert.stationary:
        assert cert.direction is None and cert.margin is None
        return
    assert max(exact_inner(G, cert.direction)) < 0
    assert float(cert.margin) > 0


@settings(max_examples=30)
@given(bucketed_matrices(**scales), st.sampled_from([1e-10, 1e-12]))
def test_refined_verdicts_come_with_verified_bucket_directions(case, tol):
    G, p, _ = case
    cert = refined_pareto_stationarity(G, p, tol)
    for b, idx in enumerate(p):
        if not bool(cert.bucket_stationary[b]):
            assert max(exact_inner(G[:, idx], cert.direction[idx])) < 0
            assert float(cert.bucket_margins[b]) > 0
    if not cert.stationary:
        assert max(exact_inner(G, cert.direction)) < 0


@pytest.mark.parametrize("bad", [float("nan"), -1e-9])
def test_nan_or_negative_tolerance_is_an_error(bad):
    G = torch.tensor([[1.0, 1.0], [-1.0, -2.0]], dtype=torch.float64)
    with pytest.raises(ValueError, match="tol must be a non-negative number"):
        pareto_stationarity(G, bad)
    with pytest.raises(ValueError, match="atol must be a non-negative number"):
        refined_pareto_stationarity(G, Partition.singletons(2), atol=bad)


def test_no_columns_is_stationary_as_mgda_says():
    # Gᵀλ is the empty vector for every λ; MGDA returns the empty update.
    G = torch.zeros(3, 0, dtype=torch.float64)
    cert = pareto_stationarity(G)
    assert cert.stationary and float(cert.residual) == 0.0 and cert.direction is None
    assert MGDA()(G).shape == (0,)
    assert float(cert.weights.sum()) == 1.0


@pytest.mark.parametrize("check", [pareto_stationarity, refined_pareto_stationarity])
def test_default_tolerance_is_1e_6_relative_and_no_absolute_floor(check):
    # README: stationary when φ ≤ atol + tol·max_k‖g_k‖, default tol=1e-6, atol=0.
    # For rows (1, e) and (−1, e), φ = e and max_k‖g_k‖ = √(1 + e²).
    args = () if check is pareto_stationarity else (Partition.single(2),)
    for e, stationary in ((0.99e-6, True), (1.01e-6, False)):
        G = torch.tensor([[1.0, e], [-1.0, e]], dtype=torch.float64)
        assert check(G, *args).stationary is stationary, e
    tiny = torch.tensor([[1e-100, 0.0], [0.0, 1e-100]], dtype=torch.float64)
    assert not check(tiny, *args).stationary  # no absolute floor by default
