r"""``full-gram``: full-vector MOO for Gram-based aggregators at near-bucket cost.

After the same reduce-scatters as ``bucket``, each rank forms the partial Gram
:math:`S_r S_r^\top` of its shard; one all-reduce of their K(K+1)/2 upper-triangle
entries gives
:math:`GG^\top = \sum_r S_r S_r^\top`, every rank computes the same global
weights w and applies them to its own shard, :math:`w^\top S_r`.
"""

from __future__ import annotations

import torch
from torch import Tensor

from refmoo import GramAggregator
from refmoo.gram import from_upper_triangle, upper_triangle

from ._base import ReduceScatterGrads, ShardedUpdate, Strategy, StrategyContext, TraceRecord


class FullGram(Strategy):
    name = "full-gram"
    full_vector = True

    def __init__(self, ctx: StrategyContext) -> None:
        if not isinstance(ctx.aggregator, GramAggregator):
            raise TypeError(f"full-gram needs a Gram-based aggregator; {ctx.aggregator!r} is "
                            "not one (its weights depend on more than GGᵀ)")
        super().__init__(ctx)
        self._reduce = ReduceScatterGrads(ctx)
        self._update = ShardedUpdate(ctx)

    def reduce_language(self, k: int, ext: Tensor) -> None:
        self._reduce(k, ext)

    def aggregate(self) -> Tensor:
        S = self._reduce.owned
        # K(K+1)/2 numbers on the wire; mirroring them makes Q symmetric by construction.
        packed = upper_triangle(S @ S.T)
        self.ctx.comm.all_reduce(packed, "gram")
        Q = from_upper_triangle(packed, S.shape[0])
        # key 0: the reference aggregates the whole vector as bucket 0.
        w = self.ctx.aggregator.weights_from_gram(Q, keys=torch.tensor([0]))
        out = self.ctx.memory.hold("direction", w.to(S.dtype) @ S)
        self.last_trace = TraceRecord(self.ctx.layout.indices[self.ctx.rank], S, out)
        return out

    def update(self, direction: Tensor) -> None:
        self._update(direction)
