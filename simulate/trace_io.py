"""The simulator's side of traces: every owner writes what it reduced and aggregated.

``bucket`` and ``full-gram`` ranks each write their own columns; the
replicated strategies (``bucket-replicated``, ``full-naive``) hold everything
on every rank, so rank 0 writes it once. The trace's partition is the one the
aggregation used: the run's buckets, or one bucket for the full-vector
strategies. ``standard`` never forms per-language reduced gradients, so it
cannot be traced.
"""

from __future__ import annotations

from refmoo import Partition
from refmoo.trace import TraceWriter

from .config import RunConfig
from .engine import Engine
from .strategies import TraceRecord


class SimulatorTrace:
    def __init__(self, writer: TraceWriter) -> None:
        self.writer = writer

    def record(self, step: int, rec: TraceRecord | None) -> None:
        if rec is not None:
            self.writer.write(step, rec.columns, rec.grads, rec.output)


def open_trace(cfg: RunConfig, engine: Engine, partition: Partition, rank: int
               ) -> SimulatorTrace:
    strategy = engine.strategy
    if strategy.single_backward:
        raise ValueError(f"the {cfg.strategy!r} strategy reduces only the mean gradient; "
                         "there are no per-language reduced gradients to trace")
    traced = Partition.single(partition.dim) if strategy.full_vector else partition
    flat = engine.flat
    writer = TraceWriter(
        cfg.trace_dir, partition=traced, aggregator=cfg.aggregator,
        aggregator_kwargs=cfg.aggregator_kwargs, languages=cfg.workload.num_languages,
        rank=rank, world_size=engine.comm.world_size, dtype=flat.dtype,
        parameters=[(s.name, s.offset, s.numel, s.shape) for s in flat.spans],
        meta={"producer": "simulate", "strategy": cfg.strategy, "partition": cfg.partition,
              "steps": cfg.steps})
    return SimulatorTrace(writer)
