"""proofs/first_order.md: Gordan, PS realised at Pareto optima, blockwise optimality."""

import cvxpy as cp
import numpy as np
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from refmoo import pareto_stationarity, refined_pareto_stationarity, solve_min_norm
from refmoo.testing import (
    NON_STATIONARY,
    STRONG,
    WEAK,
    assert_not_pareto_stationary,
    bucketed_matrices,
    degenerate_matrices,
    gradient_matrices,
)

from ._referee import REFEREE_TOL, phi, row_scale

scales = {"min_exp": -6, "max_exp": 6}
any_matrix = st.one_of(gradient_matrices(K=st.integers(1, 6), D=st.integers(1, 8), **scales),
                       degenerate_matrices(min_exp=-6, max_exp=6))
ps_matrix = gradient_matrices(kind=st.sampled_from([STRONG, WEAK]), K=st.integers(1, 4),
                              D=st.integers(1, 4), **scales)


@settings(max_examples=60)
@given(any_matrix)
def test_min_norm_variational_inequality(G):
    sol = solve_min_norm(G @ G.T)
    lam = sol.weights
    a = G.T @ lam
    sq = float(a @ a)
    inner = G @ a
    tol = 1e-12 * row_scale(G) ** 2
    assert float(inner.min()) >= sq - tol
    support = lam > 1e-9
    assert float((inner[support] - sq).abs().max()) <= tol
    assert abs(float(inner.min()) - sq) <= tol
    # ‖a‖ is φ(G) as the referee computes it.
    assert abs(sq ** 0.5 - phi(G)) <= REFEREE_TOL * row_scale(G)


def _best_common_descent(G: torch.Tensor) -> float:
    """min over ‖d‖_∞ ≤ 1 of max_k ⟨g_k, d⟩ (an LP, by cvxpy).

    Negative exactly when a strict common descent direction exists.
    """
    A = G.numpy() / max(row_scale(G), 1e-300)
    d, t = cp.Variable(A.shape[1]), cp.Variable()
    cp.Problem(cp.Minimize(t), [A @ d <= t, cp.abs(d) <= 1]).solve(solver=cp.CLARABEL)
    return float(t.value)


@settings(max_examples=40)
@given(gradient_matrices(K=st.integers(1, 5), D=st.integers(1, 6), **scales))
def test_gordan_alternative(G):
    cert = pareto_stationarity(G)
    if cert.stationary:
        # First alternative: then no direction descends strictly for every row.
        assert _best_common_descent(G) >= -1e-7
        with pytest.raises(AssertionError, match="Pareto stationary"):
            assert_not_pareto_stationary(G)
        return
    # Second alternative, with the min-norm direction and its exact margin −φ².
    d = assert_not_pareto_stationary(G)
    assert float((G @ d).max()) < 0
    inner = G @ cert.direction
    assert abs(float(inner.max()) + float(cert.residual) ** 2) <= 1e-12 * row_scale(G) ** 2


@settings(max_examples=40)
@given(gradient_matrices(kind=NON_STATIONARY, K=st.integers(1, 5), D=st.integers(1, 6),
                         **scales), st.integers(0, 2**32 - 1))
def test_not_ps_gives_quantified_descent_for_smooth_objectives(G, seed):
    # L_k(θ) = ⟨g_k, θ⟩ + ½ θᵀH_kθ with indefinite H_k: smooth with L = max_k ‖H_k‖₂.
    K, D = G.shape
    rng = np.random.default_rng(seed)
    H = rng.standard_normal((K, D, D)) * 10.0 ** rng.integers(-2, 3)
    H = torch.from_numpy((H + H.transpose(0, 2, 1)) / 2)
    L = float(torch.linalg.matrix_norm(H, ord=2).max())
    cert = pareto_stationarity(G)
    d, phi_sq = cert.direction, float(cert.residual) ** 2
    for t in (1.0 / L, 0.5 / L, 1e-3 / L):
        theta = t * d
        losses = G @ theta + 0.5 * torch.einsum("i,kij,j->k", theta, H, theta)
        assert float(losses.max()) <= -0.5 * t * phi_sq * (1 - 1e-9)


