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
first tried with all K rows, which one batched solve settles when the optimum
has full support (common for long buckets; large batches of small K do this
round in cache-sized chunks, see :func:`_first_rounds`), then with a few guessed supports
(drop the rows whose weight came out ≤ 0, or add the worst violated row), all
problems at once, each guess accepted only if the per-row test certifies it;
(2) the others run Wolfe with the inverse of the corral's KKT matrix updated by rank-one
bordering and Schur-complement steps; (3) any problem whose certificate
those updates cannot bring under the tolerance is re-solved with fresh LU
factorisations. Every returned λ is checked by the certificate below.

Stopping and certification are per row. With :math:`f=\lambda^\top Q\lambda`,
:math:`v = Q\lambda` and :math:`s = \sum_i \lambda_i\sqrt{Q_{ii}}` (the scale of the
rows that λ uses), λ is accepted when for every row j

.. math:: v_j \ge f - \text{tol}\,\sqrt{Q_{jj}\,f} - c\,K\varepsilon\, s\,(\sqrt{Q_{jj}} + s).

For Q = GGᵀ and a = Gᵀλ this reads :math:`\langle g_j, a\rangle \ge \|a\|^2 -
\text{tol}\,\|g_j\|\|a\| - \text{rounding}`: the update conflicts with no row,
however small the row is next to the others. The last term is the rounding
of :math:`f - v_j` itself (each :math:`|Q_{ij}|\le\sqrt{Q_{ii}Q_{jj}}`), below
which no Gram-based test can see; relative to :math:`\|g_j\|\|a\|` it is
:math:`cK\varepsilon\rho(1+\rho)`, :math:`\rho = s/\|a\|`, small unless the rows
used nearly cancel (then G is close to stationary). A test relative to the
largest row instead would stop while a row 1e-8 times smaller is still
violated, and return an update that conflicts with it.

Scale. Q is divided by a power of two that brings its largest diagonal entry
into [1/2, 1): the division is exact, so ``solve_min_norm(4**k * Q)`` returns
the same weights bit for bit and a value scaled by exactly 4**k, from
float64's smallest normal numbers to its largest.

Certificate. For feasible :math:`\lambda` let :math:`m=\min_j (Q\lambda)_j`.
Convexity gives :math:`f^\star \ge 2m - f`, so :math:`f - f^\star \le 2(f-m)`; the
*gap* :math:`f-m \ge 0` is zero exactly at the KKT points. When :math:`m > 0`,
Cauchy-Schwarz also gives :math:`f^\star \ge m^2/f`. :class:`MinNormSolution`
reports both.

Input. :func:`solve_min_norm` refuses matrices that are not symmetric positive
semi-definite to rounding (:func:`refmoo._checks.check_psd`): on an indefinite
matrix the KKT conditions describe a saddle or a maximum, not the minimum. What
it accepts is read as ½(Q + Qᵀ), which changes no bit of a symmetric matrix and
settles the last-bit asymmetry BLAS may leave in a Gram.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch
from torch import Tensor

from . import compiled
from ._checks import GradientError, check_definite, check_gram, check_symmetric, check_tol
from ._scale import exponent, ldexp, pow2

_EPS = torch.finfo(torch.float64).eps
_TINY = torch.finfo(torch.float64).tiny
# c in the rounding term of the per-row test: a K-term dot product and the
# weighted sum f = λᵀv each add at most K·eps relative to their absolute terms.
_ROUNDING = 4.0
# Support guesses before Wolfe's method, after the full support (see _guess_supports).
_GUESS_ROUNDS = 4


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


def _sqrt(x: Tensor, *, out: Tensor | None = None) -> Tensor:
    """√x correctly rounded, as IEEE 754 defines it. PyTorch's CPU sqrt is not always
    (2.13: 0.67% of uniform float64 samples come out 1 ulp off, e.g.
    √0.6557538954102683), so on the CPU numpy's, which is the hardware instruction,
    takes the same memory (no copy). The solver's bits then do not depend on how a
    PyTorch build implements sqrt, and the unrolled path's match the compiled kernel's
    (tested)."""
    if x.device.type != "cpu":
        return torch.sqrt(x, out=out)
    if out is None:
        return torch.from_numpy(np.sqrt(x.numpy()))
    np.sqrt(x.numpy(), out=out.numpy())
    return out


def _bordered(Qn: Tensor) -> Tensor:
    """The KKT matrix [[Q, 1], [1ᵀ, 0]] of the equality-constrained sub-problem."""
    B, K = Qn.shape[0], Qn.shape[-1]
    M = Qn.new_ones(B, K + 1, K + 1)
    M[:, :K, :K] = Qn
    M[:, K, K] = 0.0
    return M


def _row_slack(sd: Tensor, s: Tensor, f: Tensor, tol: float, dim: int = -1) -> Tensor:
    """Allowed violation ``f - v_j`` per row: tol·√(Q_jj·f) plus the rounding of f − v_j.

    ``sd`` is √diag(Q), laid out like λ: rows along ``dim`` (``[B, K]`` by default,
    ``[K, B]`` with ``dim=0``); ``s`` = Σ_i λ_i√Q_ii and ``f`` are per problem. See the
    module docstring.
    """
    K = sd.shape[dim]
    s, f = s.unsqueeze(dim), f.unsqueeze(dim)
    rounding = (_ROUNDING * K * _EPS) * s * (sd + s)
    return tol * sd * _sqrt(f.clamp_min(0.0)) + rounding


