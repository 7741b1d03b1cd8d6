"""CAGrad: closed forms, cvxpy on the primal max-min problem, TorchJD, the c ≥ 1 guarantee."""

import numpy as np
import pytest
import torch
from torchjd.aggregation import CAGrad as TorchJDCAGrad

from refmoo import CAGrad, Mean
from refmoo.testing import assert_non_conflicting

from ._helpers import cases, cvxpy_cagrad_value, normalised


def test_orthogonal_equal_rows_closed_form():
    G = torch.tensor([[1.0, 0.0], [0.0, 1.0]], dtype=torch.float64)
    # w* = (1/2, 1/2) by symmetry, so g_w ∥ g0 and d = (1 + c) g0.
    for c in (0.2, 0.5, 2.0):
        torch.testing.assert_close(CAGrad(c=c, rescale=0)(G), (1 + c) * G.mean(0))


@pytest.mark.parametrize("rescale,factor", [(0, lambda c: 1 + c),
                                            (1, lambda c: (1 + c) / (1 + c * c)),
                                            (2, lambda c: 1.0)])
def test_rescale_conventions_on_identical_rows(rescale, factor):
    g = torch.tensor([3.0, -1.0, 2.0], dtype=torch.float64)
    G = torch.stack([g, g, g])
    for c in (0.4, 1.0, 3.0):
        torch.testing.assert_close(CAGrad(c=c, rescale=rescale)(G), factor(c) * g)


def test_c_zero_is_the_mean():
    G = torch.randn(4, 6, dtype=torch.float64, generator=torch.Generator().manual_seed(0))
    torch.testing.assert_close(CAGrad(c=0.0)(G), Mean()(G), rtol=1e-15, atol=0.0)


@pytest.mark.parametrize("c", [0.1, 0.4, 0.9, 1.0, 3.0])
@pytest.mark.parametrize("label,G", cases(seed=4, count=8, K=(1, 6), exponents=(-12, 12)))
def test_worst_case_improvement_matches_cvxpy(label, G, c):
    sol = CAGrad(c=c, rescale=0).solve((G @ G.T)[None])
    A = normalised(G)
    d = sol.weights[0].numpy() @ A
    g0 = A.mean(0)
    assert np.linalg.norm(d - g0) <= c * np.linalg.norm(g0) * (1 + 1e-9) + 1e-15  # in the ball
    reference = cvxpy_cagrad_value(A, c)
    assert abs(float((A @ d).min()) - reference) <= 1e-6 * abs(reference) + 1e-9
    # The dual certificate: F(w) − min_k ⟨g_k, d⟩ (√eps-level only when G is stationary).
    assert float(sol.gap[0]) <= 1e-7


@pytest.mark.parametrize("label,G", cases(seed=5, count=30, K=(2, 7), exponents=(-12, 12)))
def test_non_conflicting_for_c_at_least_one(label, G):
    for c in (1.0, 2.5):
        assert_non_conflicting(CAGrad(c=c), G, rtol=1e-9, scale_tol=1e-10)


def test_c_below_one_can_conflict():
    # The ball around g0 = (-1/2, ε/2) of radius c‖g0‖ < ‖g0‖ misses d_1 ≥ 0.
    G = torch.tensor([[1.0, 0.0], [-2.0, 1e-3]], dtype=torch.float64)
    assert float((G @ CAGrad(c=0.9)(G)).min()) < -1e-3
    assert float((G @ CAGrad(c=1.0)(G)).min()) >= 0.0


def test_stationary_case_returns_the_projection_of_g0():
    g = torch.tensor([1.0, 2.0, -1.0], dtype=torch.float64)
    G = torch.stack([g, -2.0 * g])  # g0 = -g/2; the dual cone is g's orthogonal complement
    torch.testing.assert_close(CAGrad(c=1.0)(G), torch.zeros(3, dtype=torch.float64),
                               rtol=0.0, atol=1e-15)
    # With c < 1 the ball misses the cone: d is the ball point closest to it.
    torch.testing.assert_close(CAGrad(c=0.5, rescale=0)(G), -0.25 * g, rtol=1e-12, atol=1e-15)


def test_average_below_gram_rounding_stays_non_conflicting():
    # g0 = -5e-10·g: its squared norm is below what the Gram can resolve.
    g = torch.tensor([1.0, 2.0, -1.0], dtype=torch.float64)
    G = torch.stack([g, -(1 + 1e-9) * g])
    assert_non_conflicting(CAGrad(c=1.0), G, rtol=1e-9, scale_tol=1e-14)
    torch.testing.assert_close(CAGrad(c=0.5, rescale=0)(G), G.mean(0), rtol=0.0, atol=0.0)


@pytest.mark.parametrize("K,D", [(2, 5), (3, 8), (5, 9), (6, 4)])
def test_matches_torchjd_without_rescale(K, D):
    G = torch.randn(K, D, dtype=torch.float64, generator=torch.Generator().manual_seed(K * D))
    ours = CAGrad(c=0.5, rescale=0)(G)
    theirs = TorchJDCAGrad(c=0.5)(G)
    # TorchJD solves the dual with CLARABEL's default tolerances: its d agrees to about
    # 1e-4 and is never better on the objective both maximise.
    torch.testing.assert_close(ours, theirs, rtol=1e-3, atol=1e-3 * float(G.norm()))
    assert float((G @ ours).min()) >= float((G @ theirs).min()) - 1e-12


def test_batched_equals_unbatched():
    G = torch.randn(9, 5, 4, dtype=torch.float64, generator=torch.Generator().manual_seed(2))
    Q = G @ G.transpose(1, 2)
    batched = CAGrad().weights_from_gram(Q)
    for b in range(9):
        torch.testing.assert_close(batched[b], CAGrad().weights_from_gram(Q[b]), rtol=1e-12,
                                   atol=1e-12)


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
def test_dtype_is_preserved(dtype):
    G = torch.tensor([[1.0, 0.0], [-1.0, 1.0], [0.3, -2.0]], dtype=dtype)
    assert CAGrad()(G).dtype == dtype


def test_invalid_parameters_are_rejected():
    with pytest.raises(ValueError, match="c must be"):
        CAGrad(c=-0.1)
    with pytest.raises(ValueError, match="rescale"):
        CAGrad(rescale=3)
