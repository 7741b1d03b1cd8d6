"""``full-naive``: full-vector MOO inside a ZeRO-2 engine, by rebuilding the vectors.

After the same reduce-scatters as ``bucket``, the K reduced gradients are
all-gathered to every rank (what "reconstructing full gradient vectors"
costs), each rank runs full-vector MOO, keeps its shard of the direction and
updates it; parameters are all-gathered as in ``bucket``.
"""

from __future__ import annotations

import torch
from torch import Tensor

from refmoo import Partition, bucketwise

from ._base import ReduceScatterGrads, ShardedUpdate, Strategy, StrategyContext, TraceRecord


class FullNaive(Strategy):
    name = "full-naive"
    full_vector = True

    def __init__(self, ctx: StrategyContext) -> None:
        super().__init__(ctx)
        lay, dev, dt = ctx.layout, ctx.flat.device, ctx.flat.dtype
        self._reduce = ReduceScatterGrads(ctx)
        self._update = ShardedUpdate(ctx)
        self._gathered = ctx.memory.hold("gathered_grads", torch.empty(
            ctx.num_languages, lay.world_size * lay.chunk, dtype=dt, device=dev))
        self._G = ctx.memory.hold("full_grads", torch.empty(
            ctx.num_languages, ctx.flat.dim, dtype=dt, device=dev))
        self._single = Partition.single(ctx.flat.dim)

    def reduce_language(self, k: int, ext: Tensor) -> None:
        self._reduce(k, ext)

    def aggregate(self) -> Tensor:
        for k in range(self.ctx.num_languages):
            self.ctx.comm.all_gather(self._gathered[k], self._reduce.shards[k], "grad")
        self.ctx.layout.from_owner_major(self._gathered, self._G)
        full = self.ctx.memory.hold("direction",
                                    bucketwise(self.ctx.aggregator, self._G, self._single))
        if self.ctx.rank == 0:
            self.last_trace = TraceRecord(torch.arange(self.ctx.flat.dim), self._G, full)
        return full[self._update.index]

    def update(self, direction: Tensor) -> None:
        self._update(direction)
