"""Aligned-MTL: the balance transformation, rank handling, TorchJD."""

import pytest
import torch
from torchjd.aggregation import AlignedMTL as TorchJDAlignedMTL

from refmoo import AlignedMTL


def test_orthogonal_rows_closed_form():
    G = torch.tensor([[2.0, 0.0], [0.0, 1.0]], dtype=torch.float64)
    # B = diag(1/2, 1): aligned rows (1, 0) and (0, 1), then averaged.
    torch.testing.assert_close(AlignedMTL()(G), torch.tensor([0.5, 0.5], dtype=torch.float64))


@pytest.mark.parametrize("seed", range(4))
def test_aligned_rows_are_orthogonal_with_the_smallest_singular_value(seed):
    gen = torch.Generator().manual_seed(seed)
    K = 2 + seed
    G = torch.randn(K, 9, dtype=torch.float64, generator=gen)
    Q = G @ G.T
    lam, V = torch.linalg.eigh(Q)
    B = lam[0].sqrt() * V @ torch.diag(lam.rsqrt()) @ V.T
    aligned = B @ G
    torch.testing.assert_close(aligned @ aligned.T, lam[0] * torch.eye(K, dtype=torch.float64))
    torch.testing.assert_close(AlignedMTL()(G), aligned.mean(0))


def test_rank_deficient_keeps_only_the_row_space():
    # Rows span a 2-D space: λ_r is the smallest non-zero eigenvalue.
    G = torch.tensor([[1.0, 0.0, 0.0], [0.0, 3.0, 0.0], [1.0, 3.0, 0.0]], dtype=torch.float64)
    lam, V = torch.linalg.eigh(G @ G.T)
    V2, lam2 = V[:, 1:], lam[1:]
    B = lam2[0].sqrt() * V2 @ torch.diag(lam2.rsqrt()) @ V2.T
    torch.testing.assert_close(AlignedMTL()(G), (B @ G).mean(0))


def test_zero_matrix_gives_zero():
    assert torch.equal(AlignedMTL()(torch.zeros(3, 2, dtype=torch.float64)),
                       torch.zeros(2, dtype=torch.float64))


@pytest.mark.parametrize("K,D", [(2, 5), (3, 8), (5, 9), (6, 6)])
def test_matches_torchjd(K, D):
    G = torch.randn(K, D, dtype=torch.float64, generator=torch.Generator().manual_seed(K * 5 + D))
    torch.testing.assert_close(AlignedMTL()(G), TorchJDAlignedMTL()(G), rtol=1e-9, atol=1e-9)


@pytest.mark.parametrize("c", [1e-12, 1e-4, 1e6, 1e12])
def test_positively_homogeneous_over_scales(c):
    G = torch.randn(4, 5, dtype=torch.float64, generator=torch.Generator().manual_seed(1))
    G[2] = -3.0 * G[0]  # rank-deficient, exact conflict
    torch.testing.assert_close(AlignedMTL()(c * G), c * AlignedMTL()(G), rtol=1e-9, atol=0.0)


def test_batched_equals_unbatched():
    G = torch.randn(5, 4, 3, dtype=torch.float64, generator=torch.Generator().manual_seed(2))
    Q = G @ G.transpose(1, 2)
    batched = AlignedMTL().weights_from_gram(Q)
    for b in range(5):
        torch.testing.assert_close(batched[b], AlignedMTL().weights_from_gram(Q[b]), rtol=1e-12,
                                   atol=1e-12)


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
def test_dtype_is_preserved(dtype):
    G = torch.tensor([[1.0, 0.0], [-1.0, 1.0], [0.3, 2.0]], dtype=dtype)
    assert AlignedMTL()(G).dtype == dtype
