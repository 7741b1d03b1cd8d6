"""Input validation shared by every public entry point.

Errors name the offending language (row) and bucket so that a user can find the
bad gradient in a run of thousands of buckets.
"""

from __future__ import annotations

import torch
from torch import Tensor


class GradientError(ValueError):
    """A gradient matrix that cannot be aggregated: wrong shape or non-finite values."""


def check_matrix(G: Tensor, *, name: str = "G") -> Tensor:
    """Validate a K×D gradient matrix and return it unchanged."""
    if not isinstance(G, Tensor):
        raise TypeError(f"{name} must be a torch.Tensor, got {type(G).__name__}")
    if G.dim() != 2:
        raise GradientError(
            f"{name} must be 2-D (K languages × D parameters), got shape {tuple(G.shape)}")
    if G.shape[0] == 0:
        raise GradientError(f"{name} has K = 0 rows: at least one language gradient is required")
    if not G.is_floating_point():
        raise GradientError(f"{name} must be floating point, got {G.dtype}")
    return G


def check_finite(G: Tensor, partition=None, *, name: str = "G") -> None:
    """Raise if G holds NaN/Inf, naming the first bad row and, if known, its bucket.

    One reduction decides the common case: a NaN or Inf anywhere makes the sum
    non-finite. Only then is the element-wise mask built, to name the culprit.
    """
    if bool(torch.isfinite(G.sum())):
        return
    locate_non_finite(G, partition, name=name)


def locate_non_finite(G: Tensor, partition=None, *, name: str = "G") -> None:
    """Raise naming the first NaN/Inf of G; return quietly if there is none."""
    bad = ~torch.isfinite(G)
    if not bool(bad.any()):
        return
    row, col = (int(i) for i in bad.nonzero()[0])
    value = G[row, col].item()
    where = f"row {row} (language {row}), column {col}"
    if partition is not None:
        bucket = int(partition.bucket_of[col])
        where += f", bucket {bucket} ({partition.names[bucket]!r})"
    raise GradientError(f"{name} has a non-finite value {value} at {where}")


def check_gram(Q: Tensor, *, name: str = "Q") -> Tensor:
    """Validate a batch [..., K, K] of Gram matrices."""
    if not isinstance(Q, Tensor):
        raise TypeError(f"{name} must be a torch.Tensor, got {type(Q).__name__}")
    if Q.dim() < 2 or Q.shape[-1] != Q.shape[-2]:
        raise GradientError(f"{name} must have shape [..., K, K], got {tuple(Q.shape)}")
    if Q.shape[-1] == 0:
        raise GradientError(f"{name} has K = 0: at least one language is required")
    if not Q.is_floating_point():
        raise GradientError(f"{name} must be floating point, got {Q.dtype}")
    bad = ~torch.isfinite(Q)
    if bool(bad.any()):
        idx = tuple(int(i) for i in bad.nonzero()[0])
        raise GradientError(f"{name} has a non-finite entry at index {idx}")
    return Q
