"""The weights behind an adapter's update, for a trainer's log.

A Gram-based aggregator updates bucket b by :math:`w_b^\\top G^b` with
:math:`w_b = w(G^bG^{b\\top})`. The adapters call :func:`refmoo.bucketwise` for
the update itself (the one code path the reference also uses);
:func:`bucket_weights` recomputes the ``[M, K]`` weights from the public
``bucket_grams`` and ``weights_from_gram`` when a caller wants to see them,
at the cost of one more Gram pass. Element-wise aggregators (GradDrop) have
no weights.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import Tensor

from refmoo import Aggregator, GramAggregator, Partition, bucket_grams


def bucket_weights(aggregator: Aggregator, G: Tensor, partition: Partition,
                   keys: Sequence[int] | Tensor | None = None) -> Tensor | None:
    """``[M, K]`` weights of a Gram-based aggregator on every bucket, else None.

    >>> from refmoo import MGDA
    >>> G = torch.tensor([[1.0, 0.0], [0.0, 1.0]], dtype=torch.float64)
    >>> bucket_weights(MGDA(), G, Partition.single(2)).tolist()
    [[0.5, 0.5]]
    """
    if not isinstance(aggregator, GramAggregator):
        return None
    keys = torch.arange(len(partition)) if keys is None else \
        torch.as_tensor(keys, dtype=torch.long).reshape(-1)
    return aggregator.weights_from_gram(bucket_grams(G, partition), keys=keys)
