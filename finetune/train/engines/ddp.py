"""``DistributedDataParallel`` with the ``simulate.adapters`` comm hooks.

- ``standard``: a comm hook that all-reduces each bucket and returns the *sum*
  (each rank's loss is its share of the global mean, so the sum is the global
  gradient; DDP's default hook would divide by W);
- ``bucket``: ``DDPBucketMOO``; the partition must refine DDP's buckets (checked
  before training against ``refmoo.ddp_buckets`` with the real gradient-ready
  order: ``tensor`` refines any, ``ddp:CAP:CAP`` is exactly DDP's);
- ``full``: the same adapter with one partition bucket, on a DDP whose bucket cap
  holds the whole model, so that one DDP bucket carries all of G (replicated
  engines hold all of G anyway; no Gram route is needed).

Micro-batches before the last of each language run under ``no_sync`` and
accumulate in ``.grad``; the last one's backward triggers the reduction of the
accumulated gradient. Every rank holds the same number of micro-batches of every
language (``batches.micro_batch_count``), so every reduction is joined.
"""

from __future__ import annotations

import time

import torch.distributed as dist
from torch import nn

from finetune.errors import ConfigError
from refmoo import Partition, ddp_buckets
from refmoo.partitions import gradient_ready_order
from simulate.adapters.common import bucket_weights
from simulate.adapters.ddp import DDPBucketMOO
from simulate.adapters.harness import ddp_cap_mb
from simulate.comm import Comm

from .base import (
    Engine,
    Plan,
    StepGradients,
    diagnostic_gradients,
    language_passes,
    mean_loss_passes,
    no_sync_if,
)


def _sum_hook(group, bucket):
    fut = dist.all_reduce(bucket.buffer(), group=group, async_op=True).get_future()
    return fut.then(lambda f: f.value()[0])


class _TimedMOO(DDPBucketMOO):
    """The adapter, with the time its aggregation takes inside the hook."""

    aggregate_s = 0.0

    def _aggregate(self, cols):
        t = time.perf_counter()
        try:
            return super()._aggregate(cols)
        finally:
            self.aggregate_s += time.perf_counter() - t


class DDPEngine(Engine):
    name = "ddp"

    def wrap(self, model: nn.Module, plan: Plan) -> None:
        from torch.nn.parallel import DistributedDataParallel as DDP

        self.model, self.plan = model, plan
        D = plan.partition.dim
        itemsize = next(model.parameters()).element_size()
        if plan.method == "full":
            cap = D * itemsize / 2**20 + 1  # one DDP bucket holds every gradient
            self.update_partition = Partition.single(D)
        else:
            cap = ddp_cap_mb(plan.partition_spec) if plan.partition_spec.startswith("ddp") \
                else 25.0
            self.update_partition = plan.partition
        if plan.method == "bucket":
            ready = gradient_ready_order(model, lambda: plan.probe(model))
            model.zero_grad(set_to_none=True)
            theirs = ddp_buckets(model, cap, cap, ready_order=ready)
            if not plan.partition.refines(theirs):
                raise ConfigError(f"partition {plan.partition_spec!r} straddles DDP's gradient "
                                  f"buckets ({cap:g} MiB): under --engine ddp use tensor or "
                                  f"ddp:{cap:g}:{cap:g}")
        kwargs = {"device_ids": [self.device.index]} if self.device.type == "cuda" else {}
        self.module = DDP(model, bucket_cap_mb=cap, **kwargs)
        self.moo = None
        if plan.method == "standard":
            self.module.register_comm_hook(self.group, _sum_hook)
        else:
            self.moo = _TimedMOO(self.module, plan.aggregator, self.update_partition, plan.K,
                                 comm=Comm(self.group))
        self.D, self.itemsize = D, itemsize

    def gradients(self, batches, diagnose: bool) -> StepGradients:
        plan, ddp = self.plan, self.module
        n = len(batches[0])

        def accumulate(j: int):
            return no_sync_if(j < n - 1, ddp.no_sync)

        buffers = self.D * self.itemsize  # .grad; DDP's bucket buffers as much again
        if self.moo is None:
            losses = mean_loss_passes(ddp, batches, accumulate, self.new_losses(plan.K))
            t = time.perf_counter()
            G = None
            if diagnose:  # on the bare module: no hook fires, then one explicit sum
                G = self.all_reduce(diagnostic_gradients(self.model, batches))
            return StepGradients(losses, G=G, grad_memory_bytes=2 * buffers,
                                 diagnostics_s=time.perf_counter() - t)
        self.moo.aggregate_s = 0.0
        losses = language_passes(ddp, batches, self.moo.language, accumulate,
                                 self.new_losses(plan.K))
        out = StepGradients(losses, G=self.moo.G, aggregate_s=self.moo.aggregate_s,
                            grad_memory_bytes=(plan.K + 2) * buffers)
        t = time.perf_counter()
        if self.rank == 0:  # only rank 0 logs
            out.weights = bucket_weights(plan.aggregator, self.moo.G, self.update_partition)
        out.diagnostics_s = time.perf_counter() - t
        return out

    def parameters(self):
        return [p for p in self.model.parameters() if p.requires_grad]
