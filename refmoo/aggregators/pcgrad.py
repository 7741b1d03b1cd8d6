r"""PCGrad: project each gradient off the gradients it conflicts with, in random order.

Paper: T. Yu, S. Kumar, A. Gupta, S. Levine, K. Hausman, C. Finn, "Gradient
Surgery for Multi-Task Learning", NeurIPS 2020, https://arxiv.org/abs/2001.06782
(Algorithm 1).

Formula: for every row i, start from :math:`g_i^{PC} = g_i` and visit the other
rows j ≠ i in a random order :math:`\pi_i`; whenever
:math:`\langle g_i^{PC}, g_j\rangle < 0` set
:math:`g_i^{PC} \leftarrow g_i^{PC} - \frac{\langle g_i^{PC}, g_j\rangle}{\|g_j\|^2} g_j`.
The output is the **sum** :math:`A(G) = \sum_i g_i^{PC}`, as in the paper and the
authors' code (TorchJD sums too).

Every :math:`g_i^{PC}` is a combination :math:`c_i^\top G` of the original rows,
and each projection only needs :math:`\langle g_i^{PC}, g_j\rangle = (Q c_i)_j`
and :math:`\|g_j\|^2 = Q_{jj}`, so PCGrad is Gram-based: the weights are
:math:`w = \sum_i c_i`. All rows i and all buckets are processed together; only
the K visiting steps are a Python loop. Rows with :math:`g_j = 0` are never
projected on (the inner product with them is zero).

Randomness: :math:`\pi_i` sorts the K numbers ``hash(seed, key, i·K + j)`` of the
counter-based hash in :mod:`._counter_rng`, where ``key`` is the bucket. The order
is therefore a function of (seed, bucket, i) only: reproducible, and the same in
whichever process aggregates the bucket. Each row gets its own permutation (as
in TorchJD, which draws ``torch.randperm`` once per row).

>>> import torch
>>> G = torch.tensor([[1.0, 0.0], [-1.0, 1.0]], dtype=torch.float64)
>>> PCGrad()(G).tolist()  # g1 -> (0.5, 0.5), g2 -> (0, 1); K = 2 needs no random order
[0.5, 1.5]
"""

from __future__ import annotations

import torch
from torch import Tensor

from ._base import GramAggregator
from ._counter_rng import PCGRAD_STREAM, hash64


class PCGrad(GramAggregator):
    """PCGrad with a counter-based random order; see the module docstring."""

    def __init__(self, seed: int = 0) -> None:
        self.seed = int(seed)

    def permutations(self, K: int, keys: Tensor) -> Tensor:
        """The visiting orders ``[B, K, K]``: row ``[b, i]`` is π_i for bucket ``keys[b]``."""
        keys = torch.as_tensor(keys, dtype=torch.int64).reshape(-1, 1, 1)
        counters = torch.arange(K * K, dtype=torch.int64).reshape(1, K, K)
        return hash64(self.seed, PCGRAD_STREAM, keys, counters).argsort(dim=-1)

    def _weights_from_gram(self, Q: Tensor, keys: Tensor) -> Tensor:
        B, K = Q.shape[0], Q.shape[-1]
        Q64 = Q.to(torch.float64)
        diag = torch.diagonal(Q64, dim1=-2, dim2=-1)
        # The coefficients are invariant to the scale of Q; normalising keeps
        # squared norms of 1e-12..1e12 gradients well inside float64's range.
        scale = diag.amax(-1).clamp_min(torch.finfo(torch.float64).tiny)
        Q64 = Q64 / scale[:, None, None]
        diag = diag / scale[:, None]
        C = torch.eye(K, dtype=torch.float64).expand(B, K, K).clone()  # C[b, i] = c_i
        order = self.permutations(K, keys)
        rows = torch.arange(K).expand(B, K)
        for step in range(K):
            j = order[:, :, step]  # [B, K]: the row that each c_i meets now
            Qj = torch.gather(Q64, 1, j.unsqueeze(-1).expand(B, K, K))  # Q[b, j[b, i], :]
            inner = (Qj * C).sum(-1)
            d_j = torch.gather(diag, 1, j)
            project = (inner < 0) & (j != rows) & (d_j > 0)
            coef = torch.where(project, inner / torch.where(project, d_j, 1.0), 0.0)
            C.scatter_add_(2, j.unsqueeze(-1), -coef.unsqueeze(-1))
        return C.sum(1).to(Q.dtype)

    def __repr__(self) -> str:
        return f"PCGrad(seed={self.seed})"
