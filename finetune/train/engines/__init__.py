"""Engines: how one step's gradients are computed, reduced and aggregated.

The trainer loop (``finetune.train.loop``) owns the data, the optimizer, the
log and the checkpoints; an engine owns only the model's parallelisation.
Each implements the same small interface (:class:`~.base.Engine`):

``wrap(model, plan)``
    parallelise the model (DDP, ``fully_shard``, nothing) and attach the MOO
    adapter of ``simulate.adapters`` the method needs;
``gradients(batches, diagnose)``
    run this rank's backward passes for the step and leave the update direction
    in ``.grad``; return the local per-language losses, the weights, the time
    spent aggregating, and what diagnostics need;
``all_reduce(t)``, ``barrier()``, and the state-dict accessors checkpoints use.

==============  ==========================================================
``single``      one process; K per-language gradients, ``refmoo`` aggregation
``ddp``         ``DistributedDataParallel`` + ``DDPBucketMOO`` comm hook
``fsdp2``       ``fully_shard`` + ``FSDP2BucketMOO`` (rank-local buckets) or
                ``FSDP2GramMOO`` (buckets that straddle shards: Gram route)
``deepspeed``   ZeRO-2 + ``ZeroMOOOptimizer`` (``bucket`` on ``zero`` buckets; ``standard``)
==============  ==========================================================
"""

from .base import Engine, Plan, StepGradients, make_engine

__all__ = ["Engine", "Plan", "StepGradients", "make_engine"]
