r"""Bucket-level MOO: :math:`A_P(G) = \mathrm{concat}_b\, A(G^b)`.

For Gram-based aggregators every bucket Gram :math:`G^b G^{b\top}` is computed
in one batched pass per bucket size, all buckets are solved together, and the
weights are applied in one more pass. No Python loop runs over buckets.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import Tensor

from ._checks import GradientError, check_finite, check_matrix, locate_non_finite
from .aggregators._base import Aggregator, GramAggregator
from .partitions._partition import Partition, size_groups


def _bucket_order(G: Tensor, partition: Partition) -> Tensor:
    return G if partition.is_contiguous else G[:, partition.order]


def _group_block(Gp: Tensor, group) -> Tensor:
    """The group's buckets as a ``[K, n, size]`` tensor (a view when consecutive)."""
    K = Gp.shape[0]
    n = group.buckets.numel()
    if group.consecutive:
        start = int(group.starts[0])
        return Gp[:, start:start + n * group.size].view(K, n, group.size) \
            if Gp.is_contiguous() else Gp[:, start:start + n * group.size].reshape(K, n, group.size)
    return Gp[:, group.columns()]


def bucket_grams(G: Tensor, partition: Partition) -> Tensor:
    """All bucket Gram matrices ``Q[b] = G^b G^{bᵀ}``, shape ``[M, K, K]``.

    >>> G = torch.tensor([[1.0, 2.0, 0.0], [0.0, 1.0, 1.0]])
    >>> bucket_grams(G, Partition.from_sizes([1, 2]))[1].tolist()
    [[4.0, 2.0], [2.0, 2.0]]
    """
    check_matrix(G)
    partition.check_columns(G)
    K = G.shape[0]
    Gp = _bucket_order(G, partition)
    Q = G.new_empty(len(partition), K, K)
    for group in size_groups(partition):
        block = _group_block(Gp, group).transpose(0, 1)  # [n, K, size]
        Q[group.buckets] = torch.bmm(block, block.transpose(1, 2))
    return Q


def combine(G: Tensor, weights: Tensor, partition: Partition) -> Tensor:
    """Apply per-bucket weights ``[M, K]``: bucket b of the result is ``weights[b] @ G^b``."""
    partition.check_columns(G)
    K = G.shape[0]
    if weights.shape != (len(partition), K):
        raise ValueError(
            f"weights must have shape {(len(partition), K)}, got {tuple(weights.shape)}")
    Gp = _bucket_order(G, partition)
    weights = weights.to(G.dtype)
    out_p = G.new_empty(G.shape[1])
    for group in size_groups(partition):
        block = _group_block(Gp, group)  # [K, n, size]
        part = torch.einsum("kns,nk->ns", block, weights[group.buckets])
        if group.consecutive:
            start = int(group.starts[0])
            out_p[start:start + part.numel()] = part.reshape(-1)
        else:
            out_p[group.columns().reshape(-1)] = part.reshape(-1)
    if partition.is_contiguous:
        return out_p
    out = torch.empty_like(out_p)
    out[partition.order] = out_p
    return out


def bucketwise(aggregator: Aggregator, G: Tensor, partition: Partition, *,
               keys: Sequence[int] | Tensor | None = None) -> Tensor:
    """Apply ``aggregator`` independently on every bucket of ``partition``.

    Bucket b is aggregated with ``key=keys[b]`` (default ``b``), so randomised
    aggregators give each bucket its own reproducible randomness. A rank that
    owns some buckets of a larger partition passes their global indices as
    ``keys`` and draws exactly what the single-process reference draws.

    >>> from refmoo import MGDA
    >>> G = torch.tensor([[1.0, 1.0], [-1.0, -2.0]], dtype=torch.float64)
    >>> a = bucketwise(MGDA(), G, Partition.singletons(2))  # RPS: both buckets stationary
    >>> bool(a.abs().max() < 1e-15)
    True
    """
    check_matrix(G)
    partition.check_columns(G)
    keys = torch.arange(len(partition)) if keys is None else \
        torch.as_tensor(keys, dtype=torch.long).reshape(-1)
    if keys.numel() != len(partition):
        raise ValueError(f"{keys.numel()} keys given for {len(partition)} buckets")
    if isinstance(aggregator, GramAggregator):
        Q = bucket_grams(G, partition)
        check_grams_finite(Q, G, partition)
        return combine(G, aggregator.weights_from_gram(Q, keys=keys), partition)
    check_finite(G, partition)
    return aggregator.aggregate_partitioned(G, partition, keys)


def check_grams_finite(Q: Tensor, G: Tensor, partition: Partition) -> None:
    """Validate G through its bucket Grams: a NaN/Inf entry of G makes its bucket's
    diagonal non-finite, so the K·D scan runs only when something is wrong."""
    diagonal = torch.diagonal(Q, dim1=-2, dim2=-1)
    if bool(torch.isfinite(diagonal).all()):
        return
    locate_non_finite(G, partition)
    b, k = (int(i) for i in (~torch.isfinite(diagonal)).nonzero()[0])
    raise GradientError(
        f"the squared norm of row {k} (language {k}) in bucket {b} ({partition.names[b]!r}) "
        f"overflows {G.dtype}; cast the gradients to float64")
