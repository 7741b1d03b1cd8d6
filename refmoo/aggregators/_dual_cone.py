r"""Exact batched projection onto the dual cone of the rows of G, on the Gram matrix.

For G ∈ R^{K×D} the dual cone is :math:`C^* = \{x : Gx \ge 0\}`. For a vector
:math:`G^\top u`, its projection onto :math:`C^*` is :math:`G^\top v^\star` with

.. math:: v^\star \in \arg\min_{v \ge u} v^\top Q v, \qquad Q = GG^\top

(Quinton & Rey 2024, Proposition 1). Writing :math:`v = u + \lambda` this is the
non-negative least-squares problem :math:`\min_{\lambda\ge0} \|G^\top u + G^\top\lambda\|^2`,
by Moreau's decomposition the distance from :math:`G^\top u` to the polar cone
:math:`-\mathrm{cone}(G)`.

Algorithm: Lawson & Hanson's active-set NNLS (C. Lawson, R. Hanson, *Solving
Least Squares Problems*, 1974, ch. 23), written on Gram entries and run in
lock-step over a batch of problems. A row j enters the passive set only when
:math:`w_j = -(Q(u+\lambda))_j > 0`; at that moment the current point is the
least-squares solution on the passive set, so :math:`g_j` has a component
orthogonal to the passive rows and the passive rows stay linearly independent.
Rank-deficient Q (duplicate, zero or dependent rows) therefore never produces a
singular sub-system in exact arithmetic, and the method ends after finitely many
steps at the exact optimum (up to rounding). A pseudo-inverse covers sub-systems
that rounding makes singular.

Stopping test, per row. With :math:`v = u + \lambda`, :math:`s = \sum_i |v_i|\sqrt{Q_{ii}}`
(the scale of the rows in play), a bound is freed only when
:math:`-(Qv)_j > 100K\varepsilon\sqrt{Q_{jj}}\,s`: the rounding of :math:`(Qv)_j`
itself, measured on row j. So the projection :math:`G^\top v` ends with
:math:`\langle g_j, G^\top v\rangle \ge -100K\varepsilon\,\|g_j\|\,s` for every row,
however small :math:`\|g_j\|` is next to the others; a threshold relative to the
largest row would leave a row 1e-8 times smaller in conflict.

Certificate: the KKT conditions are :math:`\lambda \ge 0`, :math:`Qv \ge 0` and
:math:`(Qv)_j = 0` wherever :math:`\lambda_j > 0`. :func:`project_dual_cone`
returns the largest violation of the last two, row j's divided by
:math:`\sqrt{Q_{jj}}\,s` (a cosine-like number, the same at every scale); the
first holds exactly. Note :math:`(Qv)_k = \langle g_k, G^\top v\rangle`, so the
residual bounds how much the projection conflicts with any row.
"""

from __future__ import annotations

import torch
from torch import Tensor

from .._scale import normalise_gram

_EPS = torch.finfo(torch.float64).eps


def _passive_solve(H: Tensor, f: Tensor, P: Tensor) -> Tensor:
    """For each problem, z with z_P = -H_PP^{-1} f_P and z = 0 off the passive set P."""
    K = P.shape[-1]
    A = torch.where(P.unsqueeze(-1) & P.unsqueeze(-2), H, torch.eye(K, dtype=H.dtype))
    rhs = torch.where(P, -f, torch.zeros_like(f)).unsqueeze(-1)
    z, info = torch.linalg.solve_ex(A, rhs)
    singular = info != 0
    if bool(singular.any()):
        z[singular] = torch.linalg.pinv(A[singular], hermitian=True) @ rhs[singular]
    z = z.squeeze(-1)
    return torch.where(P, z, torch.zeros_like(z))


_ROUNDING = 100.0


def _row_threshold(sd: Tensor, v: Tensor) -> Tensor:
    """The rounding of (Qv)_j, per row: 100·K·ε·√Q_jj·Σ_i |v_i|√Q_ii (see the module docstring)."""
    K = v.shape[-1]
    return (_ROUNDING * K * _EPS) * sd * (v.abs() * sd).sum(-1, keepdim=True)


