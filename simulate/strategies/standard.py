"""``standard``: ordinary fine-tuning. One backward of the language-mean loss, one
all-reduce of the gradient (DDP), a replicated update. Its reference is
:class:`refmoo.Mean`, whatever aggregator the run names."""

from __future__ import annotations

from torch import Tensor

from ._base import ReplicatedUpdate, Strategy, StrategyContext


class Standard(Strategy):
    name = "standard"
    single_backward = True

    def __init__(self, ctx: StrategyContext) -> None:
        super().__init__(ctx)
        self._update = ReplicatedUpdate(ctx)
        self._grad: Tensor | None = None

    def reduce_language(self, k: int, ext: Tensor) -> None:
        self._grad = self.ctx.comm.all_reduce(ext[:self.ctx.flat.dim], "grad")

    def aggregate(self) -> Tensor:
        return self._grad

    def update(self, direction: Tensor) -> None:
        self._update(direction)