def _violated(Q: Tensor, sd: Tensor, lam: Tensor, tol: float) -> tuple[Tensor, Tensor, Tensor]:
    """``(v, f, violated)``: v = Qλ, f = λᵀv and the rows that fail the per-row test."""
    v = torch.bmm(Q, lam.unsqueeze(-1)).squeeze(-1)
    f = (lam * v).sum(-1)
    return v, f, f.unsqueeze(-1) - v > _row_slack(sd, (lam * sd).sum(-1), f, tol)


class _Equilibrated:
    r"""The KKT system of the affine minimiser, scaled so that LU cannot mix row scales.

    With :math:`r_k = 1/\sqrt{Q_{kk}}` (1 for a zero row), λ = r·μ and
    :math:`C = RQR` (unit diagonal), the system :math:`Q_{SS}\lambda + t\mathbf 1 = 0`,
    :math:`\mathbf 1^\top\lambda = 1` becomes :math:`C_{SS}\mu + t' b_S = 0`,
    :math:`b_S^\top\mu = \beta`, with border :math:`b = \beta r`, β = 1/max r. Every
    entry is then at most 1 in magnitude, and partial pivoting no longer takes the
    border as pivot against the entries of a row 1e-10 times smaller than the
    others (on the raw system that elimination wipes out the small rows' digits,
    and the weights it returns can be worse than the smallest row alone).
    """

    def __init__(self, Qn: Tensor) -> None:
        K = Qn.shape[-1]
        sd = _sqrt(torch.diagonal(Qn, dim1=-2, dim2=-1).clamp_min(0.0))
        self.Qn, self.row_norms = Qn, sd
        self.r = torch.where(sd > 0, 1.0 / torch.where(sd > 0, sd, 1.0), 1.0)
        self.beta = 1.0 / self.r.amax(-1)
        # Padded once and scaled in place: several times cheaper than writing the
        # blocks into a fresh [B, K+1, K+1] tensor.
        E = torch.nn.functional.pad(Qn, (0, 1, 0, 1))
        rx = torch.nn.functional.pad(self.r, (0, 1))
        E.mul_(rx.unsqueeze(-1)).mul_(rx.unsqueeze(-2))  # (r_i·Q_ij)·r_j
        b = self.r * self.beta.unsqueeze(-1)
        E[:, :K, K] = b
        E[:, K, :K] = b
        self.E = E

    def keep(self, mask: Tensor) -> None:
        self.E, self.r, self.beta = self.E[mask], self.r[mask], self.beta[mask]
        self.Qn, self.row_norms = self.Qn[mask], self.row_norms[mask]

    def residuals(self, y: Tensor, tol: float) -> tuple[Tensor, Tensor, Tensor, Tensor]:
        """``(v, f, violated, below_vertex)`` of weights y ``[B, K]`` (see _guess_supports)."""
        v, f, violated = _violated(self.Qn, self.row_norms, y, tol)
        return v, f, violated, _no_worse_than_a_vertex(self.Qn, self.row_norms, y, f)

    def solve(self, S: Tensor | None) -> tuple[Tensor, Tensor]:
        """(λ, info) for supports S (None: every row): one batched LU, rows outside S
        made identity rows."""
        if S is None:
            S = torch.ones_like(self.r, dtype=torch.bool)
        B, K = S.shape
        if bool(S.all()):
            A = self.E  # every row in: nothing to mask
        else:
            # E·(ssᵀ) + diag(1 − s): the masked rows become identity rows. Two products
            # and a diagonal update cost less than a where() over [B, K+1, K+1].
            sf = torch.nn.functional.pad(S.to(self.E.dtype), (0, 1), value=1.0)
            A = torch.empty_like(self.E)
            torch.mul(self.E, sf.unsqueeze(1), out=A).mul_(sf.unsqueeze(2))
            torch.diagonal(A, dim1=-2, dim2=-1).add_(1.0 - sf)
        rhs = self.E.new_zeros(B, K + 1, 1)
        rhs[:, K, 0] = self.beta
        sol, info = torch.linalg.solve_ex(A, rhs)
        return sol[:, :K, 0] * self.r * S, info


# When the support guesses factorise with unrolled element-wise Cholesky
# (:class:`_UnrolledCholesky`): its O(K²) tensor operations each cover a chunk of
# the batch, so it costs about K² operator dispatches per chunk, against one LAPACK
# call per problem. Measured for solve_min_norm on one core (CPU time, median of 7,
# independent and aligned gradients), unrolled over LAPACK: 0.99–1.28 at the threshold
# 16·K³ with K = 4 (1100 problems), 0.90–1.10 with K = 6, 0.69–0.83 with K = 8; 0.58–0.89
# at 2.5–3 times the threshold; 2–3× slower on batches of 1–100.
_UNROLLED_MAX_K = 8
_UNROLLED_MIN_BATCH = 16  # times K³
# Matrix entries per chunk of the support guesses (:func:`_first_rounds`): 2¹⁷ float64, i.e.
# 8192 problems of K = 4, 2048 of K = 8. Its hundred-odd batch operations then work on
# operands that stay in a core's L2 cache: over 1.4·10⁵ problems of K = 4 at once each
# one streams its operands from memory instead, and the round took about twice as long.
_FIRST_ROUND_ENTRIES = 1 << 17


def _unrolled_pays(batch: int, K: int) -> bool:
    return K <= _UNROLLED_MAX_K and batch >= _UNROLLED_MIN_BATCH * K ** 3


