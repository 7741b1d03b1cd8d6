r"""Exact rational referee for the min-norm problem, for small K.

Every float is a rational number, so the min-norm problem of a float matrix G
has an exact answer. This module computes it in :class:`fractions.Fraction`,
with no rounding anywhere, by *support enumeration*: the minimiser of
:math:`\lambda^\top Q\lambda` over :math:`\Delta_K` (Q = GGᵀ, PSD) is a KKT point,
and for a support S whose rows are affinely independent the KKT point on S
solves

.. math:: \begin{pmatrix} Q_{SS} & \mathbf 1 \\ \mathbf 1^\top & 0 \end{pmatrix}
          \begin{pmatrix} \lambda_S \\ -f \end{pmatrix} =
          \begin{pmatrix} 0 \\ 1 \end{pmatrix},

after which it is optimal exactly when :math:`\lambda_S \ge 0` and
:math:`(Q\lambda)_j \ge f` for every j (f is then :math:`\lambda^\top Q\lambda`). The
minimum-norm point :math:`G^\top\lambda^\star` lies in the convex hull of an affinely
independent subset of the rows (Carathéodory), so enumerating the
:math:`2^K - 1` supports by increasing size finds it. Cost grows as :math:`2^K`;
meant for K ≤ 8 in tests.

Why not cvxpy for this: an interior-point solver stops at a tolerance of about
1e-8 relative to the largest row, which says nothing about a row 1e-12 times
smaller. The rational solve has no such floor.

>>> from fractions import Fraction
>>> sol = exact_min_norm([[1.0, 1.0], [-1.0, -2.0]])
>>> sol.weights, sol.value   # φ² = 1/13 at λ = (8/13, 5/13)
([Fraction(8, 13), Fraction(5, 13)], Fraction(1, 13))
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from fractions import Fraction
from itertools import combinations

import torch
from torch import Tensor

Matrix = list[list[Fraction]]


@dataclass(frozen=True)
class ExactMinNorm:
    """The exact minimiser of :math:`\\lambda^\\top Q\\lambda` over the simplex."""

    weights: list[Fraction]
    """λ* ∈ Δ_K (one optimal λ; the min-norm *point* Gᵀλ* is unique, λ* need not be)."""
    value: Fraction
    """f* = λ*ᵀQλ* = ‖Gᵀλ*‖²."""
    support: tuple[int, ...]
    """Rows with λ*_k > 0."""


def to_fractions(x: Tensor | Sequence) -> list:
    """Nested lists of exact rationals equal to the float entries of ``x``."""
    if isinstance(x, Tensor):
        x = x.detach().to(torch.float64).tolist()
    if isinstance(x, (list, tuple)):
        return [to_fractions(v) for v in x]
    return Fraction(x)


def exact_gram(G: Tensor | Sequence) -> Matrix:
    """:math:`GG^\\top` in exact arithmetic (rows of G as given, no rounding)."""
    rows = to_fractions(G)
    return [[sum((a * b for a, b in zip(gi, gj, strict=True)), Fraction(0)) for gj in rows]
            for gi in rows]


def exact_inner(G: Tensor | Sequence, d: Tensor | Sequence) -> list[Fraction]:
    """The exact inner products :math:`\\langle g_k, d\\rangle` of the float entries."""
    dv = to_fractions(d)
    return [sum((a * b for a, b in zip(g, dv, strict=True)), Fraction(0))
            for g in to_fractions(G)]


def _solve(A: Matrix, b: list[Fraction]) -> list[Fraction] | None:
    """Gaussian elimination in exact arithmetic; None when A is singular."""
    n = len(b)
    M = [row[:] + [rhs] for row, rhs in zip(A, b, strict=True)]
    for c in range(n):
        pivot = next((r for r in range(c, n) if M[r][c] != 0), None)
        if pivot is None:
            return None
        M[c], M[pivot] = M[pivot], M[c]
        for r in range(n):
            if r != c and M[r][c] != 0:
                factor = M[r][c] / M[c][c]
                M[r] = [x - factor * y for x, y in zip(M[r], M[c], strict=True)]
    return [M[r][n] / M[r][r] for r in range(n)]


def is_psd(Q: Matrix) -> bool:
    """Exact test of symmetric positive semi-definiteness (symmetric elimination
    with diagonal pivots: a negative pivot, or a zero pivot with a non-zero row,
    rules it out)."""
    n = len(Q)
    if any(Q[i][j] != Q[j][i] for i in range(n) for j in range(i)):
        return False
    A = [row[:] for row in Q]
    for c in range(n):
        pivot = max(range(c, n), key=lambda r: A[r][r])
        A[c], A[pivot] = A[pivot], A[c]
        for row in A:
            row[c], row[pivot] = row[pivot], row[c]
        if A[c][c] < 0:
            return False
        if A[c][c] == 0:
            if any(A[c][j] != 0 for j in range(c, n)):
                return False
            continue
        for r in range(c + 1, n):
            factor = A[r][c] / A[c][c]
            A[r] = [x - factor * y for x, y in zip(A[r], A[c], strict=True)]
    return True


def exact_min_norm_gram(Q: Tensor | Sequence) -> ExactMinNorm:
    """Exact min-norm solution for a Gram matrix whose entries are taken as exact.

    ``Q`` must be symmetric PSD (it is when it comes from :func:`exact_gram`); the
    KKT conditions are sufficient only then, so anything else is refused.
    """
    Qf = to_fractions(Q)
    K = len(Qf)
    if not is_psd(Qf):
        raise ValueError("Q is not symmetric positive semi-definite: KKT points need not "
                         "be minima")
    for size in range(1, K + 1):
        for S in combinations(range(K), size):
            A = [[Qf[i][j] for j in S] + [Fraction(1)] for i in S] + [[Fraction(1)] * size
                                                                       + [Fraction(0)]]
            sol = _solve(A, [Fraction(0)] * size + [Fraction(1)])
            if sol is None or min(sol[:size]) < 0:
                continue
            lam = [Fraction(0)] * K
            for i, s in enumerate(S):
                lam[s] = sol[i]
            v = [sum((Qf[j][i] * lam[i] for i in S), Fraction(0)) for j in range(K)]
            f = sum((lam[i] * v[i] for i in S), Fraction(0))
            if all(vj >= f for vj in v):
                return ExactMinNorm(weights=lam, value=f,
                                    support=tuple(i for i in S if lam[i] > 0))
    raise AssertionError("unreachable: a PSD matrix has a KKT point on some support")


def exact_min_norm(G: Tensor | Sequence) -> ExactMinNorm:
    """Exact :math:`\\min_{\\lambda\\in\\Delta} \\|G^\\top\\lambda\\|^2` for a K×D float matrix."""
    return exact_min_norm_gram(exact_gram(G))
