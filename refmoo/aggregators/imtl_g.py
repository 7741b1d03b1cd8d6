r"""IMTL-G: the combination whose projections on every unit gradient are equal.

Paper: L. Liu, Y. Li, Z. Kuang, J.-H. Xue, Y. Chen, W. Yang, Q. Liao, W. Zhang,
"Towards Impartial Multi-task Learning", ICLR 2021,
https://openreview.net/forum?id=IMPnRXEWpvr (Section 3.2, gradient balance).
Dependent rows are handled with a pseudo-inverse, as in Quinton & Rey 2024
(https://arxiv.org/abs/2406.16232) and TorchJD, but on the Gram of the unit rows.

Formula: IMTL-G seeks :math:`d = G^\top\alpha` with :math:`\sum_k\alpha_k = 1` and
equal projections :math:`\langle d, u_k\rangle`, :math:`u_k = g_k/\|g_k\|`. Let
:math:`n_k = \|g_k\| = \sqrt{Q_{kk}}`, :math:`N = \mathrm{diag}(n)` and
:math:`C = N^{-1}QN^{-1}` the Gram of the unit rows. The conditions
:math:`\langle U^\top c, u_k\rangle = 1` read :math:`Cc = \mathbf 1`; their
minimum-norm least-squares solution is :math:`c = C^+\mathbf 1`, and with
:math:`v = N^{-1}c` (so that :math:`U^\top c = G^\top v`)

.. math:: \alpha = \frac{N^{-1}C^+\mathbf 1}{\mathbf 1^\top N^{-1}C^+\mathbf 1}, \qquad
          A(G) = G^\top\alpha .

With linearly independent rows :math:`N^{-1}C^{-1}\mathbf 1 = Q^{-1}n`: the paper's
closed form and TorchJD's :math:`Q^+ n`. With dependent rows the two least-squares
generalisations differ: ours minimises :math:`\|Ud - \mathbf 1\|` (every language
weighs the same, true to "impartial"), TorchJD's :math:`\|Gd - n\| = \|N(Ud-\mathbf 1)\|`
(weighted by gradient norms). Zero rows have no direction and get weight 0 (as
with :math:`Q^+`). If :math:`\mathbf 1^\top N^{-1}C^+\mathbf 1 = 0` (e.g.
:math:`g_2 = -g_1`) the weights are 0.

Numerics: working on C makes the result independent of how differently the rows
are scaled (Q's condition number includes the spread of row norms, C's does not).
The pseudo-inverse comes from ``eigh`` of C in float64 and drops eigenvalues below
``rank_rtol`` times the largest, by default :math:`100\,K\,\varepsilon_{\text{dtype}}`
(TorchJD's ``pinv`` uses :math:`K\varepsilon`; the margin keeps duplicate and
conflicting rows, whose zero eigenvalues come out of ``eigh`` as rounding noise,
on the right side of the cut). A(cG) = c·A(G) for c > 0. IMTL-G is not
non-conflicting: when the normaliser is negative (possible for K ≥ 3) every
projection is negative (tested).

>>> import torch
>>> G = torch.tensor([[2.0, 0.0], [0.0, 1.0]], dtype=torch.float64)
>>> # α = (1/3, 2/3): both projections on the unit gradients are 2/3; rounded
>>> [round(x, 12) for x in IMTLG()(G).tolist()]
[0.666666666667, 0.666666666667]
"""

from __future__ import annotations

import torch
from torch import Tensor

from ._base import GramAggregator

_EPS = torch.finfo(torch.float64).eps


def spectral_parts(Q: Tensor, rank_rtol: float | None, rtol_dtype: torch.dtype | None = None
                   ) -> tuple[Tensor, Tensor, Tensor, Tensor]:
    """``(Qn, eigenvalues, eigenvectors, keep)`` of ``Q / max diag`` in float64; ``keep``
    marks eigenvalues above ``rank_rtol`` times the largest (default 100·K·eps of
    ``rtol_dtype``, which defaults to Q's dtype: the precision the Gram was computed in)."""
    K = Q.shape[-1]
    if rank_rtol is None:
        rank_rtol = 100 * K * torch.finfo(rtol_dtype or Q.dtype).eps
    Q64 = Q.to(torch.float64)
    Q64 = 0.5 * (Q64 + Q64.transpose(-1, -2))
    scale = torch.diagonal(Q64, dim1=-2, dim2=-1).amax(-1)
    scale = torch.where(scale > 0, scale, torch.ones_like(scale))
    Qn = Q64 / scale[:, None, None]
    lam, V = torch.linalg.eigh(Qn)
    keep = lam > rank_rtol * lam[:, -1:].clamp_min(0.0)
    keep &= lam > 0
    return Qn, lam, V, keep


class IMTLG(GramAggregator):
    """IMTL-G (gradient part of IMTL); see the module docstring.

    :param rank_rtol: relative eigenvalue cut-off of the pseudo-inverse (None: 100·K·eps).
    """

    def __init__(self, rank_rtol: float | None = None) -> None:
        self.rank_rtol = rank_rtol

    def _weights_from_gram(self, Q: Tensor, keys: Tensor) -> Tensor:
        K = Q.shape[-1]
        Q64 = Q.to(torch.float64)
        norms = torch.diagonal(Q64, dim1=-2, dim2=-1).clamp_min(0.0).sqrt()
        present = norms > 0
        inv_norms = torch.where(present, 1.0 / torch.where(present, norms, 1.0), 0.0)
        C = inv_norms.unsqueeze(-1) * Q64 * inv_norms.unsqueeze(-2)
        _, lam, V, keep = spectral_parts(C, self.rank_rtol, rtol_dtype=Q.dtype)
        inv = torch.where(keep, 1.0 / torch.where(keep, lam, 1.0), 0.0)
        ones = present.to(torch.float64)
        p = (V.transpose(-1, -2) @ ones.unsqueeze(-1)).squeeze(-1)
        # Components of 1 at rounding level carry no information, only noise that 1/λ
        # would amplify (for g2 = -c·g1, 1 is orthogonal to range(C) and c must be 0).
        p = torch.where(p.abs() > 100 * K * _EPS * ones.sum(-1, keepdim=True).sqrt(), p, 0.0)
        c = (V @ (inv * p).unsqueeze(-1)).squeeze(-1)
        v = c * inv_norms
        total = v.sum(-1, keepdim=True)
        # A sum that is zero up to cancellation in it gives no direction.
        degenerate = total.abs() <= 100 * K * _EPS * v.abs().sum(-1, keepdim=True)
        w = torch.where(degenerate, 0.0, v / torch.where(degenerate, 1.0, total))
        return w.to(Q.dtype)

    def __repr__(self) -> str:
        return f"IMTLG(rank_rtol={self.rank_rtol})"
