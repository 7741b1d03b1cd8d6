"""Bucket-level MOO as a DDP communication hook.

A step runs K backward passes, one per language, inside
``with moo.language(k):``. On every pass the hook all-reduces each DDP bucket
and keeps the reduced values of language k; it returns zeros on passes
0..K−2, so that DDP writes zeros into ``.grad`` and the next pass accumulates
its local gradient onto nothing. On the last pass it returns, for each DDP
bucket, the aggregation of the K reduced gradients of every partition bucket
inside it; DDP writes that into ``.grad`` and the optimizer steps as usual.

What this relies on (measured on torch 2.13, gloo):

- with a custom hook DDP does not divide by the world size: the hook gets the
  local bucket and its result is used as is. The losses should be each rank's
  share of the global loss (then the sum is right); ``average=True`` divides
  by W for per-rank mean losses;
- the hook issues its all-reduce in its own body; the ``Future.then``
  callback only computes (a collective there can deadlock);
- DDP rebuilds its buckets after the first backward (step 0, pass 0 uses one
  bucket per dtype), so reduced values are stored per flat column, not per
  bucket index, and only the last pass's buckets decide the aggregation;
- a rank with no data for a language must still run that pass (a forward and
  a zero loss), or the other ranks' reductions never complete.

The partition must refine DDP's buckets: each partition bucket lies inside one
DDP bucket (``refmoo.ddp_buckets`` with the real gradient-ready order gives
exactly DDP's buckets; ``per_tensor`` refines any of them).

Tracing (``trace=AdapterTrace(...)``, :mod:`simulate.adapters.tracing`): every
rank records, per language, the bucket buffer as the hook receives it, before
it issues the all-reduce (its local gradient, divided by W under
``average=True``, so that the reduced values are the sum of what is recorded);
rank 0 records the reduced values the aggregation used (every rank holds the
same ones) and, after the last pass, the ``.grad`` that DDP wrote, i.e. what
the optimizer steps with. Reduced values and locals are stored per flat
column, so DDP's bucket rebuild during step 0 does not matter.
"""

from __future__ import annotations

from contextlib import contextmanager

import torch
from torch import Tensor, nn

from refmoo import Aggregator, Partition, bucketwise
from refmoo.partitions import flat_parameters, trainable_parameters

from ..comm import Comm
from .tracing import AdapterTrace


