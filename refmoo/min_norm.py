r"""Exact batched min-norm solver: :math:`\min_{\lambda\in\Delta_K} \lambda^\top Q \lambda`.

This is the MGDA sub-problem (Désidéri 2012; Sener & Koltun 2018) written on the
Gram matrix :math:`Q = GG^\top`, solved for a whole batch ``[..., K, K]`` of
buckets at once.

Algorithm: Wolfe's minimum-norm-point method (P. Wolfe, "Finding the nearest
point in a polytope", Math. Programming 11, 1976), run in lock-step over the
batch and expressed on Gram entries only. Every problem keeps a *corral* S of
affinely independent rows; each iteration either (major) adds the row with the
smallest :math:`(Q\lambda)_j` or (minor) moves to the affine minimiser of S and
drops rows whose weight hits zero. It terminates in finitely many steps at the
exact optimum (up to rounding), unlike a Frank-Wolfe loop with a step-size stop.

Three layers keep it fast without giving up exactness: (1) every problem is
first tried with all K rows in the corral, which one batched solve settles
when the optimum has full support (common for long buckets); (2) the others
run Wolfe with the inverse of the corral's KKT matrix updated by rank-one
bordering and Schur-complement steps; (3) any problem whose certificate
those updates cannot bring under the tolerance is re-solved with fresh LU
factorisations. Every returned λ is checked by the certificate below.

Certificate. For feasible :math:`\lambda` let :math:`f=\lambda^\top Q\lambda` and
:math:`m=\min_j (Q\lambda)_j`. Convexity gives :math:`f^\star \ge 2m - f`, so
:math:`f - f^\star \le 2(f-m)`; the *gap* :math:`f-m \ge 0` is zero exactly at
the KKT points. When :math:`m > 0`, Cauchy-Schwarz also gives
:math:`f^\star \ge m^2/f`. :class:`MinNormSolution` reports both.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import Tensor

from ._checks import check_gram


@dataclass(frozen=True)
class MinNormSolution:
    """Weights and their optimality certificate, batched like the input."""

    weights: Tensor
    """Feasible :math:`\\lambda \\in \\Delta_K`, shape ``[..., K]``."""
    value: Tensor
    """:math:`f = \\lambda^\\top Q\\lambda`, the squared min-norm value."""
    gap: Tensor
    """:math:`f - \\min_j (Q\\lambda)_j \\ge 0`; bounds the suboptimality by ``2*gap``."""
    lower_bound: Tensor
    """A certified lower bound on the optimal value :math:`f^\\star`."""
    iterations: int
    """Lock-step iterations used by the batch."""


def _bordered(Qn: Tensor) -> Tensor:
    """The KKT matrix [[Q, 1], [1ᵀ, 0]] of the equality-constrained sub-problem."""
    B, K = Qn.shape[0], Qn.shape[-1]
    M = Qn.new_ones(B, K + 1, K + 1)
    M[:, :K, :K] = Qn
    M[:, K, K] = 0.0
    return M


class _SolvedCorral:
    """Affine minimisers by a fresh batched LU solve of the masked KKT system.

    Rows outside the corral are replaced by identity rows so that one solve of
    fixed size handles corrals of every size. Robust; used as the fallback.

    Corral methods take full-batch masks (``mask``) and indices (``j``), so the
    loop never gathers or scatters per-problem state.
    """

    def __init__(self, M: Tensor, S: Tensor) -> None:
        self.M, self.S = M, S.clone()
        self.unstable = torch.zeros(S.shape[0], dtype=torch.bool)

    def keep(self, mask: Tensor) -> None:
        self.M, self.S, self.unstable = self.M[mask], self.S[mask], self.unstable[mask]

    def add(self, mask: Tensor, j: Tensor) -> None:
        self.S |= mask.unsqueeze(-1) & _one_hot(j, self.S.shape[1])

    def remove(self, mask: Tensor, i: Tensor) -> None:
        self.S &= ~(mask.unsqueeze(-1) & _one_hot(i, self.S.shape[1]))

    def minimisers(self) -> Tensor:
        B, K = self.S.shape
        Sb = torch.cat([self.S, self.S.new_ones(B, 1)], dim=1)
        eye = torch.eye(K + 1, dtype=self.M.dtype)
        A = torch.where(Sb.unsqueeze(1) & Sb.unsqueeze(2), self.M, eye)
        rhs = self.M.new_zeros(B, K + 1, 1)
        rhs[:, K] = 1.0
        sol, info = torch.linalg.solve_ex(A, rhs)
        singular = info != 0
        if bool(singular.any()):
            # Affinely dependent corral (duplicate rows): the least-squares
            # solution of the consistent KKT system still minimises on the face.
            sol[singular] = torch.linalg.pinv(A[singular]) @ rhs[singular]
        return sol[:, :K, 0] * self.S


def _one_hot(index: Tensor, size: int) -> Tensor:
    return torch.arange(size) == index.unsqueeze(-1)


class _InverseCorral:
    """Affine minimisers from the inverse of the masked KKT matrix, kept current
    by bordering (add a row) and Schur-complement (drop a row) updates.

    The solution for the right-hand side e_K is the inverse's last column, so
    an iteration costs a few batched mat-vecs instead of an LU per problem.
    Problems whose pivot gets too small are flagged ``unstable`` and re-solved
    by :class:`_SolvedCorral`.
    """

    def __init__(self, M: Tensor, S: Tensor) -> None:
        B, K1 = M.shape[0], M.shape[-1]
        K = K1 - 1
        rows = torch.arange(B)
        start = S.to(torch.long).argmax(-1)
        inv = torch.eye(K1, dtype=M.dtype).repeat(B, 1, 1)
        inv[rows, start, start] = 0.0
        inv[rows, start, K] = 1.0
        inv[rows, K, start] = 1.0
        inv[rows, K, K] = -M[rows, start, start]
        # The border (last) column is always part of the system.
        self.Sb = torch.cat([S, S.new_ones(B, 1)], dim=1)
        self.M, self.inv = M, inv
        self.unstable = torch.zeros(B, dtype=torch.bool)

    @property
    def S(self) -> Tensor:
        return self.Sb[:, :-1]

    def keep(self, mask: Tensor) -> None:
        self.M, self.Sb, self.inv, self.unstable = (
            t[mask] for t in (self.M, self.Sb, self.inv, self.unstable))

    def add(self, mask: Tensor, j: Tensor) -> None:
        r = torch.arange(j.numel())
        u = self.M[r, :, j] * self.Sb  # coupling of row j with the corral and the border
        w = (self.inv * u.unsqueeze(-2)).sum(-1)
        schur = self.M[r, j, j] - (u * w).sum(-1)
        # Q is normalised to a unit max diagonal, so the pivot test is absolute.
        self.unstable |= mask & (schur.abs() <= 1e-13)
        coef = torch.where(mask & (schur != 0), 1.0 / schur, torch.zeros_like(schur))
        w[r, j] = -1.0
        self.inv.addcmul_(w.unsqueeze(-1) * coef[:, None, None], w.unsqueeze(-2))
        self.inv[r, j, j] -= mask.to(self.inv.dtype)
        self.Sb[r, j] |= mask

    def remove(self, mask: Tensor, i: Tensor) -> None:
        r = torch.arange(i.numel())
        col = self.inv[r, :, i]
        pivot = col[r, i]
        self.unstable |= mask & (pivot.abs() <= 1e-300)
        coef = torch.where(mask & (pivot != 0), -1.0 / pivot, torch.zeros_like(pivot))
        self.inv.addcmul_(col.unsqueeze(-1) * coef[:, None, None], col.unsqueeze(-2))
        self.inv[r, i, i] += mask.to(self.inv.dtype)
        self.Sb[r, i] &= ~mask

    def minimisers(self) -> Tensor:
        return self.inv[:, :-1, -1] * self.S


def _wolfe(Qn: Tensor, corral_type, tol: float, max_iter: int) -> tuple[Tensor, Tensor, int]:
    """Lock-step Wolfe iterations; returns (weights, unstable flags, iterations)."""
    B = Qn.shape[0]
    diag = torch.diagonal(Qn, dim1=-2, dim2=-1)
    lam_all = torch.zeros_like(diag)
    lam_all[torch.arange(B), diag.argmin(-1)] = 1.0
    unstable_all = torch.zeros(B, dtype=torch.bool)
    # Finished problems are written back and masked out; the arrays are
    # compacted only once most of them have finished, since every compaction
    # gathers all per-problem state.
    live, Q, lam = torch.arange(B), Qn, lam_all.clone()
    corral = corral_type(_bordered(Qn), lam > 0)
    major = torch.ones(B, dtype=torch.bool)
    active = torch.ones(B, dtype=torch.bool)
    iterations = 0
    for iterations in range(1, max_iter + 1):  # noqa: B007 (reported to the caller)
        # Major step: stop at a KKT point, else bring in the most violated row.
        v = (Q * lam.unsqueeze(-2)).sum(-1)  # cheaper than bmm for tiny K
        f = (lam * v).sum(-1)
        vmin, j = v.min(-1)
        in_corral = corral.S.gather(1, j.unsqueeze(-1)).squeeze(-1)
        finish = active & ((major & ((f - vmin <= tol) | in_corral)) | corral.unstable)
        if bool(finish.any()):
            lam_all[live[finish]] = lam[finish]
            unstable_all[live[finish]] = corral.unstable[finish]
            active &= ~finish
            n_active = int(active.sum())
            if n_active == 0:
                break
            if 2 * n_active < live.numel():
                corral.keep(active)
                live, Q, lam, major, j = (t[active] for t in (live, Q, lam, major, j))
                active = torch.ones(n_active, dtype=torch.bool)
        corral.add(major & active, j)
        # Minor step: move towards the affine minimiser of the corral.
        y = corral.minimisers()
        S = corral.S
        inside = torch.where(S, y, torch.ones_like(y)).amin(-1) > 0
        lam = torch.where((inside & active).unsqueeze(-1), y, lam)
        out = ~inside & active
        if bool(out.any()):
            blocking = S & (y <= 0)
            ratio = torch.where(blocking, lam / (lam - y).clamp_min(1e-300),
                                torch.full_like(lam, float("inf")))
            theta, first = ratio.min(-1)
            moved = (lam + theta.clamp(0.0, 1.0).unsqueeze(-1) * (y - lam)).clamp_min(0.0)
            moved = moved * ~_one_hot(first, moved.shape[1])
            lam = torch.where(out.unsqueeze(-1), moved, lam)
            corral.remove(out, first)
        major = inside
    else:
        lam_all[live[active]] = lam[active]
        unstable_all[live[active]] = True
    return lam_all, unstable_all, iterations


def _interior_solutions(Qn: Tensor, tol: float) -> tuple[Tensor, Tensor]:
    """Try every problem with all K rows in the corral at once.

    When the gradients of a bucket are many more than K numbers long and not
    strongly aligned, the optimum usually has full support; one batched solve
    then settles it and the certificate confirms it. Returns (weights, solved).
    """
    B, K = Qn.shape[0], Qn.shape[-1]
    rhs = Qn.new_zeros(B, K + 1, 1)
    rhs[:, K] = 1.0
    sol, info = torch.linalg.solve_ex(_bordered(Qn), rhs)
    y = sol[:, :K, 0]
    v = (Qn * y.unsqueeze(-2)).sum(-1)
    gap = (y * v).sum(-1) - v.amin(-1)
    solved = (info == 0) & (y > 0).all(-1) & (gap <= tol) & torch.isfinite(gap)
    return y, solved


def _solve_normalised(Qn: Tensor, tol: float, max_iter: int) -> tuple[Tensor, int]:
    lam, solved = _interior_solutions(Qn, tol)
    iterations = 1
    rest = ~solved
    if bool(rest.any()):
        lam[rest], redo, iterations = _wolfe(Qn[rest], _InverseCorral, tol, max_iter)
        # Exactness over speed: whatever the rank-one updates could not certify
        # is solved again with fresh factorisations.
        sub = lam[rest]
        v = (Qn[rest] * sub.unsqueeze(-2)).sum(-1)
        redo |= (sub * v).sum(-1) - v.amin(-1) > tol
        if bool(redo.any()):
            idx = rest.nonzero().squeeze(-1)[redo]
            lam[idx], _, extra = _wolfe(Qn[idx], _SolvedCorral, tol, max_iter)
            iterations += extra
    lam = lam.clamp_min(0.0)
    return lam / lam.sum(-1, keepdim=True), iterations


def solve_min_norm(Q: Tensor, *, tol: float | None = None, max_iter: int | None = None
                   ) -> MinNormSolution:
    """Solve a batch of min-norm problems exactly and certify the result.

    :param Q: PSD Gram matrices, shape ``[..., K, K]``.
    :param tol: KKT tolerance on the gap relative to ``max_k Q_kk``; default
        ``10·K·eps(float64)``.
    :param max_iter: cap on lock-step iterations; default ``5K + 20``.

    >>> Q = torch.tensor([[1.0, -1.0], [-1.0, 4.0]], dtype=torch.float64)
    >>> sol = solve_min_norm(Q)
    >>> [round(w, 12) for w in sol.weights.tolist()], round(float(sol.value), 12)  # 5/7, 2/7; 3/7
    ([0.714285714286, 0.285714285714], 0.428571428571)
    """
    check_gram(Q)
    K = Q.shape[-1]
    batch_shape = Q.shape[:-2]
    Q64 = Q.detach().to(torch.float64).reshape(-1, K, K)
    Q64 = 0.5 * (Q64 + Q64.transpose(-1, -2))
    scale = torch.diagonal(Q64, dim1=-2, dim2=-1).amax(-1)
    scale = torch.where(scale > 0, scale, torch.ones_like(scale))
    Qn = Q64 / scale[:, None, None]
    if tol is None:
        tol = 10 * K * torch.finfo(torch.float64).eps
    if max_iter is None:
        max_iter = 5 * K + 20
    lam, iterations = _solve_normalised(Qn, tol, max_iter)
    cert = _certify(Q64, lam)
    out_dtype = Q.dtype
    return MinNormSolution(
        weights=lam.to(out_dtype).reshape(*batch_shape, K),
        value=cert[0].to(out_dtype).reshape(batch_shape),
        gap=cert[1].to(out_dtype).reshape(batch_shape),
        lower_bound=cert[2].to(out_dtype).reshape(batch_shape),
        iterations=iterations,
    )


def _certify(Q: Tensor, lam: Tensor) -> tuple[Tensor, Tensor, Tensor]:
    v = (Q @ lam.unsqueeze(-1)).squeeze(-1)
    f = (lam * v).sum(-1).clamp_min(0.0)
    m = v.amin(-1)
    gap = (f - m).clamp_min(0.0)
    cauchy_schwarz = torch.where((m > 0) & (f > 0), m * m / f.clamp_min(1e-300),
                                 torch.zeros_like(m))
    lower = torch.maximum(torch.maximum(2 * m - f, cauchy_schwarz), torch.zeros_like(m))
    return f, gap, torch.minimum(lower, f)


def min_norm_weights(Q: Tensor) -> Tensor:
    r"""The minimiser :math:`\lambda^\star \in \Delta_K` for each matrix of ``Q`` ``[..., K, K]``.

    Shorthand for ``solve_min_norm(Q).weights``; use :func:`solve_min_norm` for the
    certificate.

    >>> G = torch.tensor([[1.0, 0.0], [0.0, 1.0]], dtype=torch.float64)
    >>> [round(w, 12) for w in min_norm_weights(G @ G.T).tolist()]
    [0.5, 0.5]
    """
    return solve_min_norm(Q).weights


def min_norm_gap(Q: Tensor, weights: Tensor) -> Tensor:
    """The certificate gap ``f - min_j (Qλ)_j`` of any weights (e.g. from another solver)."""
    check_gram(Q)
    K = Q.shape[-1]
    Q64 = Q.to(torch.float64).reshape(-1, K, K)
    return _certify(Q64, weights.to(torch.float64).reshape(-1, K))[1].reshape(Q.shape[:-2])
