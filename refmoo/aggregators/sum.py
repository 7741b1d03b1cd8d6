r"""Sum of the language gradients: fine-tuning on the summed loss.

Formula: :math:`A(G) = \sum_k g_k`, i.e. weights :math:`w = \mathbf{1}`.

>>> import torch
>>> Sum()(torch.tensor([[1.0, 2.0], [3.0, 4.0]])).tolist()
[4.0, 6.0]
"""

from __future__ import annotations

import torch
from torch import Tensor

from ._base import GramAggregator


class Sum(GramAggregator):
    """Unit weights."""

    def _weights_from_gram(self, Q: Tensor, keys: Tensor) -> Tensor:
        B, K = Q.shape[0], Q.shape[-1]
        return torch.ones((B, K), dtype=Q.dtype)

    def _aggregate(self, G: Tensor, *, key: int) -> Tensor:
        return G.sum(dim=0)
