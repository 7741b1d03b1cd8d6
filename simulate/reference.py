"""The single-process reference a distributed run must reproduce.

It rebuilds every rank's per-language gradients G^r with
:func:`refmoo.language_gradients` (same model, same shards), sums them in rank
order, G = G^0 + G^1 + ... (each G^r already carries its share of the global
loss, see :mod:`simulate.workload`), and takes :func:`refmoo.reference_step`
with the run's partition (``Partition.single`` for the full-vector strategies,
:class:`refmoo.Mean` for ``standard``) and the same optimizer.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import Tensor

from refmoo import Mean, language_gradients, reference_step
from refmoo.partitions import trainable_parameters

from .config import RunConfig
from .schemes import build_partition
from .strategies import STRATEGIES
from .workload import build_model, language_losses, probe_loss


def _zero() -> Tensor:
    return torch.zeros(())


@dataclass
class ReferenceResult:
    params: Tensor
    """Flat parameters after ``cfg.steps`` steps."""
    input_magnitude: float
    """max over steps and entries of Σ_r |G^r|: the scale of every reduced value."""
    update_magnitude: float
    """max over steps of ‖A(G)‖_∞: the scale of what a bug would perturb."""
    param_magnitude: float
    """max over steps of ‖θ‖_∞."""
    movement: float = 0.0
    """max_i |θ_T,i − θ_0,i|: how far the parameters moved in the whole run."""


def reference_run(cfg: RunConfig) -> ReferenceResult:
    """Single-threaded, like every rank: a multi-threaded matmul may round differently."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        return _reference_run(cfg)
    finally:
        torch.set_num_threads(threads)


def _reference_run(cfg: RunConfig) -> ReferenceResult:
    wl = cfg.workload
    model = build_model(wl)
    strategy = STRATEGIES[cfg.strategy]
    if strategy.single_backward:
        aggregator, partition = Mean(), None
    else:
        aggregator = cfg.make_aggregator()
        partition = None if strategy.full_vector else \
            build_partition(cfg.partition, model, cfg.world_size, probe_loss(wl, model))[0]
    params = [p for _, p in trainable_parameters(model)]
    optimizer = cfg.make_optimizer(params)
    magnitude = update = 0.0
    theta = max(float(p.detach().abs().max()) for p in params)
    initial = torch.cat([p.detach().reshape(-1) for p in params])
    for step in range(cfg.steps):
        G = absG = None
        for r in range(cfg.world_size):
            closures = language_losses(wl, model, step, r, cfg.world_size)
            Gr = language_gradients(model, [c if c is not None else _zero for c in closures])
            G = Gr if G is None else G + Gr
            absG = Gr.abs() if absG is None else absG + Gr.abs()
        magnitude = max(magnitude, float(absG.max()))
        a = reference_step(model, G, aggregator, partition)
        update = max(update, float(a.abs().max()))
        optimizer.step()
        optimizer.zero_grad(set_to_none=True)
        theta = max(theta, max(float(p.detach().abs().max()) for p in params))
    flat = torch.cat([p.detach().reshape(-1) for p in params])
    return ReferenceResult(flat, magnitude, update, theta, float((flat - initial).abs().max()))


def shadow_config(cfg: RunConfig) -> RunConfig:
    """The same run in float64: the trajectory the float32 one approximates
    (``simulate.tolerance``); the initial weights are the float32 ones, cast exactly."""
    from dataclasses import replace

    return cfg.with_(workload=replace(cfg.workload, dtype="float64"))
