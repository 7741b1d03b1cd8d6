"""One training step of distributed MOO, whatever the strategy.

The engine is model-agnostic: it takes the trainable parameters and, per
step, one loss closure per language (``None`` when the rank holds no data of
that language: it still joins every collective, with a zero gradient).
Each closure must return this rank's contribution to the language's loss,
scaled so that the sum over ranks is the global loss (for example the sum of
the rank's token losses divided by the language's global token count). The
reduced gradient is then the global one however unevenly the data is sharded.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass

import torch
from torch import Tensor, nn

from refmoo import Aggregator, Partition

from .comm import CollectiveStats, Comm
from .flat import FlatModel, GradMemory
from .layout import ShardLayout
from .strategies import STRATEGIES, StrategyContext, TraceRecord
from .strategies._base import OptimizerFactory

LossClosure = Callable[[], Tensor] | None


@dataclass
class StepReport:
    phases: dict[str, float]
    comm: dict[str, CollectiveStats]
    grad_peak_bytes: int
    trace: TraceRecord | None


class Engine:
    """Distributed MOO over ``comm`` with one of :data:`simulate.strategies.STRATEGIES`."""

    def __init__(self, model: nn.Module | FlatModel, partition: Partition, strategy: str,
                 aggregator: Aggregator, optimizer: OptimizerFactory, comm: Comm,
                 num_languages: int, *, owners: Sequence[int] | None = None) -> None:
        if strategy not in STRATEGIES:
            raise ValueError(f"unknown strategy {strategy!r}; choose from {sorted(STRATEGIES)}")
        self.flat = model if isinstance(model, FlatModel) else FlatModel(model)
        if partition.dim != self.flat.dim:
            raise ValueError(f"the partition covers {partition.dim} columns but the model has "
                             f"{self.flat.dim} trainable parameters")
        self.comm = comm
        self.timer = comm.timer
        self.memory = GradMemory()
        comm.memory = self.memory
        self.num_languages = num_languages
        self.layout = ShardLayout(partition, comm.world_size, owners)
        self.ext = self.flat.bind_grads(self.memory)
        ctx = StrategyContext(self.flat, self.layout, aggregator, optimizer, comm, self.memory,
                              num_languages)
        self.strategy = STRATEGIES[strategy](ctx)
        self.locals: Tensor | None = None
        """``[K, D]``: this rank's local gradients of the last step, kept when
        :meth:`keep_locals` was called (for traces; not counted as gradient memory)."""

    def keep_locals(self) -> None:
        """Keep each language's local gradient, before its reduction, in :attr:`locals`."""
        self.locals = torch.zeros(self.num_languages, self.flat.dim, dtype=self.flat.dtype,
                                  device=self.flat.device)

    def step(self, losses: Sequence[LossClosure]) -> StepReport:
        if len(losses) != self.num_languages:
            raise ValueError(f"{len(losses)} loss closures for {self.num_languages} languages")
        before = self.comm.snapshot()
        self.timer.reset()
        s = self.strategy
        if s.single_backward:
            with self.timer.phase("backward"):
                self.flat.zero_grad()
                present = [f() for f in losses if f is not None]
                if present:
                    (torch.stack(present).sum() / self.num_languages).backward()
                self.flat.sync_grads()
            s.reduce_language(0, self.ext)
        else:
            for k, f in enumerate(losses):
                with self.timer.phase("backward"):
                    self.flat.zero_grad()
                    if f is not None:
                        f().backward()
                    self.flat.sync_grads()
                if self.locals is not None:
                    self.locals[k].copy_(self.flat.grad)
                s.reduce_language(k, self.ext)
        with self.timer.phase("aggregation"):
            direction = s.aggregate()
        with self.timer.phase("update"):
            s.update(direction)
        return StepReport(self.timer.reset(), _delta(before, self.comm.snapshot()),
                          self.memory.peak_bytes, s.last_trace)


def _delta(before: dict[str, CollectiveStats], after: dict[str, CollectiveStats]
           ) -> dict[str, CollectiveStats]:
    out = {}
    for k, a in after.items():
        b = before.get(k, CollectiveStats())
        out[k] = CollectiveStats(a.calls - b.calls, a.elements - b.elements,
                                 a.bytes - b.bytes, a.wire_bytes - b.wire_bytes)
    return out
