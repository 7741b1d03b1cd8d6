r"""The K(K+1)/2 numbers a sharded run exchanges to agree on a Gram matrix.

A rank's partial Gram :math:`S_rS_r^\top` is symmetric in exact arithmetic, but a
BLAS ``S @ S.T`` sums entries (i, j) and (j, i) in different orders on some
CPUs (MKL on AVX-512), so the computed matrix can be asymmetric in the last
bit. Exchanging only the upper triangle and mirroring it makes the all-reduced
matrix symmetric by construction, on every machine, and sends K(K+1)/2
numbers instead of K² (proofs/gram.md).

>>> import torch
>>> Q = torch.tensor([[4.0, 2.0], [2.0, 3.0]])
>>> packed = upper_triangle(Q)
>>> packed.tolist()
[4.0, 2.0, 3.0]
>>> torch.equal(from_upper_triangle(packed, 2), Q)
True
"""

from __future__ import annotations

import torch
from torch import Tensor


def _indices(K: int, device) -> tuple[Tensor, Tensor]:
    rows, cols = torch.triu_indices(K, K, device=device)
    return rows, cols


def upper_triangle(Q: Tensor) -> Tensor:
    """The upper triangle of ``Q [..., K, K]`` (diagonal included), row by row:
    ``[..., K(K+1)/2]``."""
    K = Q.shape[-1]
    if Q.dim() < 2 or Q.shape[-2] != K:
        raise ValueError(f"expected square matrices [..., K, K], got shape {tuple(Q.shape)}")
    rows, cols = _indices(K, Q.device)
    return Q[..., rows, cols]


def from_upper_triangle(packed: Tensor, K: int) -> Tensor:
    """The symmetric matrices ``[..., K, K]`` whose upper triangle is ``packed``."""
    n = K * (K + 1) // 2
    if packed.shape[-1] != n:
        raise ValueError(f"K = {K} needs {n} packed entries, got {packed.shape[-1]}")
    rows, cols = _indices(K, packed.device)
    Q = packed.new_empty(*packed.shape[:-1], K, K)
    Q[..., rows, cols] = packed
    Q[..., cols, rows] = packed
    return Q


def symmetric_gram(S: Tensor) -> Tensor:
    """``S @ S.T`` for a K×n block, made exactly symmetric by mirroring its upper triangle."""
    K = S.shape[0]
    return from_upper_triangle(upper_triangle(S @ S.T), K)
