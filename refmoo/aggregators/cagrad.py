r"""CAGrad: the best worst-case improvement in a ball around the average gradient.

Paper: B. Liu, X. Liu, X. Jin, P. Stone, Q. Liu, "Conflict-Averse Gradient
Descent for Multi-task Learning", NeurIPS 2021, https://arxiv.org/abs/2110.14048
(Algorithm 1; authors' code github.com/Cranial-XIX/CAGrad).

Formula: with :math:`g_0 = \frac1K\sum_k g_k` and :math:`\sqrt\varphi = c\|g_0\|`, CAGrad
takes :math:`d = \arg\max_{\|d-g_0\|\le\sqrt\varphi} \min_k \langle g_k, d\rangle`. Its dual is

.. math:: w^\star \in \arg\min_{w\in\Delta_K} F(w) = g_w^\top g_0 + \sqrt\varphi\,\|g_w\|,
          \qquad d = g_0 + \frac{\sqrt\varphi}{\|g_{w^\star}\|}\, g_{w^\star},

:math:`g_w = G^\top w`, and :math:`A(G) = d/r` with the authors' ``rescale``: r = 1
(``rescale=0``), :math:`1+c^2` (``rescale=1``, the authors' default) or
:math:`1+c` (``rescale=2``). **Default here: rescale=2**, the only one that
returns :math:`g_1` for K = 1 (and g for K identical rows), which refmoo requires
of every aggregator. TorchJD applies no rescale (``rescale=0``).

Non-conflicting range. Strong duality gives :math:`\min_k\langle g_k, d\rangle = F(w^\star)`
and, for c ≥ 1, :math:`F(w) \ge \|g_w\|\|g_0\|(c-1) \ge 0`; so **for c ≥ 1,
:math:`\langle g_k, A(G)\rangle \ge 0` for every k**. For c < 1 it can fail: for
G = [[1, 0], [-2, ε]] the ball around :math:`g_0 = (-1/2, ε/2)` misses the half-plane
:math:`d_1 \ge 0` (tested).

Solver (exact up to rounding). For κ > 0 let :math:`w(\kappa)` be the min-norm point
of the shifted rows :math:`g_k + \kappa g_0` (Gram :math:`Q + \kappa(b\mathbf 1^\top +
\mathbf 1 b^\top) + \kappa^2\|g_0\|^2\mathbf 1\mathbf 1^\top`, b = Qw₀), solved exactly by
:func:`refmoo.min_norm.solve_min_norm`. Its KKT conditions coincide with those of
F when :math:`\|g_{w(\kappa)}\| = \kappa\sqrt\varphi`, and :math:`\|g_{w(\kappa)}\|/\kappa`
is non-increasing, so the root is bracketed by
:math:`[\sqrt{\mathrm{MGDA}}/\sqrt\varphi,\ \max_k\|g_k\|/\sqrt\varphi]`. On a fixed support S,
:math:`w(\kappa) = w_a + \kappa w_b` (two bordered solves) and the root is
:math:`\kappa_S = \sqrt{A/(\varphi - C)}`, :math:`A = \|G^\top w_a\|^2`,
:math:`C = \|G^\top w_b\|^2`. Iterate: κ ← κ_S of the current support when inside the
bracket, else bisect; stop when the support at κ_S is S (then κ_S is the exact
root) or the bracket collapses (a root at a breakpoint between supports). In
the tests this takes at most 7 iterations. The certificate is
:math:`F(w) - \min_k \langle g_k, d\rangle \ge F(w) - F^\star`, returned by
:meth:`CAGrad.solve` relative to :math:`\max_k\|g_k\|^2`.

Degenerate case. If G is Pareto stationary (0 in the hull of the rows) and
:math:`\mathrm{dist}(g_0, C^*) \le \sqrt\varphi` with :math:`C^* = \{x: Gx\ge 0\}`,
then :math:`F^\star = 0`, :math:`g_{w^\star} = 0` and the formula is 0/0: every d in the
ball with :math:`Gd \ge 0` is optimal. We return the limit of the κ-path,
:math:`d = \pi_{C^*}(g_0)` (computed by the exact dual-cone projection of
:mod:`._dual_cone`); e.g. G = [g, −2g] with c ≥ 1 gives 0. The authors' code
divides by :math:`\|g_w\| + 10^{-8}` there, TorchJD returns 0. In this branch the
dual certificate is the min-norm weights, so the gap is only of order
:math:`c\|g_0\|\sqrt{\varepsilon}`. If :math:`\|g_0\|^2 \le 10K\varepsilon\max_k\|g_k\|^2`,
g₀ is rounding noise in the Gram and we return the ball point 0 when c ≥ 1 (it
conflicts with nothing), else g₀.

>>> import torch
>>> G = torch.tensor([[1.0, 0.0], [0.0, 1.0]], dtype=torch.float64)
>>> [round(x, 12) for x in CAGrad(c=0.5, rescale=0)(G).tolist()]  # g0 + 0.5‖g0‖·g0/‖g0‖
[0.75, 0.75]
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import Tensor

# The shifted Grams below are PSD only up to the rounding of their formation, and
# are refmoo's own: they skip solve_min_norm's input check.
from ..min_norm import _solve
from ._base import GramAggregator
from ._dual_cone import project_dual_cone

_EPS = torch.finfo(torch.float64).eps


@dataclass(frozen=True)
class CAGradSolution:
    """Weights of d (before rescaling) and their certificate, per bucket."""

    weights: Tensor
    """``[B, K]`` float64 with :math:`d = G^\\top` weights."""
    dual: Tensor
    """The dual w ``[B, K]`` that certifies d."""
    gap: Tensor
    """:math:`F(w) - \\min_k\\langle g_k, d\\rangle`, relative to :math:`\\max_k\\|g_k\\|^2`;
    by weak duality it bounds how far both d and w are from optimal."""
    value: Tensor
    """:math:`\\min_k\\langle g_k, d\\rangle` relative to :math:`\\max_k\\|g_k\\|^2`."""
    iterations: int


def _bordered_parts(Q: Tensor, b: Tensor, S: Tensor) -> tuple[Tensor, Tensor]:
    """w_a, w_b on support S: [Q_SS 1; 1ᵀ 0] [w; ·] = [0; 1] and [-b_S; 0]."""
    N, K = S.shape
    Sb = torch.cat([S, S.new_ones(N, 1)], dim=1)
    M = Q.new_ones(N, K + 1, K + 1)
    M[:, :K, :K] = Q
    M[:, K, K] = 0.0
    M = torch.where(Sb.unsqueeze(1) & Sb.unsqueeze(2), M, torch.eye(K + 1, dtype=Q.dtype))
    rhs = Q.new_zeros(N, K + 1, 2)
    rhs[:, K, 0] = 1.0
    rhs[:, :K, 1] = torch.where(S, -b, 0.0)
    sol, info = torch.linalg.solve_ex(M, rhs)
    singular = info != 0
    if bool(singular.any()):
        sol[singular] = torch.linalg.pinv(M[singular]) @ rhs[singular]
    sol = torch.where(S.unsqueeze(-1), sol[:, :K], 0.0)
    return sol[..., 0], sol[..., 1]


def _quad(Q: Tensor, w: Tensor) -> Tensor:
    return (w * (Q @ w.unsqueeze(-1)).squeeze(-1)).sum(-1)


def _shifted(Q: Tensor, b: Tensor, n: Tensor, kappa: Tensor) -> Tensor:
    """Gram of the rows g_k + κ g0."""
    return Q + kappa[:, None, None] * (b.unsqueeze(-1) + b.unsqueeze(-2)) + \
        (kappa**2 * n)[:, None, None]


class CAGrad(GramAggregator):
    """CAGrad with an exact dual solve; see the module docstring.

    :param c: radius of the ball, relative to :math:`\\|g_0\\|` (c ≥ 0).
    :param rescale: 0 (none), 1 (divide by 1 + c²) or 2 (divide by 1 + c, default).
    """

    def __init__(self, c: float = 0.4, rescale: int = 2) -> None:
        if c < 0:
            raise ValueError(f"c must be non-negative, got {c}")
        if rescale not in (0, 1, 2):
            raise ValueError(f"rescale must be 0, 1 or 2, got {rescale}")
        self.c = float(c)
        self.rescale = rescale

    def solve(self, Q: Tensor, max_iter: int = 60) -> CAGradSolution:
        """Weights of the un-rescaled d for Gram matrices ``[B, K, K]``, with certificate."""
        B, K = Q.shape[0], Q.shape[-1]
        Q64 = Q.to(torch.float64)
        Q64 = 0.5 * (Q64 + Q64.transpose(-1, -2))
        scale = torch.diagonal(Q64, dim1=-2, dim2=-1).amax(-1)
        scale = torch.where(scale > 0, scale, torch.ones_like(scale))
        Qn = Q64 / scale[:, None, None]
        w0 = torch.full((B, K), 1.0 / K, dtype=torch.float64)
        b = (Qn @ w0.unsqueeze(-1)).squeeze(-1)  # b_k = ⟨g_k, g0⟩
        n = (w0 * b).sum(-1).clamp_min(0.0)
        s = self.c * n.sqrt()
        # d = g0 unless there is a ball to move in; the vertex argmin_k b_k is then dual-optimal.
        primal = w0.clone()
        dual = torch.nn.functional.one_hot(b.argmin(-1), K).to(torch.float64)
        iterations = 0
        visible = n > 10 * K * _EPS
        if self.c >= 1:
            # g0 is rounding noise in the Gram: 0 is in the ball and conflicts with nothing.
            primal[~visible] = 0.0
        idx = (visible & (s > 0)).nonzero().reshape(-1)
        if idx.numel():
            mgda = _solve(Qn[idx])
            dual[idx] = mgda.weights
            lo = mgda.value.clamp_min(0.0).sqrt() / s[idx]
            stationary = mgda.value <= 100 * K * _EPS
            if bool(stationary.any()):
                st = idx[stationary]
                V, _ = project_dual_cone(Qn[st], w0[st].unsqueeze(1))
                dist = _quad(Qn[st], V[:, 0] - w0[st]).clamp_min(0.0).sqrt()
                inside = dist <= s[st] * (1 + 1e-12)
                primal[st[inside]] = V[inside, 0]
                lo[stationary] = 0.0
                solved = torch.zeros_like(stationary)
                solved[stationary.nonzero().reshape(-1)[inside]] = True
                idx, lo = idx[~solved], lo[~solved]
            if idx.numel():
                primal[idx], dual[idx], iterations = self._root(
                    Qn[idx], b[idx], n[idx], s[idx], lo, dual[idx] > 0, max_iter)
        value, gap = self._certificate(Qn, b, s, primal, dual)
        return CAGradSolution(weights=primal, dual=dual, gap=gap, value=value,
                             iterations=iterations)

    @staticmethod
    def _root(Qn: Tensor, b: Tensor, n: Tensor, s: Tensor, lo: Tensor, support: Tensor,
              max_iter: int) -> tuple[Tensor, Tensor, int]:
        """Solve ‖g_{w(κ)}‖ = κs by support Newton steps inside a bisection bracket.

        Returns the weights of d, the dual w, and the iterations used."""
        N, K = b.shape
        lo = lo.clone()
        hi = 1.0 / s  # ‖g_w‖ ≤ max_k ‖g_k‖ = 1 after normalisation
        primal = torch.empty(N, K, dtype=Qn.dtype)
        dual = torch.empty(N, K, dtype=Qn.dtype)
        kappa = torch.empty(N, dtype=Qn.dtype)
        origin = support.clone()  # the support that κ's closed form came from
        from_support = torch.zeros(N, dtype=torch.bool)
        live = torch.arange(N)
        S = origin.clone()
        it = 0
        for it in range(1, max_iter + 1):
            if it > 1:
                k = kappa[live]
                w = _solve(_shifted(Qn[live], b[live], n[live], k)).weights
                S = w > 0
                rho = _quad(Qn[live], w).clamp_min(0.0).sqrt()
                above = rho > k * s[live]
                lo[live] = torch.where(above, k, lo[live])
                hi[live] = torch.where(above, hi[live], k)
                # On the support it came from, κ_S is the exact root; a collapsed
                # bracket means a root at a breakpoint between supports.
                done = (from_support[live] & (S == origin[live]).all(-1)) | \
                    (hi[live] - lo[live] <= 4 * _EPS * hi[live]) | (it == max_iter)
                fin = live[done]
                ratio = s[fin] / rho[done].clamp_min(1e-300)
                primal[fin] = 1.0 / K + ratio.unsqueeze(-1) * w[done]
                dual[fin] = w[done]
                live, S = live[~done], S[~done]
                if live.numel() == 0:
                    break
            wa, wb = _bordered_parts(Qn[live], b[live], S)
            A, C = _quad(Qn[live], wa).clamp_min(0.0), _quad(Qn[live], wb).clamp_min(0.0)
            room = s[live] ** 2 - C
            k_S = torch.where(room > 0, (A / room.clamp_min(1e-300)).sqrt(), torch.nan)
            l, h = lo[live], hi[live]
            # Tolerant ends: a root on the (unevaluated) bound is common, e.g. at a vertex.
            inside = (k_S >= l * (1 - 1e-12)) & (k_S <= h * (1 + 1e-12)) & (k_S > 0)
            kappa[live] = torch.where(inside, k_S, torch.where(l > 0, (l * h).sqrt(), h / 16))
            origin[live] = S
            from_support[live] = inside
        return primal, dual, it

    @staticmethod
    def _certificate(Qn: Tensor, b: Tensor, s: Tensor, primal: Tensor, dual: Tensor
                     ) -> tuple[Tensor, Tensor]:
        """(min_k ⟨g_k, d⟩, F(w) − min_k ⟨g_k, d⟩): weak duality makes the gap ≥ 0 for any
        d in the ball and any w ∈ Δ, and it bounds the suboptimality of both."""
        value = (Qn @ primal.unsqueeze(-1)).squeeze(-1).amin(-1)
        F = (b * dual).sum(-1) + s * _quad(Qn, dual).clamp_min(0.0).sqrt()
        return value, F - value

    def _weights_from_gram(self, Q: Tensor, keys: Tensor) -> Tensor:
        w = self.solve(Q).weights
        if self.rescale == 1:
            w = w / (1 + self.c**2)
        elif self.rescale == 2:
            w = w / (1 + self.c)
        return w.to(Q.dtype)

    def __repr__(self) -> str:
        return f"CAGrad(c={self.c}, rescale={self.rescale})"
