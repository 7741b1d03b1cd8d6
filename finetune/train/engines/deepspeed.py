"""DeepSpeed ZeRO-2 with ``simulate.adapters.deepspeed.ZeroMOOOptimizer``.

As ``simulate.adapters.harness.train_deepspeed`` drives it: ``DS_ACCELERATOR=cpu``
without CUDA (gloo), ``ds_config`` (ZeRO stage 2, ``gradient_accumulation_steps``
1, ``gradient_clipping`` 0, fp32, no loss scaling), and per real step

- ``bucket`` with ``--partition zero[:SIZE]``: K rounds ``engine.backward(L_k·W)``
  (DeepSpeed divides each rank's gradient by W before reducing; each rank's loss is
  its share of the global mean, so ·W, exact for W a power of two) and
  ``engine.step()``; on rounds 0..K−2 the adapter only stores the rank's partition
  of language k's reduced gradient, on round K−1 it aggregates the buckets the rank
  owns and runs the trainer's optimizer on its fp32 partition;
- ``standard``: one ``engine.backward(mean loss·W)`` and ``engine.step()``.

The last ``engine.step()`` is the trainer's ``optimizer.step()``
(:meth:`DeepSpeedEngine.attach` hands the loop a stand-in optimizer), so the
schedule steps once per real step (DeepSpeed's own step counter counts K).

Refused with a ConfigError, before training: ``full`` (use ``--engine fsdp2``,
whose Gram route aggregates the whole model without gathering it, or ``bucket``
with ``zero``), any other partition, dtypes other than float32, more than one
micro-batch per rank, and ``--save-every`` (checked in ``TrainConfig.validate``:
ZeRO's partitioned optimizer state is not saved by this trainer yet).
"""

from __future__ import annotations

import os
import time

import torch
from torch import nn

from finetune.errors import ConfigError

from .base import Engine, Plan, StepGradients


class _Stepper:
    """What the loop steps: the last ``engine.step()`` of the step."""

    def __init__(self, engine: DeepSpeedEngine, inner: torch.optim.Optimizer) -> None:
        self.engine, self.inner = engine, inner
        self.param_groups = inner.param_groups

    def step(self, closure=None):
        t = time.perf_counter()
        self.engine.ds.step()
        self.engine.step_s = time.perf_counter() - t

    def zero_grad(self, set_to_none: bool = True) -> None:
        pass  # DeepSpeed zeroes its gradients after each step

    def state_dict(self):
        raise ConfigError("--engine deepspeed does not save optimizer state (no --save-every)")


class DeepSpeedEngine(Engine):
    name = "deepspeed"

    def wrap(self, model: nn.Module, plan: Plan) -> None:
        if plan.method == "full":
            raise ConfigError("--engine deepspeed aggregates ZeRO's buckets only: for --method "
                              "full use --engine fsdp2 (Gram route) or ddp; under deepspeed "
                              "use --method bucket --partition zero[:SIZE]")
        kind, _, arg = plan.partition_spec.partition(":")
        if plan.method == "bucket" and kind != "zero":
            raise ConfigError(f"--engine deepspeed aggregates ZeRO-2's buckets: partition "
                              f"{plan.partition_spec!r} must be zero[:SIZE]")
        dtype = next(model.parameters()).dtype
        if dtype != torch.float32:
            raise ConfigError(f"--engine deepspeed runs its ZeRO-2 adapter in float32 (no loss "
                              f"scaling, fp32 master weights); got --dtype {dtype}")
        if kind == "zero" and plan.partition.layout is not None and \
                max((lay.rank or 0) for lay in plan.partition.layout) >= self.world_size:
            raise ConfigError("--partition-world-size must equal the number of ranks under "
                              "--engine deepspeed")
        self.size = int(float(arg)) if kind == "zero" and arg else 500_000_000
        self.model = self.module = model
        self.plan = plan
        self.ds = None

    def attach(self, optimizer: torch.optim.Optimizer):
        """Build DeepSpeed's engine around the trainer's optimizer; the loop steps the
        returned stand-in (its scheduler keeps driving ``optimizer``'s learning rate)."""
        if not torch.cuda.is_available():
            os.environ.setdefault("DS_ACCELERATOR", "cpu")
        os.environ.setdefault("LOCAL_RANK", str(self.rank))
        os.environ.setdefault("RANK", str(self.rank))
        os.environ.setdefault("WORLD_SIZE", str(self.world_size))
        try:
            import deepspeed
        except ImportError as err:
            raise ConfigError("--engine deepspeed needs DeepSpeed (pip install deepspeed)") \
                from err
        from simulate.adapters.deepspeed import ZeroMOOOptimizer, ds_config

        plan = self.plan
        opt = optimizer
        if plan.method == "bucket":
            try:
                opt = ZeroMOOOptimizer(optimizer, plan.aggregator, plan.partition, plan.K,
                                       self.rank, self.world_size)
            except ValueError as err:
                raise ConfigError(f"partition {plan.partition_spec!r}: {err}") from err
        self.moo = opt if opt is not optimizer else None
        self.ds, *_ = deepspeed.initialize(model=self.model, optimizer=opt,
                                           config=ds_config(self.size, self.world_size),
                                           dist_init_required=False)
        self.module = self.ds
        self.step_s = 0.0
        return _Stepper(self, optimizer)

    def gradients(self, batches, diagnose: bool) -> StepGradients:
        from ..batches import micro_loss

        plan, ds, W = self.plan, self.ds, self.world_size
        if len(batches[0]) != 1:
            raise ConfigError("--engine deepspeed takes one micro-batch per rank and step: "
                              "use --micro-batch-size = --batch-size / world size")
        losses = self.new_losses(plan.K)
        D = sum(p.numel() for p in self.parameters())
        itemsize = 4
        if self.moo is None:
            parts = [micro_loss(ds, batches[k][0]) for k in range(plan.K)]
            for k, part in enumerate(parts):
                losses[k] += float(part.detach())
            ds.backward(sum(parts) / plan.K * W)
            return StepGradients(losses, grad_memory_bytes=D * itemsize)
        for k in range(plan.K):
            loss = micro_loss(ds, batches[k][0])
            losses[k] += float(loss.detach())
            ds.backward(loss * W)  # DeepSpeed divides by W before reducing
            if k < plan.K - 1:
                ds.step()  # the adapter stores language k's partition gradient
        G = self.moo.G
        extra = 0 if G is None else G.numel() * G.element_size()
        return StepGradients(losses, grad_memory_bytes=D * itemsize + extra)

    def model_state(self) -> dict | None:
        return None  # ZeRO-2 all-gathers the updated parameters into the model after each step

    def optimizer_state(self, optimizer):
        raise ConfigError("--engine deepspeed does not save optimizer state (no --save-every)")
