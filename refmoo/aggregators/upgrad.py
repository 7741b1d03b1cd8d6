r"""UPGrad: average of the gradients, each projected onto the dual cone of all of them.

Paper: P. Quinton, V. Rey, "Jacobian Descent for Multi-Objective Optimization",
2024, https://arxiv.org/abs/2406.16232 (Section 3, with the default uniform
preference vector).

Formula: with :math:`C^* = \{x : Gx \ge 0\}` and :math:`\pi_{C^*}` the Euclidean
projection onto it,

.. math:: A(G) = \frac1K \sum_{i=1}^K \pi_{C^*}(g_i), \qquad
          \pi_{C^*}(g_i) = G^\top v_i,\quad v_i \in \arg\min_{v \ge e_i} v^\top GG^\top v

(the paper's Proposition 1), so the weights are :math:`w = \frac1K\sum_i v_i`.
Every :math:`v_i` is computed exactly, for all rows and all buckets at once, by
the batched active-set NNLS of :mod:`._dual_cone` (KKT to rounding; the tests
referee it with cvxpy/CLARABEL). Because each projection lies in :math:`C^*`, so
does their mean: :math:`\langle g_k, A(G)\rangle \ge 0` for every k
(non-conflicting), up to the solver's certified residual.

The QP is solved on Q divided by the power of two nearest its largest diagonal
entry, which leaves v unchanged (bit for bit under G → 2^k G), and it stops on a
per-row test, so a row 1e-8 times smaller than the others is not left in
conflict. TorchJD's default
projector instead adds 1e-4·I to the trace-normalised Gram (quadprog needs a
positive-definite matrix), which biases its weights by about that much.

>>> import torch
>>> G = torch.tensor([[1.0, 0.0], [-1.0, 1.0]], dtype=torch.float64)
>>> [round(x, 12) for x in UPGrad()(G).tolist()]  # π(g1) = (1/2, 1/2) and π(g2) = (0, 1)
[0.25, 0.75]
"""

from __future__ import annotations

import torch
from torch import Tensor

from ._base import GramAggregator
from ._dual_cone import project_dual_cone


class UPGrad(GramAggregator):
    """UPGrad with uniform preferences and an exact dual-cone projection."""

    def projections(self, Q: Tensor) -> tuple[Tensor, Tensor]:
        """``(V, residual)`` for Gram matrices ``[B, K, K]``: ``V[b, i]`` is v_i (float64) and
        ``residual[b, i]`` its per-row KKT residual (see :func:`._dual_cone.project_dual_cone`)."""
        B, K = Q.shape[0], Q.shape[-1]
        return project_dual_cone(Q, torch.eye(K, dtype=torch.float64).expand(B, K, K))

    def _weights_from_gram(self, Q: Tensor, keys: Tensor) -> Tensor:
        V, _ = self.projections(Q)
        return V.mean(1).to(Q.dtype)
