r"""Nash-MTL: the Nash bargaining solution between the languages.

Paper: A. Navon, A. Shamsian, I. Achituve, H. Maron, K. Kawaguchi, G. Chechik,
E. Fetaya, "Multi-Task Learning as a Bargaining Game", ICML 2022,
https://arxiv.org/abs/2202.01017 (Section 3, Eq. 2).

Formula: :math:`A(G) = G^\top\alpha` where :math:`\alpha > 0` solves

.. math:: Q\alpha = 1/\alpha \quad (\text{element-wise}), \qquad Q = GG^\top,

i.e. :math:`\langle g_k, A(G)\rangle = 1/\alpha_k > 0` for every k. This α is the
unique minimiser of the strictly convex, self-concordant
:math:`\varphi(\alpha) = \tfrac12\alpha^\top Q\alpha - \sum_k \log\alpha_k`. Consequences
used in the tests: A(cG) = A(G) for c > 0 (the direction is scale-invariant, as
in the paper and the authors' code), and :math:`\|A(G)\|^2 = \alpha^\top Q\alpha = K`.

Solver: Newton's method on φ in float64 with an Armijo backtracking line search
(all 41 trial steps 2^-j are evaluated at once), from the best multiple of
:math:`1/\sqrt{\mathrm{diag}\,Q}`, batched over buckets. It stops when the squared
Newton decrement :math:`\delta^2 \le 10^{-26}`, or when δ² < 1e-6 stops shrinking
fourfold per step (quadratic convergence has hit rounding); for self-concordant
φ and δ < 0.68 this certifies
:math:`\varphi(\alpha) - \varphi^\star \le \delta^2`. :meth:`NashMTL.solve` returns
α with δ² and the residual :math:`\max_k |\alpha_k(Q\alpha)_k - 1|`.

Degenerate buckets. φ is bounded below, so the solution exists, exactly when no
:math:`z \ge 0, z \ne 0` has :math:`G^\top z = 0`, i.e. when G is *not* Pareto
stationary (rank deficiency alone is fine: the Hessian
:math:`Q + \mathrm{diag}(\alpha^{-2})` stays positive definite). A bucket whose
min-norm value (exact Wolfe solver) is at most ``stationary_tol`` times
:math:`s^2`, :math:`s = \sum_k \lambda_k\|g_k\|` the scale of the rows its min-norm
point combines (and never less than K·eps of Q's dtype: below that a float32
Gram's value is its rounding), is treated as stationary and solved with the
ridge :math:`(Q/s + \varepsilon I)\alpha' = 1/\alpha'`, :math:`\alpha=\alpha'/\sqrt{s}`,
s = max diagonal, ε = ``ridge``; where Q/s is indefinite by more than ε/2 (rounding
of a float32 Gram), ε is raised so that the smallest eigenvalue of the sum is ε.
Then a zero row gets a finite weight (:math:`1/\sqrt{\varepsilon}`, contributing
nothing), and an exactly conflicting
pair :math:`g_2 = -c\,g_1` cancels along :math:`g_1` up to O(√ε).

K = 1: the formula gives :math:`g_1/\|g_1\|`; we return :math:`g_1` instead, as
refmoo requires of every aggregator (nothing is bargained with one player).

Differences from the authors' code (and TorchJD's port): they approximate the
same α with a few convex-concave iterations of cvxpy/ECOS (stopping at
:math:`\|Q\alpha-1/\alpha\| < 10^{-3}`), warm-start from the previous step, can
reuse α for ``update_weights_every`` steps, and clip :math:`\|G^\top\alpha\|` to
``max_norm`` (default 1, which for the exact solution is a division by √K).
Here ``max_norm`` defaults to 0 (no clipping) and nothing is carried between calls.

>>> import torch
>>> G = torch.tensor([[2.0, 0.0], [0.0, 0.5]], dtype=torch.float64)
>>> # orthogonal rows: α_k = 1/‖g_k‖, so A(G) = Σ g_k/‖g_k‖; rounded
>>> [round(x, 12) for x in NashMTL()(G).tolist()]
[1.0, 1.0]
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import Tensor

from ..min_norm import _solve
from ._base import GramAggregator


@dataclass(frozen=True)
class NashSolution:
    """α and its certificate, per bucket."""

    alpha: Tensor
    """Weights ``[B, K]`` (float64) of the raw Gram matrices."""
    decrement: Tensor
    """Squared Newton decrement δ² at α (bounds φ(α) − φ*)."""
    residual: Tensor
    """:math:`\\max_k |\\alpha_k (Q_\\varepsilon\\alpha)_k - 1|` for the system actually solved."""
    stationary: Tensor
    """True where the bucket was Pareto stationary and the ridge was used."""
    iterations: int


_STEPS = 2.0 ** -torch.arange(0, 41, dtype=torch.float64)


def _newton(Q: Tensor, alpha: Tensor, max_iter: int) -> tuple[Tensor, Tensor, int]:
    """Newton's method with backtracking on ½αᵀQα − Σ log α, for a batch of problems."""
    B, K = alpha.shape
    dec_all = torch.full((B,), torch.inf, dtype=Q.dtype)
    live = torch.arange(B)
    iterations = 0
    for iterations in range(1, max_iter + 1):  # noqa: B007 (returned)
        Ql, a = Q[live], alpha[live]
        Qa = (Ql @ a.unsqueeze(-1)).squeeze(-1)
        grad = Qa - 1.0 / a
        H = Ql + torch.diag_embed(a.pow(-2))
        L, info = torch.linalg.cholesky_ex(H)
        step = -torch.cholesky_solve(grad.unsqueeze(-1), L).squeeze(-1)
        bad = info != 0
        if bool(bad.any()):  # rounding can spoil Cholesky of a near-singular H
            step[bad] = -torch.linalg.lstsq(H[bad], grad[bad].unsqueeze(-1)).solution.squeeze(-1)
        dec = (-(grad * step).sum(-1)).clamp_min(0.0)
        # Stop at the target, or once rounding stops the quadratic convergence.
        done = (dec <= 1e-26) | ((dec < 1e-6) & (dec > 0.25 * dec_all[live]))
        dec_all[live] = dec
        # Largest t = 2^-j keeping α > 0 with Armijo decrease; φ(α + tΔ) is a
        # quadratic in t plus the log terms, so all candidates cost one pass.
        t = _STEPS.view(1, -1)
        x = a.unsqueeze(1) + t.unsqueeze(-1) * step.unsqueeze(1)  # [n, J, K]
        Qs = (Ql @ step.unsqueeze(-1)).squeeze(-1)
        quad = t * (a * Qs).sum(-1, keepdim=True) + 0.5 * t**2 * (step * Qs).sum(-1, keepdim=True)
        logs = torch.where(x > 0, x, 1.0).log().sum(-1) - a.log().sum(-1, keepdim=True)
        ok = (x > 0).all(-1) & (quad - logs <= -0.25 * t * dec.unsqueeze(-1))
        ok |= (dec < 1e-2).unsqueeze(-1) & (t == 1.0)  # quadratic region: take the full step
        first = torch.where(ok, torch.arange(ok.shape[1]), ok.shape[1]).amin(-1)
        tsel = torch.where(first < ok.shape[1], _STEPS[first.clamp(max=ok.shape[1] - 1)], 0.0)
        alpha[live] = torch.where(done.unsqueeze(-1), a, a + tsel.unsqueeze(-1) * step)
        live = live[~done]
        if live.numel() == 0:
            break
    return alpha, dec_all, iterations