class DDPBucketMOO:
    """Register on a ``DistributedDataParallel`` model; see the module docstring."""

    def __init__(self, ddp_model: nn.Module, aggregator: Aggregator, partition: Partition,
                 num_languages: int, *, comm: Comm | None = None, average: bool = False,
                 trace: AdapterTrace | None = None) -> None:
        module = ddp_model.module
        spans = flat_parameters(module)
        if partition.dim != spans[-1].stop:
            raise ValueError(f"the partition covers {partition.dim} columns, the model has "
                             f"{spans[-1].stop}")
        named = trainable_parameters(module)
        self.span_of = {id(p): s for (_, p), s in zip(named, spans, strict=True)}
        self.params = [p for _, p in named]
        p0 = next(iter(module.parameters()))
        self.aggregator = aggregator
        self.partition = partition
        self.K = num_languages
        self.comm = comm if comm is not None else Comm()
        self.average = average
        self.G = torch.zeros(num_languages, partition.dim, dtype=p0.dtype, device=p0.device)
        self._k: int | None = None
        self._columns: dict[tuple[int, ...], Tensor] = {}
        self.last_buckets: dict[int, Tensor] = {}
        """DDP bucket index → its flat columns, as seen on the last pass."""
        self.tracer = None if trace is None else trace.open(
            aggregator=aggregator, partition=partition, num_languages=num_languages,
            rank=self.comm.rank, world_size=self.comm.world_size, dtype=p0.dtype,
            parameters=[(s.name, s.offset, s.numel, s.shape) for s in spans],
            producer="simulate.adapters.ddp.DDPBucketMOO")
        ddp_model.register_comm_hook(self, DDPBucketMOO._hook)

    @contextmanager
    def language(self, k: int):
        if not 0 <= k < self.K:
            raise ValueError(f"language {k} outside 0..{self.K - 1}")
        self._k = k
        try:
            yield
        finally:
            self._k = None
        if self.tracer is not None:  # only after a pass that completed
            self._trace_pass(k)

    def backward(self, losses) -> None:
        """One backward pass per language, in order; every entry must run the DDP
        forward (see ``zero_if_empty`` in :func:`simulate.workload.language_losses`)."""
        for k, loss in enumerate(losses):
            with self.language(k):
                loss().backward()

    # -- the hook -----------------------------------------------------------------
    def _bucket_columns(self, bucket) -> Tensor:
        params = bucket.parameters()
        key = tuple(id(p) for p in params)
        cols = self._columns.get(key)
        if cols is None:
            spans = [self.span_of[id(p)] for p in params]
            cols = torch.cat([torch.arange(s.offset, s.stop) for s in spans])
            self._columns[key] = cols
        return cols

    @staticmethod
    def _hook(state, bucket):  # no annotations: DDP rejects string ones (PEP 563)
        k = state._k
        if k is None:
            raise RuntimeError("backward ran outside `with moo.language(k):`: the hook cannot "
                               "tell which language this gradient belongs to")
        buf = bucket.buffer()
        cols = state._bucket_columns(bucket)
        if state.tracer is not None and state.tracer.active:
            # Copied now: the all-reduce below overwrites the buffer in place.
            state.tracer.local(k, cols, buf / state.comm.world_size if state.average else buf)
        fut = state.comm.all_reduce_async(buf, "grad")
        last = k == state.K - 1
        if last:
            state.last_buckets[bucket.index()] = cols

        def done(f: torch.futures.Future) -> Tensor:
            # Local work only: a collective issued here could deadlock.
            reduced = f.value()[0]
            if state.average:
                reduced = reduced / state.comm.world_size
            state.G[k, cols.to(reduced.device)] = reduced
            if not last:
                return torch.zeros_like(reduced)
            return state._aggregate(cols).to(reduced.dtype)

        return fut.then(done)

    def _trace_pass(self, k: int) -> None:
        """Language k's pass is over: DDP has waited for every bucket's future."""
        tracer, D = self.tracer, self.partition.dim
        if self.comm.rank == 0:
            tracer.reduced(k, torch.arange(D), self.G[k])
            if k == self.K - 1:
                tracer.output(torch.arange(D), torch.cat([
                    # A parameter without .grad is left alone by the optimizer.
                    (p.grad if p.grad is not None else torch.zeros_like(p)).reshape(-1)
                    for p in self.params]))
        if k == self.K - 1:
            tracer.end_step()

    def _aggregate(self, cols: Tensor) -> Tensor:
        P = self.partition
        buckets = torch.unique(P.bucket_of[cols])
        inside = torch.bincount(P.bucket_of[cols], minlength=len(P))[buckets]
        sizes = torch.tensor(P.sizes)[buckets]
        if not torch.equal(inside, sizes):
            b = int(buckets[(inside != sizes).nonzero()[0]])
            raise ValueError(f"partition bucket {b} ({P.names[b]!r}) straddles DDP buckets; "
                             "build it with refmoo.ddp_buckets(..., ready_order=...) or use a "
                             "finer partition such as per_tensor")
        ids = buckets.tolist()
        idx = torch.cat([P.indices(b) for b in ids]).to(self.G.device)
        local = Partition.from_sizes([P.sizes[b] for b in ids])
        out = bucketwise(self.aggregator, self.G[:, idx], local, keys=ids)
        flat = torch.empty(P.dim, dtype=out.dtype, device=out.device)
        flat[idx] = out
        return flat[cols.to(flat.device)]
