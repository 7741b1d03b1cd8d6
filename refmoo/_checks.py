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


def check_gram(Q: Tensor, *, name: str = "Q", psd: bool = False) -> Tensor:
    """Validate a batch [..., K, K] of Gram matrices.

    With ``psd=True`` also check that every matrix is a Gram matrix to rounding:
    see :func:`check_psd`.
    """
    if not isinstance(Q, Tensor):
        raise TypeError(f"{name} must be a torch.Tensor, got {type(Q).__name__}")
    if Q.dim() < 2 or Q.shape[-1] != Q.shape[-2]:
        raise GradientError(f"{name} must have shape [..., K, K], got {tuple(Q.shape)}")
    if Q.shape[-1] == 0:
        raise GradientError(f"{name} has K = 0: at least one language is required")
    if not Q.is_floating_point():
        raise GradientError(f"{name} must be floating point, got {Q.dtype}")
    # One reduction decides the common case (a NaN or Inf makes the sum non-finite;
    # a finite sum that overflows only costs the element-wise scan).
    if not bool(torch.isfinite(Q.sum())):
        bad = ~torch.isfinite(Q)
        if bool(bad.any()):
            idx = tuple(int(i) for i in bad.nonzero()[0])
            raise GradientError(f"{name} has a non-finite entry at index {idx}")
    if psd:
        check_psd(Q, name=name)
    return Q


def gram_rtol(dtype: torch.dtype) -> float:
    r"""Rounding allowance :math:`\sqrt{\varepsilon}` of a Gram matrix held in ``dtype``.

    A computed Gram entry is off by at most about :math:`\sqrt{D}\,\varepsilon
    \|g_i\|\|g_j\|` (blocked BLAS sums, gloo all-reduces of partial Grams), which
    stays far below :math:`\sqrt{\varepsilon}\,\|g_i\|\|g_j\|` for any realistic D; a
    matrix that misses by more is not the Gram matrix of anything.
    """
    return torch.finfo(dtype).eps ** 0.5


def check_psd(Q: Tensor, *, name: str = "Q") -> None:
    r"""Raise unless every matrix of the finite batch ``Q [..., K, K]`` is symmetric
    positive semi-definite to rounding.

    The test is on the correlation matrix :math:`C = N^{-1} Q N^{-1}`,
    :math:`N = \mathrm{diag}(\sqrt{Q_{kk}})`, so that it means the same for a row
    1e-12 times smaller than the others (a test on Q itself would only see the
    largest rows). With δ = :func:`gram_rtol`: the diagonal must be non-negative
    (a sum of squares, even rounded), :math:`|C_{ij} - C_{ji}| \le \delta`
    (:func:`check_symmetric`), and :math:`C + K\delta I` must be positive definite,
    i.e. :math:`\lambda_{\min}(C) \ge -K\delta` (:func:`check_definite`).
    """
    check_definite(check_symmetric(Q, name=name), name=name, dtype=Q.dtype)


def check_symmetric(Q: Tensor, *, name: str = "Q") -> Tensor:
    """The first two tests of :func:`check_psd` (non-negative diagonal, symmetric to
    rounding); returns Q as float64 ``[B, K, K]``."""
    K = Q.shape[-1]
    delta = gram_rtol(Q.dtype)
    Q64 = Q.detach().to(torch.float64).reshape(-1, K, K)
    d = torch.diagonal(Q64, dim1=-2, dim2=-1)
    if bool((d < 0).any()):
        b, k = (int(i) for i in (d < 0).nonzero()[0])
        raise GradientError(
            f"{name} is not a Gram matrix: diagonal entry {k} of matrix {b} is "
            f"{float(d[b, k]):.3e} < 0, but a squared norm cannot be negative")
    if not torch.equal(Q64, Q64.transpose(-1, -2)):  # BLAS Grams often differ in the last bit
        diff = Q64 - Q64.transpose(-1, -2)
        # Both sides are squared to avoid square roots; (d_i·δ)·d_j keeps the product
        # of two squared norms from overflowing.
        bad = diff * diff > (delta * delta * d.unsqueeze(-1)) * d.unsqueeze(-2)
        if bool(bad.any()):
            b, i, j = (int(x) for x in bad.nonzero()[0])
            raise GradientError(
                f"{name} is not symmetric: entries ({i}, {j}) = {float(Q64[b, i, j]):.6e} and "
                f"({j}, {i}) = {float(Q64[b, j, i]):.6e} of matrix {b} differ by more than "
                f"rounding ({delta:.1e} relative to the row norms)")
    return Q64


def check_definite(Q64: Tensor, *, name: str = "Q", index: Tensor | None = None,
                   dtype: torch.dtype | None = None) -> None:
    r"""The last test of :func:`check_psd` on float64 ``Q64 [B, K, K]`` that passed
    :func:`check_symmetric`: :math:`C + K\delta I` positive definite, run as a
    Cholesky factorisation of :math:`Q + K\delta\,\mathrm{diag}(Q) = N(C + K\delta
    I)N`, which needs no division by N (Cholesky is unaffected by such a diagonal
    scaling, so its rounding is that of the test on C). ``index``: the position in
    the caller's batch of each matrix, for the error; ``dtype``: the one Q came in,
    for δ (default float64).
    """
    from ._scale import normalise_gram

    K = Q64.shape[-1]
    delta = gram_rtol(dtype or Q64.dtype)
    # Each matrix divided by the power of two that brings its largest diagonal entry into
    # [1/2, 1) (exact): near float64's largest number, the shift below would overflow to
    # an infinite pivot, which Cholesky takes for a positive one.
    Qn = normalise_gram(Q64)[0]
    d = torch.diagonal(Qn, dim1=-2, dim2=-1)
    # A zero row passes only with zero off-diagonal entries: a shift far below every
    # non-zero row (2^-900 of the largest, at least float64's smallest normal) is
    # its pivot, and any entry beside it fails.
    tiny = torch.finfo(torch.float64).tiny
    floor = (d.amax(-1, keepdim=True) * 2.0**-900).clamp_min(tiny)
    shifted = Qn.clone()
    torch.diagonal(shifted, dim1=-2, dim2=-1).mul_(1.0 + K * delta).add_(floor)
    _, info = torch.linalg.cholesky_ex(shifted)
    if bool((info != 0).any()):
        b = int((info != 0).nonzero()[0])
        n = d[b].sqrt()
        inv = torch.where(n > 0, 1.0 / torch.where(n > 0, n, 1.0), 0.0)
        C = (inv.unsqueeze(-1) * Qn[b]) * inv.unsqueeze(-2)
        low = float(torch.linalg.eigvalsh(0.5 * (C + C.T))[0])
        where = b if index is None else int(index[b])
        raise GradientError(
            f"{name} is not positive semi-definite: matrix {where}, "
            f"scaled to a unit diagonal, has eigenvalue {low:.3e} < -{K * delta:.1e} (rounding "
            "allowance), so it is not the Gram matrix G Gᵀ of any gradients")


def check_tol(value: float, name: str) -> float:
    """A tolerance must be a number ≥ 0 (NaN would silently make every test fail)."""
    value = float(value)
    if not value >= 0:  # also catches NaN
        raise ValueError(f"{name} must be a non-negative number, got {value}")
    return value
