r"""Mean of the language gradients: standard multilingual fine-tuning.

Formula: :math:`A(G) = \frac{1}{K}\sum_k g_k`, i.e. weights :math:`w = \mathbf{1}/K`.
This is the gradient of the average loss, what DDP computes by default.

>>> import torch
>>> Mean()(torch.tensor([[1.0, 2.0], [3.0, 4.0]])).tolist()
[2.0, 3.0]
"""

from __future__ import annotations

import torch
from torch import Tensor

from ._base import GramAggregator


class Mean(GramAggregator):
    """Uniform weights 1/K."""

    def _weights_from_gram(self, Q: Tensor, keys: Tensor) -> Tensor:
        B, K = Q.shape[0], Q.shape[-1]
        return torch.full((B, K), 1.0 / K, dtype=Q.dtype)

    def _aggregate(self, G: Tensor, *, key: int) -> Tensor:
        return G.mean(dim=0)
