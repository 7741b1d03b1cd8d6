"""FSDP2 (``fully_shard``) with the ``simulate.adapters`` unit hooks.

Units: the transformer blocks (``partitioning.blocks``: the model's
``_no_split_modules``), then the root. Every unit sums instead of averaging.

- ``standard``: no hook; one backward of the mean loss per micro-batch;
- ``bucket`` with ``--partition fsdp2[...]``: ``FSDP2BucketMOO``, the MOO of each
  rank's (unit, rank) shard on local data (the paper's setting on FSDP2);
- ``full``, or ``bucket`` with any other partition (``tensor``, ``chunks``...),
  whose buckets straddle the ranks' shards: ``FSDP2GramMOO``, the Gram route of
  proofs/gram.md (partial Grams, one all-reduce of M·K(K+1)/2 numbers, global
  weights applied to the local shard); Gram-based aggregators only.

Micro-batches before the last of each language run with
``set_requires_gradient_sync(False)``: FSDP2 accumulates unsharded gradients
and reduce-scatters their sum once. Diagnostics come from the all-reduced
bucket Grams (no rank holds G); ``standard`` steps are not diagnosed under FSDP2
(its per-language shards would need K more reduce-scatters).
"""

from __future__ import annotations

import contextlib
import time

import torch
from torch import nn

from finetune.errors import ConfigError
from refmoo import GramAggregator, Partition, fsdp2_units, per_tensor
from simulate.adapters.common import bucket_weights
from simulate.adapters.fsdp2 import FSDP2BucketMOO, FSDP2GramMOO, partial_grams, reduce_grams

from ..partitioning import fsdp2_units as unit_names
from .base import Engine, Plan, StepGradients, language_passes, mean_loss_passes


class _TimedBucketMOO(FSDP2BucketMOO):
    aggregate_s = 0.0

    def _last_pass(self, *args) -> None:
        t = time.perf_counter()
        try:
            super()._last_pass(*args)
        finally:
            self.aggregate_s += time.perf_counter() - t


class FSDP2Engine(Engine):
    name = "fsdp2"

    def wrap(self, model: nn.Module, plan: Plan) -> None:
        from torch.distributed.device_mesh import init_device_mesh
        from torch.distributed.fsdp import fully_shard

        self.plan = plan
        W, r = self.world_size, self.rank
        local = plan.method == "bucket" and plan.partition_spec.startswith("fsdp2")
        units = unit_names(plan.partition_spec, model)
        if not units:
            raise ConfigError("--engine fsdp2 needs transformer blocks to shard "
                              "(the model lists no _no_split_modules)")
        if plan.method != "standard" and not local and \
                not isinstance(plan.aggregator, GramAggregator):
            raise ConfigError(f"aggregator {plan.aggregator!r} is not Gram-based: under FSDP2 "
                              "only --partition fsdp2 keeps its buckets on one rank")
        shards = fsdp2_units(model, units, W)
        tensors = per_tensor(model)
        mesh = init_device_mesh(self.device.type, (W,))
        modules = dict(model.named_modules())
        for name in units:
            fully_shard(modules[name], mesh=mesh)
        fully_shard(model, mesh=mesh)
        self.model = self.module = model
        self.tensors = tensors
        self.moo = None
        if plan.method == "standard":
            for m in [model, *(modules[u] for u in units)]:
                m.set_gradient_divide_factor(1.0)
                m.set_force_sum_reduction_for_comms(True)
        elif local:
            self.moo = _TimedBucketMOO(model, units, plan.aggregator, shards, plan.K, r, W)
        else:
            update = Partition.single(shards.dim) if plan.method == "full" else plan.partition
            self.moo = FSDP2GramMOO(model, units, plan.aggregator, shards, update, plan.K, r, W,
                                    group=self.group)
        self.update_partition = shards if local else \
            (Partition.single(shards.dim) if plan.method == "full" else plan.partition)

    def _accumulate(self, n: int):
        def ctx(j: int):
            self.model.set_requires_gradient_sync(j == n - 1, recurse=True)
            return contextlib.nullcontext()
        return ctx

    def _local_bytes(self) -> int:
        return sum(p.to_local().numel() * p.element_size() for p in self.model.parameters())

    def gradients(self, batches, diagnose: bool) -> StepGradients:
        plan, n = self.plan, len(batches[0])
        if self.moo is None:
            losses = mean_loss_passes(self.model, batches, self._accumulate(n),
                                      self.new_losses(plan.K))
            return StepGradients(losses, grad_memory_bytes=self._local_bytes())
        moo = self.moo
        if isinstance(moo, _TimedBucketMOO):
            moo.aggregate_s = 0.0
        losses = language_passes(self.model, batches, moo.language, self._accumulate(n),
                                 self.new_losses(plan.K))
        out = StepGradients(losses)
        if isinstance(moo, FSDP2GramMOO):
            t = time.perf_counter()
            out.weights = moo.finish()
            out.aggregate_s = time.perf_counter() - t
        else:
            out.aggregate_s = moo.aggregate_s
        G = torch.cat([moo.shards[u] for u in moo.layout if u in moo.shards], dim=1)
        out.grad_memory_bytes = G.numel() * G.element_size() + self._local_bytes()
        t = time.perf_counter()
        if isinstance(moo, _TimedBucketMOO):  # each rank knows its own buckets' weights
            w = None
            for unit, b in moo.buckets.items():
                wb = bucket_weights(plan.aggregator, moo.shards[unit],
                                    Partition.from_sizes([moo.shards[unit].shape[1]]), [b])
                if wb is not None:
                    w = w if w is not None else wb.new_zeros(len(self.update_partition), plan.K)
                    w[b] = wb[0]
            if isinstance(plan.aggregator, GramAggregator):
                out.weights = self.all_reduce(w if w is not None else torch.zeros(
                    len(self.update_partition), plan.K, dtype=G.dtype, device=G.device))
        if diagnose:
            cols = torch.cat([moo.layout[u].columns for u in moo.layout if u in moo.shards])
            cols = cols.to(G.device)
            out.grams = {"tensor": reduce_grams(partial_grams(G, cols, self.tensors),
                                                self.group),
                         "run": reduce_grams(partial_grams(G, cols, plan.partition),
                                             self.group)}
        out.diagnostics_s = time.perf_counter() - t
        return out

    # -- checkpoints: full state dicts, gathered to every rank, written by rank 0 --------
    def model_state(self) -> dict:
        from torch.distributed.checkpoint.state_dict import StateDictOptions, get_model_state_dict

        return get_model_state_dict(self.model, options=StateDictOptions(
            full_state_dict=True, cpu_offload=True))

    def optimizer_state(self, optimizer):
        from torch.distributed.checkpoint.state_dict import (
            StateDictOptions,
            get_optimizer_state_dict,
        )

        state = get_optimizer_state_dict(self.model, optimizer, options=StateDictOptions(
            full_state_dict=True, cpu_offload=True))
        return state if self.rank == 0 else None

    def load_optimizer_state(self, optimizer, state) -> None:
        from torch.distributed.checkpoint.state_dict import (
            StateDictOptions,
            set_optimizer_state_dict,
        )

        set_optimizer_state_dict(self.model, optimizer, state,
                                 options=StateDictOptions(full_state_dict=True))
