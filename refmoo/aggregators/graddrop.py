r"""GradDrop: keep, element by element, only the gradients of one randomly chosen sign.

Paper: Z. Chen, J. Ngiam, Y. Huang, T. Luong, H. Kretzschmar, Y. Chai,
D. Anguelov, "Just Pick a Sign: Optimizing Deep Multitask Models with Gradient
Sign Dropout", NeurIPS 2020, https://arxiv.org/abs/2010.06808 (Algorithm 1,
lines 10-15, applied to the rows of G as in TorchJD).

Formula: for every coordinate j, the positive sign purity is
:math:`P_j = \tfrac12\bigl(1 + \sum_k G_{kj} / \sum_k |G_{kj}|\bigr)` (1/2 where
the column is zero). Draw :math:`U_j \sim \mathcal U(0, 1)` and keep
:math:`M_{kj} = [P_j > U_j][G_{kj} > 0] + [P_j < U_j][G_{kj} < 0]`; then

.. math:: A(G)_j = \sum_k \bigl(\ell_k + (1 - \ell_k) M_{kj}\bigr) G_{kj},

with leak :math:`\ell_k \in [0, 1]` (default 0; ``leak=1`` gives the sum). The
sign-selection function f of the paper is the identity here (TorchJD's default).

Element-wise, not Gram-based. Randomness: :math:`U_j` is the counter-based
uniform of (seed, key, j) from :mod:`._counter_rng`, with j the position inside
the bucket and key the bucket, so ``bucketwise(agg, G, P)`` is exactly the
concatenation of ``agg(G[:, P[b]], key=b)``, computed in one vectorised pass.
U lies in the open interval (0, 1), so a single row is always kept: K = 1
returns :math:`g_1`. A(cG) = c·A(G) for c > 0 (P and the signs do not change).

>>> import torch
>>> G = torch.tensor([[1.0, 2.0, -1.0], [3.0, -2.0, -1.0]], dtype=torch.float64)
>>> out = GradDrop(seed=0)(G)  # columns 0 and 2 agree in sign and survive whole
>>> out[0].item(), out[2].item(), out[1].item() in (2.0, -2.0)
(4.0, -2.0, True)
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import Tensor

from ._base import Aggregator
from ._counter_rng import GRADDROP_STREAM, uniform


class GradDrop(Aggregator):
    """GradDrop with counter-based uniforms; see the module docstring.

    :param seed: seed of the counter-based generator.
    :param leak: one leak for all rows, or one per row (length K), each in [0, 1].
    """

    def __init__(self, seed: int = 0, leak: float | Sequence[float] = 0.0) -> None:
        self.seed = int(seed)
        self.leak = torch.as_tensor(leak, dtype=torch.float64)
        if self.leak.dim() > 1 or bool(((self.leak < 0) | (self.leak > 1)).any()):
            raise ValueError(f"leak must be a number or a 1-D sequence in [0, 1], got {leak!r}")

    def uniforms(self, keys: Tensor, positions: Tensor) -> Tensor:
        """The U of each coordinate, from its bucket ``keys`` and in-bucket ``positions``."""
        return uniform(self.seed, GRADDROP_STREAM, keys, positions)

    def _combine(self, G: Tensor, U: Tensor) -> Tensor:
        K = G.shape[0]
        leak = self.leak
        if leak.dim() == 1 and leak.numel() != K:
            raise ValueError(f"GradDrop has {leak.numel()} leak values but G has {K} rows")
        leak = leak.to(G.dtype).reshape(-1, 1) if leak.dim() == 1 else leak.to(G.dtype)
        total, mass = G.sum(0), G.abs().sum(0)
        purity = 0.5 * (1.0 + total / torch.where(mass > 0, mass, 1.0))
        purity = purity.to(torch.float64)
        keep_positive, keep_negative = purity > U, purity < U
        mask = (keep_positive & (G > 0)) | (keep_negative & (G < 0))
        return ((leak + (1.0 - leak) * mask.to(G.dtype)) * G).sum(0)

    def _aggregate(self, G: Tensor, *, key: int) -> Tensor:
        positions = torch.arange(G.shape[1], dtype=torch.int64)
        return self._combine(G, self.uniforms(torch.tensor(key, dtype=torch.int64), positions))

    def aggregate_partitioned(self, G: Tensor, partition, keys: Tensor) -> Tensor:
        """All buckets in one pass: coordinate ``order[start_b + i]`` gets (keys[b], position i)."""
        sizes = torch.tensor(partition.sizes, dtype=torch.int64)
        starts = torch.cumsum(sizes, 0) - sizes
        bucket_in_order = torch.repeat_interleave(torch.arange(len(sizes)), sizes)
        positions = torch.empty(partition.dim, dtype=torch.int64)
        positions[partition.order] = torch.arange(partition.dim) - starts[bucket_in_order]
        return self._combine(G, self.uniforms(keys[partition.bucket_of], positions))

    def __repr__(self) -> str:
        leak = self.leak.item() if self.leak.dim() == 0 else self.leak.tolist()
        return f"GradDrop(seed={self.seed}, leak={leak})"
