"""Writing traces: the simulator's ranks, and a recorder any engine adapter can feed.

Simulator: ``bucket`` and ``full-gram`` ranks each write their own columns'
reduced gradients and output; the replicated strategies (``bucket-replicated``,
``full-naive``) hold everything on every rank, so rank 0 writes it once. Every
rank also writes its local per-language gradients on all D columns (what it
fed into the reductions), so that ``refmoo verify`` checks the reduction too;
that is W times the bytes of the reduced gradients. The trace's partition is
the one the aggregation used: the run's buckets, or one bucket for the
full-vector strategies. ``standard`` never forms per-language reduced
gradients, so it cannot be traced.

Adapters: :class:`StepRecorder` takes the pieces of a step in whatever order
and granularity an engine produces them (a DDP comm hook sees one bucket of
one language at a time) and writes one file per step.
"""

from __future__ import annotations

from pathlib import Path

import torch
from torch import Tensor

from refmoo import Partition
from refmoo.trace import TraceError, TraceWriter

from .config import RunConfig
from .engine import Engine
from .strategies import TraceRecord


class StepRecorder:
    """One rank's trace of a step, assembled from pieces; see the module docstring.

    ``record(step, columns=c, language=k, local=l, reduced=g)`` stores language
    k's local (before the reduction) and/or reduced gradient on the flat
    columns ``c``; ``record(step, columns=c, output=o)`` the aggregated
    direction. :meth:`flush` (or the first record of a later step) writes the
    file: the reduced gradients on the columns that have an output, which must
    then have all K languages, and the locals on the columns where all K are
    present.

    Memory: while a step is being recorded, (2K + 1)·D numbers of the trace's
    dtype (and as many flags); nothing between steps.
    """

    def __init__(self, writer: TraceWriter) -> None:
        self.writer = writer
        self.step: int | None = None
        self._bufs: dict[str, Tensor] = {}
        self._have: dict[str, Tensor] = {}

    def _start(self, step: int) -> None:
        K, D = self.writer.K, self.writer.partition.dim
        self.step = step
        self._bufs = {name: torch.zeros(K if name != "output" else 1, D,
                                        dtype=self.writer.dtype)
                      for name in ("local", "reduced", "output")}
        self._have = {name: torch.zeros(b.shape, dtype=torch.bool)
                      for name, b in self._bufs.items()}

    def record(self, step: int, *, columns: Tensor, language: int | None = None,
               local: Tensor | None = None, reduced: Tensor | None = None,
               output: Tensor | None = None) -> None:
        if self.step is not None and step != self.step:
            self.flush()
        if self.step is None:
            self._start(step)
        cols = torch.as_tensor(columns, dtype=torch.long).reshape(-1).cpu()
        for name, value in (("local", local), ("reduced", reduced), ("output", output)):
            if value is None:
                continue
            row = 0 if name == "output" else language
            if row is None:
                raise TraceError(f"{name} gradients need their language")
            self._bufs[name][row, cols] = value.detach().reshape(-1).cpu().to(self.writer.dtype)
            self._have[name][row, cols] = True

    def flush(self) -> Path | None:
        """Write the current step's file (None when nothing was recorded)."""
        if self.step is None:
            return None
        out_cols = self._have["output"][0].nonzero().reshape(-1)
        missing = ~self._have["reduced"][:, out_cols]
        if bool(missing.any()):
            k = int(missing.any(1).nonzero()[0])
            raise TraceError(f"step {self.step}: language {k}'s reduced gradient is missing on "
                             f"{int(missing[k].sum())} columns that have an output")
        local_cols = self._have["local"].all(0).nonzero().reshape(-1)
        kw = {}
        if local_cols.numel():
            kw = {"local_columns": local_cols, "local_grads": self._bufs["local"][:, local_cols]}
        path = self.writer.write(self.step, out_cols, self._bufs["reduced"][:, out_cols],
                                 self._bufs["output"][0, out_cols], **kw)
        self._bufs, self._have, self.step = {}, {}, None
        return path


class SimulatorTrace:
    def __init__(self, writer: TraceWriter) -> None:
        self.writer = writer

    def record(self, step: int, rec: TraceRecord | None, local: Tensor | None) -> None:
        if rec is None:  # owns nothing (or not rank 0 of a replicated strategy)
            none = torch.empty(0, dtype=torch.long)
            rec = TraceRecord(none, torch.empty(self.writer.K, 0, dtype=self.writer.dtype),
                              torch.empty(0, dtype=self.writer.dtype))
        kw = {}
        if local is not None:
            kw = {"local_columns": torch.arange(local.shape[1]), "local_grads": local}
        self.writer.write(step, rec.columns, rec.grads, rec.output, **kw)


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