def _sublevel_set_is_origin(G: torch.Tensor, seed: int = 0) -> bool:
    """Is {θ : ⟨g_k, θ⟩ + ½‖θ‖² ≤ 0 for all k} = {0}?  Judged by cvxpy, plus samples.

    The set is {0} exactly when no d has max_k ⟨g_k, d⟩ < 0: a point θ ≠ 0 of the set
    gives d = θ, and such a d gives the points r·d for 0 < r < 2·m/‖d‖², where m is
    the margin. The cvxpy LP decides the latter; that LP is well conditioned, unlike
    optimising over a set with no interior. Random points of every norm must also
    leave the set.
    """
    if _best_common_descent(G) < -1e-7:
        return False
    theta = torch.from_numpy(np.random.default_rng(seed).standard_normal((64, G.shape[1])))
    theta *= (row_scale(G) or 1.0) * torch.logspace(-6, 2, 64, dtype=torch.float64)[:, None]
    losses = theta @ G.T + 0.5 * (theta * theta).sum(1, keepdim=True)
    return bool((losses.amax(1) > 0).all())


@settings(max_examples=20)
@given(ps_matrix, st.integers(0, 2**32 - 1))
def test_ps_matrices_are_jacobians_at_pareto_optima(G, seed):
    lam = pareto_stationarity(G).weights
    theta = torch.from_numpy(np.random.default_rng(seed).standard_normal((5, G.shape[1])))
    losses = theta @ G.T + 0.5 * (theta * theta).sum(1, keepdim=True)
    # Σ_k λ_k L_k(θ) = ½‖θ‖² because Gᵀλ = 0.
    expected = 0.5 * (theta * theta).sum(1)
    assert torch.allclose(losses @ lam, expected, rtol=1e-9, atol=1e-9 * row_scale(G))
    assert _sublevel_set_is_origin(G)


@settings(max_examples=15)
@given(gradient_matrices(kind=WEAK, K=st.integers(2, 4), D=st.integers(2, 4), **scales))
def test_stricter_conditions_fail_at_constructed_pareto_optima(G):
    # G is realised at the Pareto optimum θ = 0 ...
    assert _sublevel_set_is_origin(G)
    # ... yet it is not strongly stationary: no strictly positive weights cancel it
    # (LP: maximise the smallest weight subject to Gᵀλ = 0, λ ∈ Δ) ...
    A = G.numpy() / row_scale(G)
    lam = cp.Variable(A.shape[0])
    problem = cp.Problem(cp.Maximize(cp.min(lam)), [A.T @ lam == 0, cp.sum(lam) == 1, lam >= 0])
    problem.solve(solver=cp.CLARABEL)
    assert problem.value <= 1e-7
    # ... and the mean loss is not stationary there.
    assert float(torch.linalg.vector_norm(G.mean(0))) > 1e-6 * row_scale(G)


@settings(max_examples=15)
@given(bucketed_matrices(K=st.integers(2, 4), bucket_sizes=st.integers(1, 3), max_buckets=3,
                         contiguous=None, min_exp=-3, max_exp=3))
def test_blockwise_optimality_is_characterised_by_rps(case):
    G, p, kinds = case
    cert = refined_pareto_stationarity(G, p)
    for b, idx in enumerate(p):
        block = G[:, idx]
        if kinds[b] == NON_STATIONARY:
            # A block-only move decreases every loss: 0 is not blockwise optimal.
            d = assert_not_pareto_stationary(block)
            t = 0.5 * float(-(block @ d).max()) / float(d @ d)  # below 2·margin/‖d‖²
            losses = t * (block @ d) + 0.5 * t * t * float(d @ d)
            assert float(losses.max()) < 0
            assert not bool(cert.bucket_stationary[b])
        else:
            # Every stationary block is a Pareto optimum of its block problem.
            assert _sublevel_set_is_origin(block)
            assert bool(cert.bucket_stationary[b])
