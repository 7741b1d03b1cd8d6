r"""Aligned-MTL: make the gradient system orthogonal and equally scaled, then combine.

Paper: D. Senushkin, N. Patakin, A. Kuznetsov, A. Konushin, "Independent
Component Alignment for Multi-Task Learning", CVPR 2023,
https://arxiv.org/abs/2305.19000 (Algorithm 1).

Formula: with the eigendecomposition :math:`GG^\top = V\Lambda V^\top` restricted to
the r eigenvalues above the rank cut-off, and :math:`\lambda_r` the smallest kept,

.. math:: B = \sqrt{\lambda_r}\; V_r \Lambda_r^{-1/2} V_r^\top, \qquad
          A(G) = G^\top B\, w, \quad w = \tfrac1K \mathbf 1.

The rows of :math:`BG` are the aligned gradients: on the row space they are
orthonormal up to the common scale :math:`\sqrt{\lambda_r}` (the condition number
of the system becomes 1). This follows TorchJD's convention: uniform preference
:math:`w = \mathbf 1/K` and scale ``"min"`` (:math:`\lambda_r`, the paper's
choice). The authors' code sums instead (:math:`w = \mathbf 1`, a factor K
larger) and cuts the rank with float32's eps whatever the dtype. If every
eigenvalue is cut (G = 0), B = I.

Numerics: ``eigh`` of :math:`Q/\max_k Q_{kk}` in float64; eigenvalues below
``rank_rtol`` times the largest are dropped, by default
:math:`100\,K\,\varepsilon_{\text{dtype}}` (TorchJD: :math:`K\varepsilon`; see
:mod:`.imtl_g` for why the margin). B is invariant to the scale of G, so
A(cG) = c·A(G). Aligned-MTL is not non-conflicting in general.

>>> import torch
>>> G = torch.tensor([[2.0, 0.0], [0.0, 1.0]], dtype=torch.float64)
>>> # B = diag(1/2, 1): aligned rows (1, 0), (0, 1), averaged; rounded
>>> [round(x, 12) for x in AlignedMTL()(G).tolist()]
[0.5, 0.5]
"""

from __future__ import annotations

import torch
from torch import Tensor

from ._base import GramAggregator
from .imtl_g import spectral_parts


class AlignedMTL(GramAggregator):
    """Aligned-MTL with uniform preferences and the ``"min"`` scale.

    :param rank_rtol: relative eigenvalue cut-off (None: 100·K·eps of the input dtype).
    """

    def __init__(self, rank_rtol: float | None = None) -> None:
        self.rank_rtol = rank_rtol

    def _weights_from_gram(self, Q: Tensor, keys: Tensor) -> Tensor:
        K = Q.shape[-1]
        _, lam, V, keep = spectral_parts(Q, self.rank_rtol)
        safe = torch.where(keep, lam, 1.0)
        smallest = torch.where(keep, lam, torch.inf).amin(-1, keepdim=True)
        factor = torch.where(keep, (smallest / safe).sqrt(), 0.0)  # √λ_r · λ^{-1/2}
        w = torch.full((Q.shape[0], K), 1.0 / K, dtype=torch.float64)
        alpha = (V @ (factor * (V.transpose(-1, -2) @ w.unsqueeze(-1)).squeeze(-1)).unsqueeze(-1)
                 ).squeeze(-1)
        alpha = torch.where(keep.any(-1, keepdim=True), alpha, w)
        return alpha.to(Q.dtype)

    def __repr__(self) -> str:
        return f"AlignedMTL(rank_rtol={self.rank_rtol})"
