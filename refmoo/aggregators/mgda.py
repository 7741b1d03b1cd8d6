r"""MGDA: the minimum-norm element of the convex hull of the gradients.

Paper: J.-A. Désidéri, "Multiple-gradient descent algorithm (MGDA) for
multiobjective optimization", Comptes Rendus Mathématique 350 (2012),
https://doi.org/10.1016/j.crma.2012.03.014; used for multi-task learning by
Sener & Koltun, NeurIPS 2018, https://arxiv.org/abs/1810.04650.

Formula: :math:`A(G) = G^\top\lambda^\star`,
:math:`\lambda^\star \in \arg\min_{\lambda\in\Delta_K} \lambda^\top GG^\top\lambda`,
solved exactly by :func:`refmoo.min_norm.solve_min_norm` (Wolfe's method), not by
a Frank-Wolfe loop with a loose stop. Then :math:`\langle g_k, A(G)\rangle \ge
\|A(G)\|^2` for every k (the KKT conditions), so A(G) never conflicts with a row.

>>> import torch
>>> G = torch.tensor([[1.0, 0.0], [0.0, 1.0]], dtype=torch.float64)
>>> [round(x, 12) for x in MGDA()(G).tolist()]
[0.5, 0.5]
"""

from __future__ import annotations

from torch import Tensor

from ..min_norm import _solve_weights
from ._base import GramAggregator


class MGDA(GramAggregator):
    """Exact min-norm MGDA; see the module docstring."""

    def _weights_from_gram(self, Q: Tensor, keys: Tensor) -> Tensor:
        return _solve_weights(Q)  # Q was checked by weights_from_gram
