"""Train the simulator's workload through an adapter, on every rank, for the equivalence tests.

Each ``train_*`` function is a rank function for :func:`simulate.launch.spawn`:
it builds the model and data exactly as the engine does, wraps the model in
the real engine (DDP, FSDP2, DeepSpeed), trains ``cfg.steps`` steps with K
backward passes each, and returns the final flat parameters from rank 0 (and
what the adapter observed). The reference is :func:`simulate.reference.reference_run`
with the strategy that engine implements (``bucket-replicated`` for DDP,
``bucket`` for FSDP2 and ZeRO-2). ``traces``, one
:class:`~simulate.adapters.tracing.AdapterTrace` or None per config, turns on
the adapter's own tracing.
"""

from __future__ import annotations

from typing import Any

import torch

from refmoo.partitions import trainable_parameters

from ..comm import Comm
from ..config import RunConfig
from ..launch import RankInfo
from ..schemes import build_partition
from ..workload import build_model, language_losses, probe_loss
from .tracing import AdapterTrace


def _flat(model: torch.nn.Module) -> torch.Tensor:
    parts = []
    for _, p in trainable_parameters(model):
        t = p.detach()
        if hasattr(t, "full_tensor"):  # an FSDP2 DTensor: gather the whole parameter
            t = t.full_tensor()
        parts.append(t.reshape(-1).cpu())
    return torch.cat(parts)


def ddp_cap_mb(spec: str) -> float:
    """The DDP ``bucket_cap_mb`` a ``ddp:CAP[:FIRST]`` spec mirrors (FIRST must equal CAP:
    DDP(bucket_cap_mb=X) uses X for the first bucket too)."""
    kind, _, rest = spec.partition(":")
    if kind != "ddp":
        return 25.0
    caps = [float(x) for x in rest.split(":") if x] or [25.0, 1.0]
    if len(caps) == 2 and caps[0] != caps[1]:
        raise ValueError(f"{spec}: DDP(bucket_cap_mb=X) caps the first bucket at X too; "
                         f"use ddp:{caps[0]}:{caps[0]}")
    return caps[0]


Traces = list[AdapterTrace | None] | None


def _paired(configs: list[RunConfig], traces: Traces) -> list[tuple[RunConfig, Any]]:
    traces = [None] * len(configs) if traces is None else traces
    if len(traces) != len(configs):
        raise ValueError(f"{len(traces)} traces for {len(configs)} configs")
    return list(zip(configs, traces, strict=True))


def train_ddp(info: RankInfo, configs: list[RunConfig], traces: Traces = None
              ) -> list[dict[str, Any]]:
    return [_train_ddp(info, cfg, t) for cfg, t in _paired(configs, traces)]


def train_fsdp2(info: RankInfo, configs: list[RunConfig], traces: Traces = None
                ) -> list[dict[str, Any]]:
    return [_train_fsdp2(info, cfg, t) for cfg, t in _paired(configs, traces)]


def _train_ddp(info: RankInfo, cfg: RunConfig, trace: AdapterTrace | None) -> dict[str, Any]:
    from torch.nn.parallel import DistributedDataParallel as DDP

    from .ddp import DDPBucketMOO

    wl = cfg.workload
    model = build_model(wl)
    partition, _ = build_partition(cfg.partition, model, info.world_size, probe_loss(wl, model))
    ddp = DDP(model, bucket_cap_mb=ddp_cap_mb(cfg.partition))
    comm = Comm(info.group)
    moo = DDPBucketMOO(ddp, cfg.make_aggregator(), partition, wl.num_languages, comm=comm,
                       trace=trace)
    optimizer = cfg.make_optimizer([p for _, p in trainable_parameters(model)])
    for step in range(cfg.steps):
        optimizer.zero_grad(set_to_none=True)
        moo.backward(language_losses(wl, ddp, step, info.rank, info.world_size,
                                     zero_if_empty=True))
        optimizer.step()
    seen = sorted(tuple(c.tolist()) for c in moo.last_buckets.values())
    want = sorted(tuple(b.tolist()) for b in partition)
    return {"params": _flat(model) if info.rank == 0 else None,
            "ddp_buckets_match_partition": seen == want,
            "ddp_buckets": len(seen),
            "comm": {k: (v.calls, float(v.bytes)) for k, v in comm.ledger.items()}}


