"""IMTL-G: equal projections on the unit gradients, the pseudo-inverse generalisation, TorchJD."""

import pytest
import torch
from torchjd.aggregation import IMTLG as TorchJDIMTLG

from refmoo import IMTLG


def test_orthogonal_rows_closed_form():
    G = torch.tensor([[2.0, 0.0], [0.0, 1.0]], dtype=torch.float64)
    torch.testing.assert_close(IMTLG().weights(G), torch.tensor([1 / 3, 2 / 3],
                                                                 dtype=torch.float64))


@pytest.mark.parametrize("seed", range(6))
def test_projections_on_unit_gradients_are_equal_and_weights_sum_to_one(seed):
    gen = torch.Generator().manual_seed(seed)
    K = 2 + seed % 4
    G = torch.randn(K, 8, dtype=torch.float64, generator=gen) * \
        torch.logspace(-3, 3, K, dtype=torch.float64).unsqueeze(1)
    w = IMTLG().weights(G)
    d = w @ G
    projections = G @ d / G.norm(dim=1)
    torch.testing.assert_close(projections, projections[0].expand(K), rtol=1e-9, atol=0.0)
    assert abs(float(w.sum()) - 1.0) < 1e-12


def test_dependent_rows_use_least_squares_on_the_unit_rows():
    # g3 = g1 + g2: equal projections are impossible; c = C⁺1 minimises ‖Ud − 1‖.
    G = torch.tensor([[1.0, 0.0, 0.0], [0.0, 2.0, 0.0], [1.0, 2.0, 0.0]], dtype=torch.float64)
    n = G.norm(dim=1)
    U = G / n.unsqueeze(1)
    v = (torch.linalg.pinv(U @ U.T, hermitian=True) @ torch.ones(3, dtype=torch.float64)) / n
    torch.testing.assert_close(IMTLG().weights(G), v / v.sum())
    # TorchJD's Q⁺n weighs the residual by the norms: a different answer here.
    Q = G @ G.T
    v_torchjd = torch.linalg.pinv(Q) @ n
    assert not torch.allclose(IMTLG().weights(G), v_torchjd / v_torchjd.sum(), atol=1e-3)


def test_zero_row_gets_no_weight_and_leaves_the_others_alone():
    G = torch.tensor([[2.0, 1.0], [0.0, 0.0], [-1.0, 3.0]], dtype=torch.float64)
    w = IMTLG().weights(G)
    assert float(w[1]) == 0.0
    torch.testing.assert_close(w[[0, 2]], IMTLG().weights(G[[0, 2]]))


def test_opposite_rows_give_no_direction():
    g = torch.tensor([1.0, -3.0, 2.0], dtype=torch.float64)
    assert torch.equal(IMTLG()(torch.stack([g, -g])), torch.zeros(3, dtype=torch.float64))


def test_can_conflict_with_every_row():
    # 1ᵀQ⁻¹n < 0 here, so d is the negative of the equal-projection direction.
    G = torch.tensor([[-1.0, 0.0, 0.0], [0.0, 1.0, 2.0], [-2.0, 0.0, -1.0]], dtype=torch.float64)
    assert bool((G @ IMTLG()(G) < 0).all())


@pytest.mark.parametrize("K,D", [(2, 5), (3, 8), (5, 9), (6, 6)])
def test_matches_torchjd_for_independent_rows(K, D):
    G = torch.randn(K, D, dtype=torch.float64, generator=torch.Generator().manual_seed(K * 7 + D))
    torch.testing.assert_close(IMTLG()(G), TorchJDIMTLG()(G), rtol=1e-9, atol=1e-9)


@pytest.mark.parametrize("c", [1e-12, 1e-4, 1e6, 1e12])
def test_positively_homogeneous_over_scales(c):
    G = torch.randn(4, 5, dtype=torch.float64, generator=torch.Generator().manual_seed(1))
    G[3] = G[0]  # rank-deficient
    torch.testing.assert_close(IMTLG()(c * G), c * IMTLG()(G), rtol=1e-9, atol=0.0)


def test_batched_equals_unbatched():
    G = torch.randn(5, 4, 3, dtype=torch.float64, generator=torch.Generator().manual_seed(2))
    Q = G @ G.transpose(1, 2)
    batched = IMTLG().weights_from_gram(Q)
    for b in range(5):
        torch.testing.assert_close(batched[b], IMTLG().weights_from_gram(Q[b]), rtol=1e-12,
                                   atol=1e-12)


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
def test_dtype_is_preserved(dtype):
    G = torch.tensor([[1.0, 0.0], [-1.0, 1.0], [0.3, 2.0]], dtype=dtype)
    assert IMTLG()(G).dtype == dtype
