"""The batched min-norm solver against cvxpy, KKT, and TorchJD."""

import numpy as np
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from refmoo import solve_min_norm
from refmoo.min_norm import min_norm_gap
from refmoo.referee import cvxpy_min_norm
from refmoo.testing import degenerate_matrices, gradient_matrices

any_matrix = st.one_of(
    gradient_matrices(K=st.integers(1, 8), D=st.integers(1, 12), min_exp=-12, max_exp=12),
    degenerate_matrices(min_exp=-12, max_exp=12),
)


def _scale(G):
    return float((G * G).sum(1).max())


@settings(max_examples=60)
@given(any_matrix)
def test_objective_matches_cvxpy(G):
    sol = solve_min_norm(G @ G.T)
    _, referee = cvxpy_min_norm(G)
    ours = float(sol.value)
    # Relative agreement to 1e-6, with a floor at the referee's own accuracy
    # (its tolerances are 1e-12 on the normalised problem).
    assert abs(ours - referee) <= 1e-6 * referee + 1e-11 * _scale(G)


@settings(max_examples=80)
@given(any_matrix)
def test_kkt_conditions_hold(G):
    Q = G @ G.T
    lam = solve_min_norm(Q).weights
    assert bool((lam >= 0).all())
    assert abs(float(lam.sum()) - 1.0) < 1e-12
    v = Q @ lam
    f = float(lam @ v)
    tol = 1e-12 * _scale(G)
    # Stationarity with multiplier f: (Qλ)_j ≥ f for all j, equality on the support.
    assert float(v.min()) >= f - tol
    support = lam > 1e-9
    assert float((v[support] - f).abs().max()) <= tol


@settings(max_examples=40)
@given(any_matrix)
def test_certificate_brackets_the_referee(G):
    sol = solve_min_norm(G @ G.T)
    _, referee = cvxpy_min_norm(G)
    slack = 1e-10 * _scale(G)
    assert float(sol.lower_bound) <= referee + slack
    assert referee <= float(sol.value) + slack
    assert float(sol.value) - float(sol.lower_bound) <= 2 * float(sol.gap) + 1e-15 * _scale(G)


@settings(max_examples=20)
@given(st.lists(gradient_matrices(K=4, D=st.integers(1, 6)), min_size=1, max_size=6))
def test_batched_equals_one_at_a_time(mats):
    Q = torch.stack([G @ G.T for G in mats])
    batched = solve_min_norm(Q).weights
    for b, G in enumerate(mats):
        single = solve_min_norm(G @ G.T).weights
        torch.testing.assert_close(batched[b], single, rtol=0, atol=1e-12)


def test_batch_shape_and_dtype_are_preserved():
    G = torch.randn(3, 2, 4, 6, dtype=torch.float64)
    Q = G @ G.transpose(-1, -2)
    sol = solve_min_norm(Q)
    assert sol.weights.shape == (3, 2, 4) and sol.weights.dtype == torch.float64
    assert sol.value.shape == (3, 2)
    assert solve_min_norm(Q.float()).weights.dtype == torch.float32


def test_single_objective_has_unit_weight():
    Q = torch.tensor([[[2.0]]], dtype=torch.float64)
    assert solve_min_norm(Q).weights.tolist() == [[1.0]]


def test_exact_conflict_reaches_zero():
    g = torch.tensor([1.0, -2.0, 3.0], dtype=torch.float64)
    G = torch.stack([g, -3.0 * g])
    sol = solve_min_norm(G @ G.T)
    torch.testing.assert_close(sol.weights, torch.tensor([0.75, 0.25], dtype=torch.float64))
    assert float(sol.value) < 1e-24


@settings(max_examples=40)
@given(gradient_matrices(K=st.integers(2, 8), D=st.integers(2, 12)))
def test_never_worse_than_torchjd_frank_wolfe(G):
    from torchjd.aggregation import MGDA as TorchJDMGDA

    Q = G @ G.T
    ours = solve_min_norm(Q)
    theirs = TorchJDMGDA(epsilon=1e-9, max_iters=10_000)(G)
    # TorchJD stops Frank-Wolfe on a step-size threshold, so it can only be
    # as good as the exact optimum, never better.
    assert float(ours.value) <= float(theirs @ theirs) + 1e-12 * _scale(G)


def test_gap_of_foreign_weights_detects_suboptimality():
    G = torch.tensor([[1.0, 0.0], [0.0, 1.0]], dtype=torch.float64)
    Q = G @ G.T
    assert float(min_norm_gap(Q, torch.tensor([0.5, 0.5], dtype=torch.float64))) == 0.0
    assert float(min_norm_gap(Q, torch.tensor([0.9, 0.1], dtype=torch.float64))) == pytest.approx(
        0.82 - 0.1)


def test_rank_deficient_batch_matches_cvxpy():
    rng = np.random.default_rng(0)
    mats = [torch.tensor(rng.standard_normal((8, 2)) @ rng.standard_normal((2, 5)))
            for _ in range(20)]
    Q = torch.stack([G @ G.T for G in mats])
    values = solve_min_norm(Q).value
    for G, ours in zip(mats, values, strict=True):
        _, referee = cvxpy_min_norm(G)
        assert abs(float(ours) - referee) <= 1e-6 * referee + 1e-11 * _scale(G)


@settings(max_examples=30)
@given(st.lists(st.one_of(gradient_matrices(K=5, D=st.integers(1, 8)),
                          degenerate_matrices(K=5)), min_size=1, max_size=8))
def test_update_and_refactorisation_paths_agree(mats):
    from refmoo.min_norm import _InverseCorral, _SolvedCorral, _wolfe

    Q = torch.stack([G @ G.T for G in mats])
    scale = torch.diagonal(Q, dim1=-2, dim2=-1).amax(-1).clamp_min(1e-300)
    Qn = Q / scale[:, None, None]
    tol = 1e-13
    fast, unstable, _ = _wolfe(Qn, _InverseCorral, tol, 60)
    robust, _, _ = _wolfe(Qn, _SolvedCorral, tol, 60)
    value = lambda lam: (lam * (Qn @ lam.unsqueeze(-1)).squeeze(-1)).sum(-1)  # noqa: E731
    ok = ~unstable
    torch.testing.assert_close(value(fast)[ok], value(robust)[ok], rtol=0, atol=1e-12)


@settings(max_examples=30)
@given(st.lists(gradient_matrices(K=4, D=st.integers(4, 12), rank=None), min_size=1, max_size=8))
def test_interior_shortcut_agrees_with_wolfe(mats):
    from refmoo.min_norm import _interior_solutions, _InverseCorral, _wolfe

    Q = torch.stack([G @ G.T for G in mats])
    Qn = Q / torch.diagonal(Q, dim1=-2, dim2=-1).amax(-1).clamp_min(1e-300)[:, None, None]
    tol = 1e-13
    interior, solved = _interior_solutions(Qn, tol)
    wolfe, _, _ = _wolfe(Qn, _InverseCorral, tol, 60)
    torch.testing.assert_close(interior[solved], wolfe[solved], rtol=0, atol=1e-9)
