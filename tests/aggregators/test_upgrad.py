"""UPGrad: exact dual-cone projections, refereed by cvxpy and compared with TorchJD."""

import numpy as np
import pytest
import torch

from refmoo import Mean, UPGrad
from refmoo.aggregators._dual_cone import project_dual_cone

from ._helpers import cases, cvxpy_dual_cone_projection, normalised


def test_two_rows_closed_form():
    G = torch.tensor([[1.0, 0.0], [-1.0, 1.0]], dtype=torch.float64)
    V, residual = UPGrad().projections((G @ G.T)[None])
    # π(g1) = g1 + g2/2 = (1/2, 1/2); π(g2) = g2 + g1 = (0, 1).
    torch.testing.assert_close(V[0], torch.tensor([[1.0, 0.5], [1.0, 1.0]], dtype=torch.float64))
    assert float(residual.max()) < 1e-15
    torch.testing.assert_close(UPGrad()(G), torch.tensor([0.25, 0.75], dtype=torch.float64))


def test_without_conflict_every_row_is_its_own_projection():
    G = torch.tensor([[1.0, 2.0, 0.0], [0.5, 0.0, 1.0], [0.0, 1.0, 1.0]], dtype=torch.float64)
    torch.testing.assert_close(UPGrad()(G), Mean()(G), rtol=1e-15, atol=0.0)


@pytest.mark.parametrize("label,G", cases(seed=2, count=30, K=(1, 6), exponents=(-12, 12)))
def test_every_projection_matches_cvxpy_and_is_certified(label, G):
    K = G.shape[0]
    V, residual = UPGrad().projections((G @ G.T)[None])
    assert bool((V[0] >= torch.eye(K, dtype=torch.float64)).all())  # feasible: v_i ≥ e_i
    assert float(residual.max()) < 1e-9
    A = normalised(G)
    for i in range(K):
        ours = float(np.sum((A.T @ V[0, i].numpy()) ** 2))
        reference = cvxpy_dual_cone_projection(A, np.eye(K)[i])
        assert abs(ours - reference) <= 1e-6 * reference + 1e-9, (i, ours, reference)


@pytest.mark.parametrize("label,G", cases(seed=3, count=40, K=(2, 7), exponents=(-12, 12)))
def test_non_conflicting_on_degenerate_and_rank_deficient_inputs(label, G):
    d = UPGrad()(G)
    norms = G.norm(dim=1)
    assert bool((G @ d >= -1e-10 * norms * norms.max()).all()), (G @ d).tolist()


def test_projection_is_idempotent_and_lands_in_the_cone():
    G = torch.randn(6, 4, dtype=torch.float64, generator=torch.Generator().manual_seed(0))
    Q = (G @ G.T)[None]
    V, _ = UPGrad().projections(Q)
    V2, _ = project_dual_cone(Q, V)
    torch.testing.assert_close(V2, V, rtol=1e-10, atol=1e-12)  # π(π(x)) = π(x)
    assert bool((G @ (V[0] @ G).T >= -1e-12).all())


def test_batched_equals_unbatched():
    G = torch.randn(7, 5, 3, dtype=torch.float64, generator=torch.Generator().manual_seed(1))
    Q = G @ G.transpose(1, 2)
    batched = UPGrad().weights_from_gram(Q)
    for b in range(7):
        torch.testing.assert_close(batched[b], UPGrad().weights_from_gram(Q[b]), rtol=1e-13,
                                   atol=1e-13)


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
def test_dtype_is_preserved(dtype):
    G = torch.tensor([[1.0, 0.0], [-1.0, 1.0], [0.3, -2.0]], dtype=dtype)
    assert UPGrad()(G).dtype == dtype


@pytest.mark.parametrize("K,D", [(2, 5), (3, 8), (5, 9), (6, 6)])
def test_matches_torchjd_without_its_regularisation(K, D):
    pytest.importorskip("quadprog")
    from torchjd.aggregation import UPGrad as TorchJDUPGrad
    from torchjd.linalg import QuadprogProjector

    G = torch.randn(K, D, dtype=torch.float64, generator=torch.Generator().manual_seed(10 * K + D))
    # Full-rank rows: quadprog can then solve TorchJD's QP without its 1e-4 ridge.
    expected = TorchJDUPGrad(projector=QuadprogProjector(norm_eps=0.0, reg_eps=0.0))(G)
    torch.testing.assert_close(UPGrad()(G), expected, rtol=1e-9, atol=1e-9 * float(G.norm()))


def test_torchjd_default_differs_only_by_its_ridge():
    pytest.importorskip("quadprog")
    from torchjd.aggregation import UPGrad as TorchJDUPGrad

    G = torch.randn(4, 7, dtype=torch.float64, generator=torch.Generator().manual_seed(3))
    diff = float((UPGrad()(G) - TorchJDUPGrad()(G)).norm() / UPGrad()(G).norm())
    assert diff < 1e-2
