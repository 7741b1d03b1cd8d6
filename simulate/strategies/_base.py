"""What every strategy provides, and the two ways of applying an update.

A step is: for each language, a backward pass into the flat local gradient,
then :meth:`Strategy.reduce_language`; then :meth:`Strategy.aggregate`, which
returns the rank's part of the update direction; then :meth:`Strategy.update`.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Callable
from dataclasses import dataclass

import torch
from torch import Tensor, nn

from refmoo import Aggregator

from ..comm import Comm
from ..flat import FlatModel, GradMemory
from ..layout import ShardLayout

OptimizerFactory = Callable[[list[nn.Parameter]], torch.optim.Optimizer]


@dataclass
class StrategyContext:
    flat: FlatModel
    layout: ShardLayout
    aggregator: Aggregator
    optimizer: OptimizerFactory
    comm: Comm
    memory: GradMemory
    num_languages: int

    @property
    def rank(self) -> int:
        return self.comm.rank

    @property
    def world_size(self) -> int:
        return self.comm.world_size


@dataclass
class TraceRecord:
    """Columns this rank aggregated as owner: reduced gradients and output."""

    columns: Tensor
    grads: Tensor
    output: Tensor


class Strategy(ABC):
    name: str = ""
    single_backward = False
    """True when the strategy backpropagates the mean loss once instead of K times."""
    full_vector = False
    """True when the aggregation partition is the whole vector, not the buckets."""

    def __init__(self, ctx: StrategyContext) -> None:
        self.ctx = ctx
        self.last_trace: TraceRecord | None = None

    @abstractmethod
    def reduce_language(self, k: int, ext: Tensor) -> None:
        """Reduce language k's local gradient (``ext[:D]``; ``ext[D]`` is a zero pad)."""

    @abstractmethod
    def aggregate(self) -> Tensor:
        """This rank's part of the update direction."""

    @abstractmethod
    def update(self, direction: Tensor) -> None:
        """Apply the direction and leave every rank with the same parameters."""


class ReplicatedUpdate:
    """Every rank holds the whole parameter vector and optimizer state (DDP-style)."""

    def __init__(self, ctx: StrategyContext) -> None:
        self.ctx = ctx
        self.param = nn.Parameter(ctx.flat.read_params())
        self.optimizer = ctx.optimizer([self.param])

    def __call__(self, direction: Tensor) -> None:
        self.param.grad = direction
        self.optimizer.step()
        self.param.grad = None
        self.ctx.flat.write_params(self.param.detach())


class ShardedUpdate:
    """ZeRO-style: the owner updates its shard and optimizer state, then parameters are
    all-gathered, so each optimizer state lives on exactly one rank."""

    def __init__(self, ctx: StrategyContext) -> None:
        self.ctx = ctx
        lay, r = ctx.layout, ctx.rank
        self.index = lay.indices[r].to(ctx.flat.device)
        self.param = nn.Parameter(ctx.flat.read_params()[self.index])
        self.optimizer = ctx.optimizer([self.param]) if self.index.numel() else None
        self.send = torch.zeros(lay.chunk, dtype=ctx.flat.dtype, device=ctx.flat.device)
        self.gathered = torch.empty(lay.world_size * lay.chunk, dtype=ctx.flat.dtype,
                                    device=ctx.flat.device)
        self.full = ctx.flat.read_params()

    def __call__(self, direction: Tensor) -> None:
        n = self.index.numel()
        if self.optimizer is not None:
            self.param.grad = direction
            self.optimizer.step()
            self.param.grad = None
            self.send[:n] = self.param.detach()
        self.ctx.comm.all_gather(self.gathered, self.send, "param")
        self.ctx.layout.from_owner_major(self.gathered, self.full)
        self.ctx.flat.write_params(self.full)


class ReduceScatterGrads:
    """The K per-language reduce-scatters shared by the ZeRO-based strategies.

    After language k, row k of :attr:`shards` holds this rank's owned columns
    of the reduced gradient; nobody ever holds another rank's reduced columns.
    """

    def __init__(self, ctx: StrategyContext) -> None:
        lay = ctx.layout
        self.ctx = ctx
        dev, dt = ctx.flat.device, ctx.flat.dtype
        self.send = None if lay.is_identity else ctx.memory.hold(
            "send", torch.empty(lay.world_size * lay.chunk, dtype=dt, device=dev))
        self.shards = ctx.memory.hold(
            "reduced_shards", torch.zeros(ctx.num_languages, lay.chunk, dtype=dt, device=dev))

    def __call__(self, k: int, ext: Tensor) -> None:
        send = self.ctx.layout.to_owner_major(ext, out=self.send)
        self.ctx.comm.reduce_scatter(self.shards[k], send, "grad")

    @property
    def owned(self) -> Tensor:
        """``[K, n_r]``: the reduced gradient on this rank's columns (padding dropped)."""
        n = self.ctx.layout.shard_sizes[self.ctx.rank]
        return self.shards[:, :n]
