"""Bucket-level MOO inside DeepSpeed ZeRO stage 2, through its optimizer step.

ZeRO-2 reduces the gradients in IPG buckets and hands each rank's optimizer
the rank's *partition* of the reduced gradient: one fp32 flat tensor, rank r's
equal slice of the flattened (2W-padded) parameter vector. That is exactly
what bucket-level MOO needs on the owner, so the adapter is a
``torch.optim.Optimizer`` given to ``deepspeed.initialize``:

- the step runs K ``engine.backward(loss_k); engine.step()`` rounds with
  ``gradient_accumulation_steps = 1``; on rounds 0..K−2 :meth:`step` stores
  the partition gradient as language k's and leaves the parameters alone
  (DeepSpeed then zeroes the gradients, so the next round starts clean);
- on round K−1 it aggregates every owned bucket (``refmoo.zero_buckets`` with
  the world size: IPG buckets cut at the rank boundaries) from the K stored
  gradients, puts the direction in ``.grad`` and runs the wrapped optimizer.

Settings this relies on: ``gradient_clipping: 0`` (the default 1.0 would
rescale the direction), fp32 (no loss scaling), ``zero_allow_untested_optimizer``,
``DS_ACCELERATOR=cpu`` here. DeepSpeed averages over ranks by dividing each
rank's gradient by W *before* the reduction; the engine's losses are each
rank's share of the global loss, so the harness multiplies them by W, which
is exact when W is a power of two.

Measured (DeepSpeed 0.19.8, CPU accelerator, gloo, before ``bucketwise`` tiled
the buckets it is given together): bitwise equal to the ``bucket`` reference at
W = 2 in float32 for MGDA, PCGrad and CAGrad, and within the float32
summation-order tolerance at W = 4. Since then a rank's subset of buckets may
round differently from the whole partition; the optional test checks the
a-priori tolerance (not run in CI: DeepSpeed is an optional extra).

Limits of this route:

- DeepSpeed keeps fp32 master weights, so a float64 model is updated in
  float32 (errors ~1e-7 against a float64 reference): exactness holds for
  float32 models only;
- the direction is applied by the wrapped optimizer on the fp32 partition, so
  the partition must be ZeRO's (``zero[:SIZE]`` with the real ready order) and
  only elementwise optimizers keep the ZeRO update equal to the reference;
- DeepSpeed all-gathers the (unchanged) parameters after each of the K−1
  storing rounds too, and counts K optimizer steps per real step in its own
  bookkeeping (learning-rate schedulers stepping per ``engine.step`` must be
  driven by the real steps instead);
- on the CPU accelerator DeepSpeed JIT-builds a shared-memory comm op on first
  use (``ninja``; cached afterwards).

Tracing (``trace=AdapterTrace(...)``, :mod:`simulate.adapters.tracing`): the
adapter registers a post-accumulate-grad hook on every parameter when it is
built, that is before ``deepspeed.initialize`` registers ZeRO's own, so each
hook sees ``param.grad`` just before ZeRO-2 copies it into its IPG bucket: the
rank's local gradient. ZeRO divides that bucket by W before it reduces
(``gradient_allreduce_op: "mean"``, the default), so the trace records
local / W (``average=False`` for ``"sum"``), and the reduced partition
gradient is the sum of what is recorded. :meth:`ZeroMOOOptimizer.step` records
the reduced gradient of the owned buckets and the direction it hands to the
wrapped optimizer. float32 parameters only: in fp16/bf16 ZeRO reduces in the
low precision, with loss scaling, which the trace does not model.
"""

from __future__ import annotations

import torch
from torch import Tensor

from refmoo import Aggregator, Partition, bucketwise
from refmoo.partitions.zero import rank_bounds

from .tracing import AdapterTrace


