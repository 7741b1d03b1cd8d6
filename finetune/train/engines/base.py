"""The engine interface and what every engine shares: the per-language passes."""

from __future__ import annotations

import contextlib
import time
from collections.abc import Callable
from dataclasses import dataclass, field

import torch
import torch.distributed as dist
from torch import Tensor, nn

from refmoo import Aggregator, Partition

from ..batches import MicroBatch, micro_loss


@dataclass
class Plan:
    """What an engine needs to know about the run."""

    method: str                 # standard | full | bucket
    aggregator: Aggregator
    partition: Partition        # the run's --partition (φ_P, and the buckets of `bucket`)
    partition_spec: str
    languages: tuple[str, ...]
    probe: Callable[[nn.Module], Tensor]
    """A loss on the model (the first micro-batch): its backward shows the
    gradient-ready order DDP and ZeRO-2 fill their buckets in."""

    @property
    def K(self) -> int:
        return len(self.languages)


@dataclass
class StepGradients:
    losses: Tensor                         # [K] this rank's share of each language's loss
    weights: Tensor | None = None          # [M, K] (M = 1 for `full`), same on every rank
    aggregate_s: float = 0.0
    diagnostics_s: float = 0.0             # extra passes for diagnostics only (`standard`)
    G: Tensor | None = None                # the global K×D matrix, where an engine holds it
    grams: dict[str, Tensor] = field(default_factory=dict)
    """Where no rank holds G (FSDP2): global bucket Grams, ``"tensor"`` and ``"run"``."""
    grad_memory_bytes: int = 0


class Engine:
    name = "?"
    rank = 0
    world_size = 1
    model: nn.Module
    """The model itself (for FSDP2: the sharded one); state dicts, names."""
    module: nn.Module
    """What the loss is computed on (the DDP wrapper, or the model)."""

    def __init__(self, device: torch.device, group=None) -> None:
        self.device = device
        self.group = group

    def wrap(self, model: nn.Module, plan: Plan) -> None:
        raise NotImplementedError

    def gradients(self, batches: list[list[MicroBatch]], diagnose: bool) -> StepGradients:
        raise NotImplementedError

    def new_losses(self, K: int) -> Tensor:
        """This step's local per-language losses, filled as the passes run: after an
        error (a non-finite gradient inside an engine's hook) they still name the language."""
        self.losses = torch.zeros(K, dtype=torch.float64)
        return self.losses

    def parameters(self) -> list[nn.Parameter]:
        return [p for p in self.model.parameters() if p.requires_grad]

    def attach(self, optimizer: torch.optim.Optimizer):
        """What the loop steps (DeepSpeed: a stand-in whose step is ``engine.step()``)."""
        return optimizer

    # -- collectives (no-ops on one process) --------------------------------
    def all_reduce(self, t: Tensor) -> Tensor:
        if self.world_size > 1:
            dist.all_reduce(t, group=self.group)
        return t

    def barrier(self) -> None:
        if self.world_size > 1:
            dist.barrier(group=self.group)

    # -- checkpoints: full (unsharded) state on rank 0 ----------------------
    def model_state(self) -> dict | None:
        """None: save the model object itself (replicated engines)."""
        return None

    def optimizer_state(self, optimizer: torch.optim.Optimizer) -> dict | None:
        return optimizer.state_dict() if self.rank == 0 else None

    def load_optimizer_state(self, optimizer: torch.optim.Optimizer, state: dict) -> None:
        optimizer.load_state_dict(state)


def no_sync_if(condition: bool, ctx: Callable[[], contextlib.AbstractContextManager]):
    return ctx() if condition else contextlib.nullcontext()


def mean_loss_passes(module: nn.Module, batches: list[list[MicroBatch]],
                     accumulate: Callable[[int], contextlib.AbstractContextManager],
                     losses: Tensor) -> Tensor:
    """``standard``: per micro-batch j one backward of (1/K)·Σ_k loss_{k,j};
    ``accumulate(j)`` is the engine's no-sync context for all but the last j. The
    local losses are summed into ``losses`` as they come (an error leaves them there)."""
    K, n = len(batches), len(batches[0])
    for j in range(n):
        with accumulate(j):
            parts = [micro_loss(module, batches[k][j]) for k in range(K)]
            for k, part in enumerate(parts):
                losses[k] += float(part.detach())
            (sum(parts) / K).backward()
    return losses


def language_passes(module: nn.Module, batches: list[list[MicroBatch]],
                    language: Callable[[int], contextlib.AbstractContextManager],
                    accumulate: Callable[[int], contextlib.AbstractContextManager],
                    losses: Tensor, after: Callable[[int], None] | None = None) -> Tensor:
    """MOO methods: for each language k, inside ``language(k)``, one backward per
    micro-batch, accumulated in ``.grad`` (``accumulate(j)``: no sync before the
    last one); ``after(k)`` collects language k's gradient."""
    for k, mbs in enumerate(batches):
        with language(k):
            for j, mb in enumerate(mbs):
                with accumulate(j):
                    loss = micro_loss(module, mb)
                    losses[k] += float(loss.detach())
                    loss.backward()
        if after is not None:
            after(k)
    return losses


def diagnostic_gradients(model: nn.Module, batches: list[list[MicroBatch]]) -> Tensor:
    """This rank's K×D per-language gradients, through ``torch.autograd.grad`` on the
    bare model: ``.grad`` and any engine hook are left alone (``standard`` diagnostics)."""
    from refmoo import language_gradients

    closures = [lambda mbs=mbs: sum(micro_loss(model, mb) for mb in mbs) for mbs in batches]
    return language_gradients(model, closures)


class Stopwatch:
    def __init__(self) -> None:
        self.seconds = 0.0

    @contextlib.contextmanager
    def __call__(self):
        t = time.perf_counter()
        try:
            yield
        finally:
            self.seconds += time.perf_counter() - t


def make_engine(name: str, device: torch.device, group=None) -> Engine:
    if name == "single":
        from .single import SingleEngine
        return SingleEngine(device)
    if name == "ddp":
        from .ddp import DDPEngine
        return DDPEngine(device, group)
    if name == "fsdp2":
        from .fsdp2 import FSDP2Engine
        return FSDP2Engine(device, group)
    if name == "deepspeed":
        from .deepspeed import DeepSpeedEngine
        return DeepSpeedEngine(device, group)
    raise ValueError(f"unknown engine {name!r}")