def nnls_gram(H: Tensor, U: Tensor, max_iter: int | None = None) -> Tensor:
    r"""Solve :math:`\min_{\lambda\ge0} \tfrac12(u+\lambda)^\top H(u+\lambda)` for a batch:
    H ``[N, K, K]`` PSD float64 with max diagonal ≤ 1, U ``[N, K]``. Returns λ ``[N, K]``."""
    N, K = U.shape
    if max_iter is None:
        max_iter = 5 * K + 20
    f = (H @ U.unsqueeze(-1)).squeeze(-1)
    sd_all = torch.diagonal(H, dim1=-2, dim2=-1).clamp_min(0.0).sqrt()
    lam_all = torch.zeros_like(f)
    live = torch.arange(N)
    lam = lam_all.clone()
    P = torch.zeros(N, K, dtype=torch.bool)
    outer = torch.ones(N, dtype=torch.bool)
    for _ in range(max_iter):
        n = live.numel()
        rows = torch.arange(n)
        # Outer step: stop at a KKT point, else free the bound violated most
        # relative to its row's norm (a small row must not wait behind big ones).
        w = -((H[live] @ lam.unsqueeze(-1)).squeeze(-1) + f[live])
        sd = sd_all[live]
        violated = ~P & (w > _row_threshold(sd, U[live] + lam))
        score = torch.where(violated, w / sd.clamp_min(1e-300), torch.full_like(w, -torch.inf))
        best, j = score.max(-1)
        finish = outer & (best == -torch.inf)
        if bool(finish.any()):
            lam_all[live[finish]] = lam[finish]
            keep = ~finish
            live, lam, P, outer, j = (t[keep] for t in (live, lam, P, outer, j))
            if live.numel() == 0:
                break
            rows = torch.arange(live.numel())
        P[rows[outer], j[outer]] = True
        # Inner step: move towards the least-squares point of the passive set.
        z = _passive_solve(H[live], f[live], P)
        positive = torch.where(P, z, torch.ones_like(z)).amin(-1) > 0
        lam = torch.where(positive.unsqueeze(-1), z, lam)
        if not bool(positive.all()):
            blocking = P & (z <= 0)
            ratio = torch.where(blocking, lam / (lam - z).clamp_min(1e-300),
                                torch.full_like(lam, torch.inf))
            alpha, first = ratio.min(-1)
            moved = lam + alpha.clamp(0.0, 1.0).unsqueeze(-1) * (z - lam)
            moved[rows, first] = 0.0
            moved = moved.clamp_min(0.0)
            # A row that was just freed but cannot move is a rounding artefact
            # of a KKT point (w_j barely above the threshold): stop there.
            stuck = outer & ~positive & (first == j) & (alpha <= 0)
            lam = torch.where(positive.unsqueeze(-1), lam, moved)
            P = torch.where(positive.unsqueeze(-1), P, P & (moved > 0))
            if bool(stuck.any()):
                lam_all[live[stuck]] = lam[stuck]
                keep = ~stuck
                live, lam, P, positive = (t[keep] for t in (live, lam, P, positive))
                if live.numel() == 0:
                    break
        outer = positive
    else:
        lam_all[live] = lam
    return lam_all


def project_dual_cone(Q: Tensor, U: Tensor) -> tuple[Tensor, Tensor]:
    r"""Weights of the projections of the vectors :math:`G^\top u` onto :math:`\{x: Gx\ge0\}`.

    :param Q: Gram matrices ``[B, K, K]``.
    :param U: weights ``[B, M, K]`` of the M vectors to project per matrix.
    :returns: ``(V, residual)``: V ``[B, M, K]`` (float64) with :math:`v \ge u` and
        :math:`G^\top v` the projection, and the KKT residual ``[B, M]``, row j's
        violation relative to :math:`\sqrt{Q_{jj}}\sum_i |v_i|\sqrt{Q_{ii}}`.

    >>> Q = torch.tensor([[[1.0, -1.0], [-1.0, 4.0]]], dtype=torch.float64)
    >>> V, res = project_dual_cone(Q, torch.eye(2, dtype=torch.float64)[None])
    >>> V[0].tolist()  # g1 gains g2/4, g2 gains g1
    [[1.0, 0.25], [1.0, 1.0]]
    """
    B, M, K = U.shape
    Q64 = Q.to(torch.float64)
    Q64 = 0.5 * (Q64 + Q64.transpose(-1, -2))
    Qn, _ = normalise_gram(Q64)
    U64 = U.to(torch.float64)
    H = Qn.unsqueeze(1).expand(B, M, K, K).reshape(B * M, K, K)
    lam = nnls_gram(H, U64.reshape(B * M, K)).reshape(B, M, K)
    V = U64 + lam
    grad = V @ Qn  # (Qv)ᵀ = vᵀQ, Q symmetric
    on_support = torch.where(lam > 0, grad.abs(), torch.zeros_like(grad))
    violation = torch.maximum((-grad).clamp_min(0.0), on_support)
    sd = torch.diagonal(Qn, dim1=-2, dim2=-1).clamp_min(0.0).sqrt().unsqueeze(1)
    scale = sd * (V.abs() * sd).sum(-1, keepdim=True)
    residual = torch.where(scale > 0, violation / torch.where(scale > 0, scale, 1.0), violation)
    return V, residual.amax(-1)
