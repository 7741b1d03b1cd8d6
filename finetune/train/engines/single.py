"""One process: the K per-language gradients as rows of G, aggregated by ``refmoo``.

Language k's row is the ``.grad`` its micro-batches accumulate, in order,
exactly what a data-parallel rank accumulates before the reduction; at W = 2
with one micro-batch per rank, gloo's sum of the two ranks' gradients is the
single engine's ``g_0 + g_1`` bit for bit.
"""

from __future__ import annotations

import contextlib
import time

import torch
from torch import nn

from refmoo import Partition, bucketwise, flat_grad, write_flat_grad
from simulate.adapters.common import bucket_weights

from ..batches import MicroBatch
from .base import (
    Engine,
    Plan,
    StepGradients,
    diagnostic_gradients,
    language_passes,
    mean_loss_passes,
)


def _nothing(_: int):
    return contextlib.nullcontext()


class SingleEngine(Engine):
    name = "single"

    def wrap(self, model: nn.Module, plan: Plan) -> None:
        self.model = self.module = model
        self.plan = plan
        D = plan.partition.dim
        self.update_partition = Partition.single(D) if plan.method == "full" else plan.partition
        # G and the update are allocated at the first MOO step and reused: a fresh
        # (K + 1)·D buffer every step pays its first touch again (on a VM, about as much
        # as a pass over G). The .grad tensors are views of the update (no copy pass, no
        # second D-vector), which stays untouched until the next step's backward passes;
        # the loop reads G's diagnostics within the step.
        self._G: torch.Tensor | None = None
        self._update: torch.Tensor | None = None

    def gradients(self, batches: list[list[MicroBatch]], diagnose: bool) -> StepGradients:
        plan, model = self.plan, self.model
        itemsize = next(model.parameters()).element_size()
        D = self.update_partition.dim
        if plan.method == "standard":
            losses = mean_loss_passes(model, batches, _nothing, self.new_losses(plan.K))
            t = time.perf_counter()
            G = diagnostic_gradients(model, batches) if diagnose else None
            return StepGradients(losses, G=G, grad_memory_bytes=D * itemsize,
                                 diagnostics_s=time.perf_counter() - t)
        dtype = next(model.parameters()).dtype
        if self._G is None or self._G.dtype != dtype:
            self._G = torch.empty(plan.K, D, dtype=dtype, device=self.device)
            self._update = torch.empty(D, dtype=dtype, device=self.device)
        G = self._G

        def collect(k: int) -> None:
            G[k] = flat_grad(model)
            model.zero_grad(set_to_none=True)

        losses = language_passes(model, batches, _nothing, _nothing, self.new_losses(plan.K),
                                 collect)
        out = StepGradients(losses, G=G, grad_memory_bytes=(plan.K + 1) * D * itemsize)
        if not bool(torch.isfinite(losses).all()):
            return out  # the loop stops on the loss, which names the language
        t = time.perf_counter()
        write_flat_grad(model, bucketwise(plan.aggregator, G, self.update_partition,
                                          out=self._update), alias=True)
        out.aggregate_s = time.perf_counter() - t
        out.weights = bucket_weights(plan.aggregator, G, self.update_partition)
        out.diagnostics_s = time.perf_counter() - t - out.aggregate_s
        return out