def _train_fsdp2(info: RankInfo, cfg: RunConfig, trace: AdapterTrace | None
                 ) -> dict[str, Any]:
    from torch.distributed.device_mesh import init_device_mesh
    from torch.distributed.fsdp import fully_shard

    from refmoo import fsdp2_units

    from ..workload import block_names
    from .fsdp2 import FSDP2BucketMOO

    wl = cfg.workload
    model = build_model(wl)
    kind, _, arg = cfg.partition.partition(":")
    if kind != "fsdp2":
        raise ValueError(f"the FSDP2 adapter aggregates FSDP2's own shards; partition "
                         f"{cfg.partition!r} must be fsdp2[:UNITS]")
    units = arg.split(",") if arg else block_names(model)
    partition = fsdp2_units(model, units, info.world_size)
    mesh = init_device_mesh("cpu", (info.world_size,))
    modules = dict(model.named_modules())
    for name in units:
        fully_shard(modules[name], mesh=mesh)
    fully_shard(model, mesh=mesh)
    moo = FSDP2BucketMOO(model, units, cfg.make_aggregator(), partition, wl.num_languages,
                         info.rank, info.world_size, trace=trace)
    optimizer = cfg.make_optimizer([p for _, p in trainable_parameters(model)])
    for step in range(cfg.steps):
        optimizer.zero_grad(set_to_none=True)
        moo.backward(language_losses(wl, model, step, info.rank, info.world_size,
                                     zero_if_empty=True))
        optimizer.step()
    flat = _flat(model)
    return {"params": flat if info.rank == 0 else None,
            "shard_elements": sum(g.shape[1] for g in moo.shards.values())}


def train_deepspeed(info: RankInfo, configs: list[RunConfig], traces: Traces = None
                    ) -> list[dict[str, Any]]:
    import os

    os.environ.setdefault("DS_ACCELERATOR", "cpu")
    # DeepSpeed reads its launcher's variables even when the group already exists.
    os.environ.setdefault("LOCAL_RANK", str(info.rank))
    os.environ.setdefault("RANK", str(info.rank))
    os.environ.setdefault("WORLD_SIZE", str(info.world_size))
    return [_train_deepspeed(info, cfg, t) for cfg, t in _paired(configs, traces)]


def _train_deepspeed(info: RankInfo, cfg: RunConfig, trace: AdapterTrace | None
                     ) -> dict[str, Any]:
    import deepspeed

    from .deepspeed import ZeroMOOOptimizer, ds_config

    wl = cfg.workload
    model = build_model(wl)
    kind, _, arg = cfg.partition.partition(":")
    if kind != "zero":
        raise ValueError(f"the DeepSpeed adapter aggregates ZeRO's buckets; partition "
                         f"{cfg.partition!r} must be zero[:SIZE]")
    size = int(float(arg)) if arg else 500_000_000
    partition, _ = build_partition(cfg.partition, model, info.world_size, probe_loss(wl, model))
    inner = cfg.make_optimizer([p for _, p in trainable_parameters(model)])
    opt = ZeroMOOOptimizer(inner, cfg.make_aggregator(), partition, wl.num_languages,
                           info.rank, info.world_size, trace=trace)
    engine, *_ = deepspeed.initialize(model=model, optimizer=opt,
                                      config=ds_config(size, info.world_size),
                                      dist_init_required=False)
    W = info.world_size
    for step in range(cfg.steps):
        for loss in language_losses(wl, engine, step, info.rank, W, zero_if_empty=True):
            engine.backward(loss() * W)  # DeepSpeed divides by W before reducing
            engine.step()
    return {"params": _flat(model) if info.rank == 0 else None}