def _chunk_size(K: int) -> int:
    return max(1, _FIRST_ROUND_ENTRIES // (K * K))


def _entries(Qn: Tensor) -> Tensor:
    """A batch ``[B, K, K]`` as float64 entries ``[K, K, B]`` (one converting copy)."""
    K = Qn.shape[-1]
    Qt = torch.empty((K, K, Qn.shape[0]), dtype=torch.float64, device=Qn.device)
    return Qt.copy_(Qn.permute(1, 2, 0))


class _UnrolledCholesky:
    r"""The equilibrated system of :class:`_Equilibrated`, factorised by Cholesky
    written out entry by entry, every operation over the whole batch.

    On a support S with :math:`C_{SS}` positive definite (:math:`C = RQR`, unit
    diagonal) the affine minimiser is :math:`\lambda = r\circ y/(r^\top y)` with
    :math:`C_{SS}\,y = r_S`, solved as :math:`C_{SS} = LL^\top`,
    :math:`y = L^{-\top}L^{-1}r_S`. Rows outside S become identity rows with a
    zero right-hand side, so they get weight 0 exactly. No pivoting is needed on
    a unit diagonal; a pivot that is not positive (C_SS singular to rounding,
    e.g. a zero row or two parallel rows) is reported like a singular LU and left
    to Wolfe's method.

    Entries are stored ``[K, K, B]`` (:func:`_entries`), so a row or a column of
    every problem's matrix is one strided ``[n, B]`` view: each step of the
    factorisation and of the two substitutions is one operation on such a slab,
    and sums over rows are K − 1 additions in a fixed order rather than
    reductions. Only element-wise +, −, ×, ÷ and √ are used, each correctly
    rounded by IEEE 754 (√ by :func:`_sqrt`) and never fused, so a problem's
    weights are bitwise the same whatever else is in its batch, and the same as the
    compiled kernel's (:func:`_compiled_rounds`).
    """

    def __init__(self, Qt: Tensor, work: tuple[Tensor, Tensor] | None = None) -> None:
        self.Q = Qt  # [K, K, B] float64, normalised
        self.work = work  # buffers shaped like Qt for C and L (see _first_rounds)
        K = Qt.shape[0]
        self.sd = _sqrt(torch.stack([Qt[k, k] for k in range(K)]).clamp_min(0.0))  # [K, B]
        # 1/√Q_kk; a zero row (√Q_kk = 0 exactly, every entry of its row 0) gets a
        # finite scale instead of 1/0, which leaves C = RQR's row zero. Its pivot is 0
        # then, so only supports without it are solved.
        self.r = 1.0 / self.sd.clamp_min(_TINY)

    @property
    def row_norms(self) -> Tensor:
        """√Q_kk as ``[B, K]`` (a view)."""
        return self.sd.T

    def keep(self, mask: Tensor) -> None:
        self.Q, self.sd, self.r = self.Q[:, :, mask], self.sd[:, mask], self.r[:, mask]
        if self.work is not None:  # the same buffers, viewed at the new size
            K, n = self.r.shape
            self.work = tuple(w.view(-1)[:K * K * n].view(K, K, n) for w in self.work)

    def _weights(self, S: Tensor | None) -> tuple[Tensor, Tensor]:
        """:func:`_affine_minimisers` of the batch, chunk by chunk (see
        :data:`_FIRST_ROUND_ENTRIES`) with two buffers reused from chunk to chunk."""
        Q, r = self.Q, self.r
        K, B = r.shape
        chunk = _chunk_size(K)
        if B <= chunk:
            C, L = self.work or (torch.empty_like(Q), torch.empty_like(Q))
            return _affine_minimisers(Q, r, S, C, L)
        weights, ok = r.new_empty(K, B), torch.empty(B, dtype=torch.bool, device=r.device)
        work = Q.new_empty(2, K * K * chunk)
        for lo in range(0, B, chunk):
            hi = min(lo + chunk, B)
            C, L = (w[:K * K * (hi - lo)].view(K, K, hi - lo) for w in work)
            weights[:, lo:hi], ok[lo:hi] = _affine_minimisers(
                Q[:, :, lo:hi], r[:, lo:hi], None if S is None else S[lo:hi], C, L)
        return weights, ok

    def solve(self, S: Tensor | None) -> tuple[Tensor, Tensor]:
        """(λ ``[B, K]``, info ``[B]``, non-zero where a pivot was not positive) for
        supports S (None: every row)."""
        weights, ok = self._weights(S)
        return weights.T, (~ok).to(torch.int32)

    def residuals(self, y: Tensor, tol: float) -> tuple[Tensor, Tensor, Tensor, Tensor]:
        """``(v, f, violated, below_vertex)`` of weights y ``[B, K]`` (see _guess_supports),
        computed in this layout and returned as ``[B, K]`` views."""
        lam = y.T
        K = lam.shape[0]
        v = _gram_times(self.Q, lam)
        f = _add_rows(lam * v)
        s = _add_rows(lam * self.sd)
        violated = f - v > _row_slack(self.sd, s, f, tol, dim=0)
        vertex = self.Q[0, 0]
        for k in range(1, K):
            vertex = torch.minimum(vertex, self.Q[k, k])
        return v.T, f, violated.T, _below(vertex, s, f, K)


def _affine_minimisers(Q: Tensor, r: Tensor, S: Tensor | None, C: Tensor, L: Tensor
                       ) -> tuple[Tensor, Tensor]:
    """λ ``[K, b]`` of :class:`_UnrolledCholesky` for entries Q ``[K, K, b]`` and scales r
    ``[K, b]``, on supports S ``[b, K]`` (None: all rows), with buffers C and L shaped
    like Q; and which problems had pivots of at least float64's smallest normal
    number. Elsewhere λ is meaningless (C_SS is singular to rounding) and is left as
    it comes, NaN included: callers discard it, so no operation is spent on masking it."""
    K = r.shape[0]
    torch.mul(Q, r.unsqueeze(1), out=C).mul_(r.unsqueeze(0))  # (Q_ij·r_i)·r_j
    rs = r
    if S is not None:  # masked rows: unit pivot, zero coupling (C∘ssᵀ + diag(1−s))
        s = S.T.to(Q.dtype)  # [K, b]
        C.mul_(s.unsqueeze(1)).mul_(s.unsqueeze(0))
        torch.diagonal(C, dim1=0, dim2=1).add_((1.0 - s).T)
        rs = r * s
    # Only L's lower triangle is written and read.
    pivots = []
    for j in range(K):
        d = C[j, j]
        for k in range(j):
            d = d - L[j, k] * L[j, k]
        pivots.append(d)
        _sqrt(d.clamp_min(_TINY), out=L[j, j])
        if j + 1 < K:
            a = C[j + 1:, j]
            for k in range(j):
                a = a - L[j + 1:, k] * L[j, k]
            torch.div(a, L[j, j], out=L[j + 1:, j])
    # L z = r_S, column by column: z_j, then its share removed from the rows below.
    z = torch.empty_like(rs)
    rest = rs
    for j in range(K):
        torch.div(rest[0], L[j, j], out=z[j])
        if j + 1 < K:
            rest = rest[1:] - L[j + 1:, j] * z[j]
    # Lᵀ y = z, from the last row up.
    y = torch.empty_like(rs)
    rest = z
    for j in reversed(range(K)):
        torch.div(rest[j], L[j, j], out=y[j])
        if j:
            rest = rest[:j] - L[j, :j] * y[j]
    # Normalised by the computed sum rather than by ‖z‖² (equal in exact
    # arithmetic): on a nearly singular C_SS the two part, and only the former
    # keeps λ on the simplex that the certificate assumes.
    weights = r * y
    total = _add_rows(weights)
    ok = (torch.stack(pivots).amin(0) >= _TINY) & (total > 0)
    return weights / total, ok


def _add_rows(x: Tensor) -> Tensor:
    """Σ_k x[k] over the leading axis, added in order (a fixed order, unlike a reduction
    kernel)."""
    total = x[0]
    for k in range(1, x.shape[0]):
        total = total + x[k]
    return total


def _gram_times(Qt: Tensor, lam: Tensor) -> Tensor:
    """v = Qλ in the entries layout (``[K, K, B]`` times ``[K, B]``), summed in order."""
    v = Qt[:, 0] * lam[0]
    for j in range(1, lam.shape[0]):
        v = v + Qt[:, j] * lam[j]
    return v


class _SolvedCorral:
    """Affine minimisers by a fresh batched LU solve of the equilibrated KKT system.

    Rows outside the corral are replaced by identity rows so that one solve of
    fixed size handles corrals of every size. Robust; used as the fallback.

    Corral methods take full-batch masks (``mask``) and indices (``j``), so the
    loop never gathers or scatters per-problem state.
    """

    def __init__(self, Qn: Tensor, S: Tensor) -> None:
        self.system, self.S = _Equilibrated(Qn), S.clone()
        self.unstable = torch.zeros(S.shape[0], dtype=torch.bool)

    def keep(self, mask: Tensor) -> None:
        self.system.keep(mask)
        self.S, self.unstable = self.S[mask], self.unstable[mask]

    def add(self, mask: Tensor, j: Tensor) -> None:
        self.S |= mask.unsqueeze(-1) & _one_hot(j, self.S.shape[1])

    def remove(self, mask: Tensor, i: Tensor) -> None:
        self.S &= ~(mask.unsqueeze(-1) & _one_hot(i, self.S.shape[1]))

    def minimisers(self) -> Tensor:
        lam, info = self.system.solve(self.S)
        singular = info != 0
        if bool(singular.any()):
            # Affinely dependent corral (duplicate rows): the least-squares
            # solution of the consistent KKT system still minimises on the face.
            sys = self.system
            B, K = self.S.shape
            Sb = torch.cat([self.S, self.S.new_ones(B, 1)], dim=1)[singular]
            A = torch.where(Sb.unsqueeze(1) & Sb.unsqueeze(2), sys.E[singular],
                            torch.eye(K + 1, dtype=sys.E.dtype))
            rhs = sys.E.new_zeros(A.shape[0], K + 1, 1)
            rhs[:, K, 0] = sys.beta[singular]
            mu = (torch.linalg.pinv(A) @ rhs)[:, :K, 0]
            lam[singular] = mu * sys.r[singular] * self.S[singular]
        return lam


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

    def __init__(self, Qn: Tensor, S: Tensor) -> None:
        M = _bordered(Qn)
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
        uw = u * w
        schur = self.M[r, j, j] - uw.sum(-1)
        # schur is the squared distance from g_j to the corral's affine hull, got
        # by cancellation; below 1e-9 of the cancelled terms it has lost too many
        # digits to update the inverse with (relative, so that a row 1e-10 times
        # smaller than the corral's is not flagged merely for being small).
        cancelled = self.M[r, j, j].abs() + uw.abs().sum(-1)
        self.unstable |= mask & (schur.abs() <= 1e-9 * cancelled)
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
    sd_all = _sqrt(diag.clamp_min(0.0))
    lam_all = torch.zeros_like(diag)
    lam_all[torch.arange(B), diag.argmin(-1)] = 1.0
    unstable_all = torch.zeros(B, dtype=torch.bool)
    # Finished problems are written back and masked out; the arrays are
    # compacted only once most of them have finished, since every compaction
    # gathers all per-problem state.
    live, Q, sd, lam = torch.arange(B), Qn, sd_all, lam_all.clone()
    corral = corral_type(Qn, lam > 0)
    major = torch.ones(B, dtype=torch.bool)
    active = torch.ones(B, dtype=torch.bool)
    iterations = 0
    for iterations in range(1, max_iter + 1):  # noqa: B007 (reported to the caller)
        # Major step: stop when every row passes the per-row test, else bring in
        # the row outside the corral that is violated most relative to its norm
        # (any violated row decreases the norm; scoring by (f - v_j)/‖g_j‖ serves
        # small rows instead of leaving them for last). Rows of the corral are
        # at f up to rounding; whatever they miss, the certificate catches.
        v, f, violated = _violated(Q, sd, lam, tol)
        violated &= ~corral.S
        score = torch.where(violated, (f.unsqueeze(-1) - v) / sd.clamp_min(1e-300),
                            torch.full_like(v, -torch.inf))
        best, j = score.max(-1)
        finish = active & ((major & (best == -torch.inf)) | corral.unstable)
        if bool(finish.any()):
            lam_all[live[finish]] = lam[finish]
            unstable_all[live[finish]] = corral.unstable[finish]
            active &= ~finish
            n_active = int(active.sum())
            if n_active == 0:
                break
            if 2 * n_active < live.numel():
                corral.keep(active)
                live, Q, sd, lam, major, j = (t[active] for t in (live, Q, sd, lam, major, j))
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


def _active_set_solutions(Qn: Tensor, tol: float, rounds: int) -> tuple[Tensor, Tensor]:
    """:func:`_guess_supports` for a batch ``[B, K, K]``: with :class:`_UnrolledCholesky`
    for large batches of small K (:func:`_unrolled_pays`), else :class:`_Equilibrated`."""
    B, K = Qn.shape[0], Qn.shape[-1]
    system = _UnrolledCholesky(_entries(Qn)) if _unrolled_pays(B, K) else _Equilibrated(Qn)
    return _guess_supports(system, tol, rounds, B, K)[:2]


def _guess_supports(system: _UnrolledCholesky | _Equilibrated, tol: float, rounds: int,
                    B: int, K: int, S: Tensor | None = None, budget: Tensor | None = None,
                    min_active: int = 0) -> tuple[Tensor, Tensor, tuple[Tensor, Tensor, Tensor]]:
    """Guess every problem's support, a few batched solves for all of them at once.

    Start with all K rows, or with the supports S ``[B, K]`` when given (when the
    gradients of a bucket are many more than K numbers long and not strongly
    aligned, the optimum usually has full support and one solve settles it). Then,
    per round and per unsettled problem: if the affine minimiser on S has a weight
    ≤ 0, drop those rows; else add the row that fails the per-row test most. A guess
    counts only when the per-row test certifies it (``system.residuals``), so this is
    a shortcut, never an approximation. On aligned gradients (optimum on a face)
    about half the problems settle after one drop, nearly all after three rounds.

    Each problem may take ``rounds`` guesses after its first (``budget`` ``[B]``: its
    own count). The rounds stop early once fewer than ``min_active`` problems are
    left, which then carry on later with the same guesses and budgets.

    Returns (weights ``[B, K]``, solved ``[B]``, (pending, next, budget)): the
    problems ``pending`` (indices) still have a guess ``next`` to try, which a later
    call takes up as S with the remaining ``budget``; the others unsolved either
    used up their guesses or had a singular support, which is Wolfe's (it keeps
    corrals affinely independent).
    """
    lam = torch.zeros(B, K, dtype=torch.float64, device=system.r.device)
    solved = torch.zeros(B, dtype=torch.bool, device=lam.device)
    live = torch.arange(B, device=lam.device)
    full = S is None
    if full:
        S = torch.ones(B, K, dtype=torch.bool, device=lam.device)
    left = torch.full((B,), rounds, device=lam.device) if budget is None else budget
    active = torch.ones(B, dtype=torch.bool, device=lam.device)
    while True:
        y, info = system.solve(None if full else S)
        full = False
        positive = torch.where(S, y, torch.ones_like(y)).amin(-1) > 0
        v, f, violated, below_vertex = system.residuals(y, tol)
        done = active & (info == 0) & positive & ~violated.any(-1) & below_vertex
        lam[live[done]] = y[done]
        solved[live[done]] = True
        active &= (info == 0) & ~done & (left > 0)
        n_active = int(active.sum())
        if n_active == 0:
            break
        stop = n_active < min_active
        # Compacting gathers every per-problem array: worth it only once a quarter
        # are done (after the full-support round, usually few are on aligned gradients).
        if stop or 4 * n_active < 3 * live.numel():
            live, S, left, y, v, f, violated, positive = (
                t[active] for t in (live, S, left, y, v, f, violated, positive))
            system.keep(active)
            active = torch.ones(n_active, dtype=torch.bool, device=lam.device)
        sd = system.row_norms
        score = torch.where(violated & ~S, (f.unsqueeze(-1) - v) / sd.clamp_min(1e-300),
                            torch.full_like(v, -torch.inf))
        # max(-1) finds the same first maximum as argmax(-1), measured 5–15 times faster
        # on the strided [B, K] views of the unrolled layout.
        add = _one_hot(score.max(-1).indices, K) & positive.unsqueeze(-1)
        S = torch.where(positive.unsqueeze(-1), S | add, S & (y > 0))
        left = left - 1
        if stop:
            break
    return lam, solved, (live[active], S[active], left[active])


def _upper_bound(s: Tensor, f: Tensor, K: int) -> Tensor:
    """What the true λᵀQλ can be at most: f plus its rounding 4Kε·s², s = Σλ_i√Q_ii."""
    return f + (_ROUNDING * K * _EPS) * s * s


def _below(vertex: Tensor, s: Tensor, f: Tensor, K: int) -> Tensor:
    """:func:`_no_worse_than_a_vertex` given ``vertex`` = min_k Q_kk and s = Σλ_i√Q_ii."""
    return _upper_bound(s, f, K) <= vertex * (1 + 2 * _ROUNDING * K * _EPS)


def _no_worse_than_a_vertex(Qn: Tensor, sd: Tensor, lam: Tensor, f: Tensor) -> Tensor:
    """λ is provably no worse than the best vertex: upper bound of f ≤ min_k Q_kk (+ its
    rounding).

    The per-row test admits the rounding of f − v_j at the scale s of the rows λ
    uses, so weights that reach a small update through a large cancellation (s
    big, f tiny) can pass it far from the optimum, e.g. cancel two rows of norm 10
    to 1e-15 where a row of norm 1e-10 alone reaches 1e-20. A vertex (one row,
    nothing cancels) is known to rounding, and the optimum is never above it.
    """
    return _below(torch.diagonal(Qn, dim1=-2, dim2=-1).amin(-1), (lam * sd).sum(-1), f,
                  lam.shape[-1])


def _certified(Qn: Tensor, lam: Tensor, tol: float) -> Tensor:
    sd = _sqrt(torch.diagonal(Qn, dim1=-2, dim2=-1).clamp_min(0.0))
    _, f, violated = _violated(Qn, sd, lam, tol)
    return ~violated.any(-1) & _no_worse_than_a_vertex(Qn, sd, lam, f)


def _solve_normalised(Qn: Tensor, tol: float, max_iter: int) -> tuple[Tensor, int]:
    lam, solved = _active_set_solutions(Qn, tol, _GUESS_ROUNDS)
    iterations = _finish_with_wolfe(Qn, lam, ~solved, tol, max_iter)
    return _on_simplex(lam, dim=-1), iterations


def _finish_with_wolfe(Qn: Tensor, lam: Tensor, rest: Tensor, tol: float, max_iter: int
                       ) -> int:
    """Solve the ``rest`` of ``Qn`` by Wolfe's method, writing into ``lam``; returns the
    iterations (1 when there is nothing left)."""
    if not bool(rest.any()):
        return 1
    lam[rest], redo, iterations = _wolfe(Qn[rest], _InverseCorral, tol, max_iter)
    # Exactness over speed: whatever the rank-one updates could not certify
    # is solved again with fresh factorisations.
    redo |= ~_certified(Qn[rest], lam[rest], tol)
    if bool(redo.any()):
        idx = rest.nonzero().squeeze(-1)[redo]
        again, _, extra = _wolfe(Qn[idx], _SolvedCorral, tol, max_iter)
        iterations += extra
        # Keep whichever answer is provably smaller (usually the fresh one); an answer
        # that is not finite (the rank-one updates can break down into NaN) counts as +inf.
        Qi = Qn[idx]
        sd = _sqrt(torch.diagonal(Qi, dim1=-2, dim2=-1).clamp_min(0.0))
        bounds = [_upper_bound((w * sd).sum(-1),
                               (w * torch.bmm(Qi, w.unsqueeze(-1)).squeeze(-1)).sum(-1),
                               Qn.shape[-1]).nan_to_num(nan=torch.inf, posinf=torch.inf)
                  for w in (lam[idx], again)]
        lam[idx] = torch.where((bounds[1] <= bounds[0]).unsqueeze(-1), again, lam[idx])
    if not bool(torch.isfinite(lam[rest]).all()):
        b = int(rest.nonzero()[~torch.isfinite(lam[rest]).all(-1)][0])
        raise GradientError(f"the min-norm solver found no finite weights for matrix {b} of the "
                            "batch (normalised: " + str(Qn[b].tolist()) + "); please report this")
    return iterations


def _on_simplex(lam: Tensor, dim: int) -> Tensor:
    """λ clamped at 0 and divided by its sum (taken in order), rows along ``dim``."""
    lam = lam.clamp_min(0.0)
    rows = lam.movedim(dim, 0)
    return lam / _add_rows(rows).unsqueeze(dim)


def solve_min_norm(Q: Tensor, *, tol: float | None = None, max_iter: int | None = None
                   ) -> MinNormSolution:
    """Solve a batch of min-norm problems exactly and certify the result.

    :param Q: Gram matrices ``GGᵀ``, shape ``[..., K, K]``; refused unless symmetric
        positive semi-definite to rounding.
    :param tol: per-row tolerance: every row j ends with
        :math:`(Q\\lambda)_j \\ge f - \\text{tol}\\sqrt{Q_{jj} f}` − rounding (module
        docstring), i.e. a cosine of at least −tol between g_j and the update;
        default ``10·K·eps(float64)``.
    :param max_iter: cap on lock-step iterations; default ``5K + 20``.

    >>> Q = torch.tensor([[1.0, -1.0], [-1.0, 4.0]], dtype=torch.float64)
    >>> sol = solve_min_norm(Q)
    >>> [round(w, 12) for w in sol.weights.tolist()], round(float(sol.value), 12)  # 5/7, 2/7; 3/7
    ([0.714285714286, 0.285714285714], 0.428571428571)
    >>> solve_min_norm(torch.tensor([[1.0, 2.0], [2.0, 1.0]]))  # doctest: +ELLIPSIS
    Traceback (most recent call last):
    ...
    refmoo._checks.GradientError: Q is not positive semi-definite: ...
    """
    check_gram(Q)
    check_symmetric(Q)
    return _solve(Q, tol=tol, max_iter=max_iter, check_definite=True)


def _solve(Q: Tensor, *, tol: float | None = None, max_iter: int | None = None,
           check_definite: bool = False) -> MinNormSolution:
    """:func:`solve_min_norm` without the input checks, for Grams refmoo built itself
    (``check_definite``: with the last one, see :func:`_solve_batch`)."""
    K = Q.shape[-1]
    batch_shape = Q.shape[:-2]
    lam, e, certificate, iterations = _solve_batch(Q, tol, max_iter, certify=True,
                                                   definite=check_definite)
    a, b = pow2(e)
    value, gap, lower = (t * a * b for t in certificate)
    out_dtype = Q.dtype
    return MinNormSolution(
        weights=lam.to(out_dtype).reshape(*batch_shape, K),
        value=value.to(out_dtype).reshape(batch_shape),
        gap=gap.to(out_dtype).reshape(batch_shape),
        lower_bound=lower.to(out_dtype).reshape(batch_shape),
        iterations=iterations,
    )


def _solve_weights(Q: Tensor) -> Tensor:
    """The weights of :func:`_solve`, without the certificate's value, gap and bound
    (MGDA needs only λ; every λ was already certified by the per-row test)."""
    K = Q.shape[-1]
    lam = _solve_batch(Q, None, None, certify=False)[0]
    return lam.to(Q.dtype).reshape(*Q.shape[:-2], K)


def _normalised(Q: Tensor, *, batch_last: bool = False) -> tuple[Tensor, Tensor]:
    """``(Qn, e)``: float64 ``Q = 2^e·Qn`` with the largest diagonal entry of each Qn in
    [1/2, 1), read as ½(Qn + Qnᵀ) (exact where Q is symmetric; BLAS may leave the
    last bit of a Gram asymmetric). ``batch_last``: Q and Qn are entries ``[K, K, B]``."""
    e = exponent(torch.diagonal(Q, dim1=-3 if batch_last else -2,
                                dim2=-2 if batch_last else -1).amax(-1).to(torch.float64))
    Qn = ldexp(Q.to(torch.float64), -e, trailing=batch_last)
    swap = (0, 1) if batch_last else (-1, -2)
    return 0.5 * (Qn + Qn.transpose(*swap)), e


def _solve_batch(Q: Tensor, tol: float | None, max_iter: int | None, *, certify: bool,
                 definite: bool = False
                 ) -> tuple[Tensor, Tensor, tuple[Tensor, Tensor, Tensor], int]:
    """``(λ [B, K], e [B], (value, gap, lower bound) of Qn, iterations)`` for Q flattened
    to ``[B, K, K]``, solved as Qn = 2^-e·Q in float64 (:func:`_normalised`); the
    certificate is empty unless ``certify``. ``definite``: raise, before Wolfe's method
    runs, unless every matrix passes :func:`refmoo._checks.check_definite` (see
    :func:`_first_rounds` for large batches)."""
    K = Q.shape[-1]
    tol = 10 * K * _EPS if tol is None else check_tol(tol, "tol")
    if max_iter is None:
        max_iter = 5 * K + 20
    flat = Q.detach().reshape(-1, K, K)
    if flat.shape[0] and _unrolled_pays(flat.shape[0], K):
        if flat.device.type == "cpu" and flat.dtype in (torch.float32, torch.float64) \
                and compiled.available():
            return _compiled_rounds(flat, tol, max_iter, certify, definite)
        return _first_rounds(flat, tol, max_iter, certify, definite)
    if definite:
        check_definite(flat.to(torch.float64), dtype=flat.dtype)
    Qn, e = _normalised(flat)
    lam, iterations = _solve_normalised(Qn, tol, max_iter)
    return lam, e, _certify(Qn, lam) if certify else (), iterations


def _normalise_entries(Q: Tensor, out: Tensor, scratch: Tensor) -> Tensor:
    """:func:`_normalised` of a batch ``[b, K, K]`` written as entries into ``out``
    ``[K, K, b]`` (``scratch`` alike), bit for bit; returns e."""
    e = exponent(torch.diagonal(Q, dim1=-2, dim2=-1).amax(-1).to(torch.float64))
    if e.numel() and int(e.abs().max()) > 1000:  # two factors: see _scale.ldexp
        out.copy_(_normalised(_entries(Q), batch_last=True)[0])
        return e
    factor = torch.ldexp(torch.ones_like(e, dtype=torch.float64), -e)
    scratch.copy_(Q.permute(1, 2, 0)).mul_(factor)  # x·2^-e in float64, exact
    torch.add(scratch, scratch.transpose(0, 1), out=out).mul_(0.5)
    return e


def _compiled_rounds(flat: Tensor, tol: float, max_iter: int, certify: bool, definite: bool
                     ) -> tuple[Tensor, Tensor, tuple[Tensor, Tensor, Tensor], int]:
    """:func:`_first_rounds` with every problem's support guesses taken by the compiled
    kernel (``min_norm_guesses`` in ``csrc/kernels.cpp``, see :mod:`refmoo.compiled`):
    the same normalisation and the same element-wise operations as
    :class:`_UnrolledCholesky`, one problem at a time while its entries are in
    registers, so a problem settled there gets the bits that the unrolled path gives
    it (tested), whatever else is in the batch. The others (a singular full
    support, the guesses used up) take :func:`_first_rounds`, definiteness test and
    Wolfe's method included; the kernel settles a problem only after factorising its
    full-support matrix with positive pivots, which proves definiteness as there."""
    lam, e, status = compiled.ops().min_norm_guesses(flat.contiguous(), tol, _GUESS_ROUNDS)
    rest = (status != 0).nonzero().reshape(-1)
    iterations = 1
    certificate = None
    if certify:
        Qt = _entries(_normalised(flat)[0])
        v = _gram_times(Qt, lam.T)
        certificate = torch.stack(_certificate(v, _add_rows(lam.T * v), dim=0))
    if rest.numel():
        lam[rest], e[rest], rest_certificate, iterations = _first_rounds(
            flat[rest], tol, max_iter, certify, definite, index=rest)
        if certificate is not None:
            certificate[:, rest] = torch.stack(rest_certificate)
    return lam, e, tuple(certificate) if certificate is not None else (), iterations


def _first_rounds(flat: Tensor, tol: float, max_iter: int, certify: bool, definite: bool,
                  index: Tensor | None = None
                  ) -> tuple[Tensor, Tensor, tuple[Tensor, Tensor, Tensor], int]:
    """:func:`_solve_batch` for large batches: every problem's support guesses run on
    :class:`_UnrolledCholesky` ``_FIRST_ROUND_ENTRIES / K²`` problems at a time, from
    normalisation to certificate, for as long as a quarter of the chunk is left
    (the full support, and on aligned gradients one or two guesses more); the
    problems still unsettled then take their remaining guesses and Wolfe's method
    together. Every problem carries its next guess and the number of guesses left,
    so it goes through the same supports wherever its rounds run, and on the
    unrolled path those rounds read only its own entries: its bits are then the same
    whatever else is in the batch and whatever the chunk size (tested with the
    unrolled path forced). But whether a problem's later rounds stay in its chunk
    depends on its chunk-mates (a quarter of the chunk must be left), and the rounds
    after the chunks take the LAPACK path when few problems are left; so in ordinary
    use a problem settled in its chunk in one batch and by LAPACK in another can end
    on other bits, within rounding (seen: 2.2e-16).

    ``definite``: a problem that the chunks settle had its full-support matrix
    factorised with positive pivots, so C = RQR (unit diagonal) is positive definite
    up to the factorisation's backward error, a few K²ε, far inside the Kδ = K√ε
    that :func:`refmoo._checks.check_definite` allows. Only the others are given to
    that LAPACK test, which on 10⁴ problems of K = 8 measured a sixth of the solve.
    ``index``: the problems' positions in the caller's batch, for that test's error."""
    B, K = flat.shape[0], flat.shape[-1]
    lam = torch.empty(B, K, dtype=torch.float64, device=flat.device)
    e = torch.empty(B, dtype=torch.int64, device=flat.device)
    certificate = torch.empty(3, B, dtype=torch.float64, device=flat.device) if certify else None
    left, left_entries, pending, guesses, budgets = [], [], [], [], []
    # The chunk's [K, K, b] tensors live in buffers reused from chunk to chunk rather
    # than allocated for each (one operation over [4, 4, 8192] measured 23–47 µs in
    # place against 55–60 µs into a fresh tensor).
    chunk = _chunk_size(K)
    work = torch.empty(3, K * K * min(B, chunk), dtype=torch.float64, device=flat.device)
    for lo in range(0, B, chunk):
        hi = min(lo + chunk, B)
        Qt, C, L = (w[:K * K * (hi - lo)].view(K, K, hi - lo) for w in work)
        e[lo:hi] = _normalise_entries(flat[lo:hi], Qt, scratch=C)
        found, solved, (later, guess, budget) = _guess_supports(
            _UnrolledCholesky(Qt, work=(C, L)), tol, _GUESS_ROUNDS, hi - lo, K,
            min_active=(hi - lo) // 4)
        found = _on_simplex(found, dim=-1)  # NaN where unsolved: replaced below
        lam[lo:hi] = found
        if certificate is not None:
            v = _gram_times(Qt, found.T)
            certificate[:, lo:hi] = torch.stack(_certificate(v, _add_rows(found.T * v), dim=0))
        unsolved = (~solved).nonzero().reshape(-1)
        left.append(lo + unsolved)
        left_entries.append(Qt[:, :, unsolved])
        pending.append(lo + later)
        guesses.append(guess)
        budgets.append(budget)
    rest = torch.cat(left)
    if definite and rest.numel():
        check_definite(flat[rest].to(torch.float64),
                       index=rest if index is None else index[rest], dtype=flat.dtype)
    iterations = 1
    if rest.numel():
        R = rest.numel()
        entries = torch.cat(left_entries, dim=2)
        Qn = entries.permute(2, 0, 1).contiguous()
        found = torch.zeros(R, K, dtype=torch.float64, device=flat.device)
        solved = torch.zeros(R, dtype=torch.bool, device=flat.device)
        later = torch.searchsorted(rest, torch.cat(pending))  # ⊂ rest, both ascending
        P = later.numel()
        if P:
            system = (_UnrolledCholesky(entries[:, :, later].contiguous())
                      if _unrolled_pays(P, K) else _Equilibrated(Qn[later]))
            found[later], solved[later], _ = _guess_supports(
                system, tol, 0, P, K, S=torch.cat(guesses), budget=torch.cat(budgets))
        iterations = _finish_with_wolfe(Qn, found, ~solved, tol, max_iter)
        lam[rest] = found = _on_simplex(found, dim=-1)
        if certificate is not None:  # as for the chunks': bits that do not depend on where
            v = _gram_times(entries, found.T)  # a problem settled
            certificate[:, rest] = torch.stack(_certificate(v, _add_rows(found.T * v), dim=0))
    return lam, e, tuple(certificate) if certificate is not None else (), iterations


def _certify(Q: Tensor, lam: Tensor) -> tuple[Tensor, Tensor, Tensor]:
    v = (Q @ lam.unsqueeze(-1)).squeeze(-1)
    return _certificate(v, (lam * v).sum(-1), dim=-1)


def _certificate(v: Tensor, f: Tensor, dim: int) -> tuple[Tensor, Tensor, Tensor]:
    """(value, gap, lower bound) from v = Qλ (rows along ``dim``) and f = λᵀv."""
    f = f.clamp_min(0.0)
    m = v.amin(dim)
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
    check_gram(Q, psd=True)
    K = Q.shape[-1]
    Q64 = Q.to(torch.float64).reshape(-1, K, K)
    return _certify(Q64, weights.to(torch.float64).reshape(-1, K))[1].reshape(Q.shape[:-2])
