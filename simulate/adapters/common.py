"""What every adapter does once it holds the K reduced gradients of some columns.

:func:`aggregate` is :func:`refmoo.bucketwise` that also returns the weights:
for a Gram-based aggregator (:math:`A(G^b) = w_b(G^bG^{b\\top})^\\top G^b`) it runs
exactly bucketwise's operations (bucket Grams, finiteness check, weights,
combine), so the direction is bitwise bucketwise's, and hands back the
``[M, K]`` weights a trainer logs. Element-wise aggregators (GradDrop) have no
weights.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import Tensor

from refmoo import Aggregator, GramAggregator, Partition, bucket_grams, bucketwise, combine
from refmoo.bucketwise import check_grams_finite


def aggregate(aggregator: Aggregator, G: Tensor, partition: Partition,
              keys: Sequence[int] | Tensor | None = None) -> tuple[Tensor, Tensor | None]:
    """``(A_P(G), weights [M, K] or None)``; the direction equals ``bucketwise``'s bitwise.

    >>> from refmoo import MGDA
    >>> G = torch.tensor([[1.0, 0.0], [0.0, 1.0]], dtype=torch.float64)
    >>> d, w = aggregate(MGDA(), G, Partition.single(2))
    >>> d.tolist(), w.tolist()
    ([0.5, 0.5], [[0.5, 0.5]])
    """
    if not isinstance(aggregator, GramAggregator):
        return bucketwise(aggregator, G, partition, keys=keys), None
    keys = torch.arange(len(partition)) if keys is None else \
        torch.as_tensor(keys, dtype=torch.long).reshape(-1)
    if keys.numel() != len(partition):
        raise ValueError(f"{keys.numel()} keys given for {len(partition)} buckets")
    Q = bucket_grams(G, partition)
    check_grams_finite(Q, G, partition)
    weights = aggregator.weights_from_gram(Q, keys=keys)
    return combine(G, weights, partition), weights
