"""``bucket``: bucket-level MOO with ZeRO-2-style ownership.

K per-language reduce-scatters deliver each bucket's K reduced gradients to
its owner; the owner aggregates its buckets, updates its parameter shard and
optimizer state; the parameters are all-gathered. No full gradient vector is
ever rebuilt.
"""

from __future__ import annotations

from torch import Tensor

from refmoo import bucketwise

from ._base import ReduceScatterGrads, ShardedUpdate, Strategy, StrategyContext, TraceRecord


class Bucket(Strategy):
    name = "bucket"

    def __init__(self, ctx: StrategyContext) -> None:
        super().__init__(ctx)
        self._reduce = ReduceScatterGrads(ctx)
        self._update = ShardedUpdate(ctx)
        self._local = ctx.layout.local_partition(ctx.rank)

    def reduce_language(self, k: int, ext: Tensor) -> None:
        self._reduce(k, ext)

    def aggregate(self) -> Tensor:
        G = self._reduce.owned
        if self._local is None:  # an idle rank: more ranks than buckets
            return G[0]
        out = bucketwise(self.ctx.aggregator, G, self._local,
                         keys=self.ctx.layout.owned[self.ctx.rank])
        self.ctx.memory.hold("direction", out)
        self.last_trace = TraceRecord(self.ctx.layout.indices[self.ctx.rank], G, out)
        return out

    def update(self, direction: Tensor) -> None:
        self._update(direction)
