"""``bucket-replicated``: bucket-level MOO the DDP way. Each language's gradient is
all-reduced, every rank aggregates every bucket redundantly and updates the
whole (replicated) parameter vector."""

from __future__ import annotations

import torch
from torch import Tensor

from refmoo import bucketwise

from ._base import ReplicatedUpdate, Strategy, StrategyContext, TraceRecord


class BucketReplicated(Strategy):
    name = "bucket-replicated"

    def __init__(self, ctx: StrategyContext) -> None:
        super().__init__(ctx)
        D = ctx.flat.dim
        self._G = ctx.memory.hold("reduced_grads", torch.empty(
            ctx.num_languages, D, dtype=ctx.flat.dtype, device=ctx.flat.device))
        self._update = ReplicatedUpdate(ctx)

    def reduce_language(self, k: int, ext: Tensor) -> None:
        self._G[k].copy_(ext[:self.ctx.flat.dim])
        self.ctx.comm.all_reduce(self._G[k], "grad")

    def aggregate(self) -> Tensor:
        out = self.ctx.memory.hold(
            "direction", bucketwise(self.ctx.aggregator, self._G, self.ctx.layout.partition))
        if self.ctx.rank == 0:  # every rank holds the same; one copy is enough
            self.last_trace = TraceRecord(torch.arange(self.ctx.flat.dim), self._G, out)
        return out

    def update(self, direction: Tensor) -> None:
        self._update(direction)
