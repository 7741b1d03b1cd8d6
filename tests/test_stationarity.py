"""Certificates against constructed stationarity classes, refereed by cvxpy."""

import math

import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from refmoo import Partition, pareto_stationarity, refined_pareto_stationarity
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
    assert float(cert.margin) == float(-inner.max())
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