class NashMTL(GramAggregator):
    """Exact Nash bargaining weights; see the module docstring.

    :param max_norm: clip :math:`\\|G^\\top\\alpha\\|` to this value (0 disables, the default).
    :param ridge: ε used for Pareto-stationary buckets, relative to the largest diagonal.
    :param stationary_tol: min-norm value, relative to the squared scale of the rows its
        optimum combines, below which a bucket counts as Pareto stationary (raised to
        K·eps of the Gram's dtype).
    """

    weight_degree = -1  # Qα = 1/α gives α(cG) = α(G)/c

    def __init__(self, max_norm: float = 0.0, ridge: float = 1e-10,
                 stationary_tol: float = 1e-12) -> None:
        if max_norm < 0 or ridge <= 0 or stationary_tol < 0:
            raise ValueError("max_norm and stationary_tol must be >= 0 and ridge > 0")
        self.max_norm = float(max_norm)
        self.ridge = float(ridge)
        self.stationary_tol = float(stationary_tol)
    def solve(self, Q: Tensor, max_iter: int = 200) -> NashSolution:
        """Solve the bargaining system for Gram matrices ``[B, K, K]`` (see module docstring)."""
        K = Q.shape[-1]
        Q64 = Q.to(torch.float64)
        Q64 = 0.5 * (Q64 + Q64.transpose(-1, -2))
        scale = torch.diagonal(Q64, dim1=-2, dim2=-1).amax(-1)
        scale = torch.where(scale > 0, scale, torch.ones_like(scale))
        Qn = Q64 / scale[:, None, None]
        # Below K·eps of Q's own dtype (relative to the largest diagonal) a min-norm value
        # is the rounding of a float32 Gram, not a distance from stationarity.
        tol = max(self.stationary_tol, K * torch.finfo(Q.dtype).eps)
        # Judged at the scale of the rows the min-norm point combines, s = Σ λ_k ‖g_k‖:
        # relative to the largest row, rows 1e-7 below it would pass for stationary and
        # get the ridge's answer, which conflicts with them.
        sol = _solve(Qn)
        s = (sol.weights * torch.diagonal(Qn, dim1=-2, dim2=-1).clamp_min(0).sqrt()).sum(-1)
        stationary = sol.value <= tol * s * s
        ridge = self.ridge * stationary.to(Qn.dtype)
        if bool(stationary.any()):
            # A stationary bucket's Gram can be indefinite by its rounding (float32 Grams:
            # about 1e-7 of the diagonal, far above the ridge); φ is then unbounded below
            # and Newton's iterates diverge. Shift such a matrix so that its smallest
            # eigenvalue is the ridge itself.
            low = torch.linalg.eigvalsh(Qn[stationary])[:, 0]
            ridge[stationary] = torch.where(low < -0.5 * self.ridge, self.ridge - low,
                                            ridge[stationary])
        Qr = Qn + ridge[:, None, None] * torch.eye(K)
        # Along the ray t·a, φ is minimised at t = sqrt(K / aᵀQa): start at the right scale.
        a = torch.diagonal(Qr, dim1=-2, dim2=-1).clamp_min(self.ridge).rsqrt()
        quad = (a * (Qr @ a.unsqueeze(-1)).squeeze(-1)).sum(-1)
        alpha = a * (K / quad).sqrt().unsqueeze(-1)
        alpha, dec, iterations = _newton(Qr, alpha, max_iter)
        residual = (alpha * (Qr @ alpha.unsqueeze(-1)).squeeze(-1) - 1.0).abs().amax(-1)
        return NashSolution(alpha=alpha / scale.sqrt().unsqueeze(-1), decrement=dec,
                            residual=residual, stationary=stationary, iterations=iterations)

    def _weights_from_gram(self, Q: Tensor, keys: Tensor) -> Tensor:
        K = Q.shape[-1]
        if K == 1:
            return torch.ones(Q.shape[0], 1, dtype=Q.dtype)
        alpha = self.solve(Q).alpha
        if self.max_norm > 0:
            Q64 = Q.to(torch.float64)
            norm = (alpha * (Q64 @ alpha.unsqueeze(-1)).squeeze(-1)).sum(-1).clamp_min(0).sqrt()
            alpha = alpha * (self.max_norm / norm).clamp(max=1.0).unsqueeze(-1)
        return alpha.to(Q.dtype)

    def __repr__(self) -> str:
        return (f"NashMTL(max_norm={self.max_norm}, ridge={self.ridge}, "
                f"stationary_tol={self.stationary_tol})")