class ZeroMOOOptimizer(torch.optim.Optimizer):
    """Wraps ``inner`` (built on the model's parameters); shares its param groups so
    that DeepSpeed's swap to the fp32 partition reaches the inner optimizer."""

    def __init__(self, inner: torch.optim.Optimizer, aggregator: Aggregator,
                 partition: Partition, num_languages: int, rank: int, world_size: int, *,
                 trace: AdapterTrace | None = None, average: bool = True) -> None:
        if partition.layout is None or any(lay.rank is None for lay in partition.layout):
            raise ValueError("the partition must be refmoo.zero_buckets(..., world_size=W)")
        self.inner = inner
        self.param_groups = inner.param_groups
        self.state = inner.state
        self.defaults = inner.defaults
        self.aggregator = aggregator
        self.K = num_languages
        self.k = 0
        lo, hi = rank_bounds(partition.dim, world_size)[rank]
        self.owned = [b for b, lay in enumerate(partition.layout) if lay.rank == rank]
        cols = [partition.indices(b) for b in self.owned]
        self.columns = torch.cat(cols) if cols else torch.empty(0, dtype=torch.long)
        if cols and (int(self.columns.min()) < lo or int(self.columns.max()) >= hi):
            raise ValueError("an owned bucket lies outside this rank's ZeRO partition")
        self.positions = self.columns - lo
        self.local = Partition.from_sizes([partition.sizes[b] for b in self.owned]) \
            if self.owned else None
        self.G: Tensor | None = None
        self.tracer = None
        if trace is not None:
            self._start_trace(trace, aggregator, partition, rank, world_size, average)

    def _start_trace(self, trace: AdapterTrace, aggregator: Aggregator, partition: Partition,
                     rank: int, world_size: int, average: bool) -> None:
        # ZeRO flattens the parameters in param-group order: those are the flat columns.
        params = [p for g in self.param_groups for p in g["params"]]
        if sum(p.numel() for p in params) != partition.dim:
            raise ValueError(f"the optimizer's parameters have {sum(p.numel() for p in params)} "
                             f"elements, the partition {partition.dim}")
        wrong = {p.dtype for p in params} - {torch.float32}
        if wrong:
            raise ValueError(f"tracing needs float32 parameters (ZeRO reduces {wrong} in low "
                             "precision, with loss scaling)")
        self.tracer = trace.open(aggregator=aggregator, partition=partition,
                                 num_languages=self.K, rank=rank, world_size=world_size,
                                 dtype=torch.float32, parameters=None,
                                 producer="simulate.adapters.deepspeed.ZeroMOOOptimizer")
        divisor = world_size if average else 1  # as ZeRO divides: the same rounding
        offset = 0
        for p in params:
            cols = torch.arange(offset, offset + p.numel())
            p.register_post_accumulate_grad_hook(
                lambda p, cols=cols: self.tracer.local(self.k, cols, p.grad / divisor)
                if self.tracer.active else None)
            offset += p.numel()

    def zero_grad(self, set_to_none: bool = True) -> None:
        self.inner.zero_grad(set_to_none=set_to_none)

    @torch.no_grad()
    def step(self, closure=None):
        (param,) = [p for g in self.param_groups for p in g["params"]]  # the fp32 partition
        grad = param.grad.reshape(-1)
        pos = self.positions.to(grad.device)
        if self.G is None:
            self.G = grad.new_zeros(self.K, pos.numel())
        self.G[self.k] = grad[pos]
        if self.tracer is not None:
            self.tracer.reduced(self.k, self.columns, self.G[self.k])
        if self.k < self.K - 1:
            self.k += 1
            return None
        self.k = 0
        direction = torch.zeros_like(grad)  # padding columns get no update
        if self.local is not None:
            direction[pos] = bucketwise(self.aggregator, self.G, self.local, keys=self.owned)
        param.grad = direction.view_as(param.grad)
        out = self.inner.step(closure)
        if self.tracer is not None:
            self.tracer.output(self.columns, direction[pos])
            self.tracer.end_step()
        return out


def ds_config(reduce_bucket_size: int, world_size: int) -> dict:
    """ZeRO-2 settings under which the adapter is exact (see the module docstring)."""
    return {
        "train_micro_batch_size_per_gpu": 1,
        "train_batch_size": world_size,
        "gradient_accumulation_steps": 1,
        "gradient_clipping": 0.0,
        "zero_allow_untested_optimizer": True,
        "zero_optimization": {
            "stage": 2,
            "reduce_bucket_size": int(reduce_bucket_size),
            "allgather_bucket_size": int(reduce_bucket_size),
            "overlap_comm": False,
            "contiguous_gradients": True,
            "reduce_scatter": True,
        },
        "steps_per_print": 10**9,
        "wall_clock_breakdown": False,
    }
