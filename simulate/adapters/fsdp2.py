r"""Bucket-level MOO inside FSDP2 (``fully_shard``), through the unit all-reduce hook.

FSDP2 reduce-scatters each unit's gradients; ``set_all_reduce_hook`` hands
the rank its shard of the unit (``reduce_output``) before it is written into
the sharded ``.grad``. That shard is a refmoo bucket, ``fsdp2_units``'s
(unit, rank): the MOO runs there, on local data, and nothing is ever
reconstructed.

A step runs K backward passes inside ``with moo.language(k):``. The hook
keeps language k's shard and zeroes ``reduce_output`` (FSDP2 then
accumulates 0 into ``.grad``); on the last pass it writes the aggregation of
the K shards instead, so ``.grad`` holds exactly the bucket-level direction.

Set-up that this needs, done by :meth:`FSDP2BucketMOO.__init__`: sum rather
than average (``set_gradient_divide_factor(1)`` with
``set_force_sum_reduction_for_comms(True)``: gloo has no PREMUL_SUM); losses
are each rank's share of the global loss, as for the engine.

Shard layout (``torch/distributed/fsdp/_fully_shard/_fsdp_collectives.py``,
torch 2.13): the output is the concatenation, in unit order, of chunk r of
every parameter padded to ⌈n₀/W⌉ rows; padding is dropped here and left zero.

:class:`FSDP2GramMOO` is the route for partitions whose buckets straddle the
ranks' shards (the full vector, one bucket per tensor): proofs/gram.md,
Theorem 6.2. The hook stores every pass's shard and zeroes ``reduce_output``;
after the last backward, :meth:`FSDP2GramMOO.finish` computes this rank's
partial Gram of every bucket, :math:`Q_r^b = G^{b\cap S_r}G^{b\cap S_r\top}`,
sums them over ranks in one all-reduce of M·K(K+1)/2 numbers (upper
triangles, symmetric by construction: ``refmoo.gram``), solves the weights
:math:`w_b = w(Q^b)` on every rank, and writes :math:`w_b^\top G^{b\cap S_r}` into
the rank's sharded ``.grad``. No rank ever holds another rank's gradients.

Tracing (``trace=AdapterTrace(...)``, :mod:`simulate.adapters.tracing`), on
both classes: each unit's reduce-scatter is wrapped (``set_custom_reduce_scatter``
around the one installed, which still does the work), so every rank records the
input FSDP2 hands to the collective, after its copy-in: the rank's local
gradient of every column of the unit (chunk r' of the input is its contribution
to rank r''s shard). The sum reduction set up above makes the reduced shard the
plain sum of those inputs. Each rank records the reduced shard the hook
received and, once the direction is in place (after the last pass, or after
:meth:`FSDP2GramMOO.finish`), its sharded ``.grad``: what the optimizer steps
with. Assumes no ``MixedPrecisionPolicy`` (the trace has the parameters' dtype)
and W ≥ 2 (at W = 1 FSDP2 skips the collective and no locals are recorded).
"""

from __future__ import annotations

from contextlib import contextmanager

import torch
import torch.distributed as dist
from torch import Tensor, nn

from refmoo import Aggregator, GramAggregator, Partition, bucket_grams, bucketwise
from refmoo.gram import from_upper_triangle, upper_triangle
from refmoo.partitions import flat_parameters
from refmoo.partitions.fsdp import ROOT, chunk_rows

from .tracing import AdapterTrace


class _UnitShard:
    """Where rank ``rank``'s shard of one unit lies: positions in ``reduce_output``
    (padding excluded), the matching global flat columns, and per parameter the
    number of local elements (for writing a direction into the sharded ``.grad``)."""

    def __init__(self, pieces, spans, world_size: int, rank: int) -> None:
        positions, columns, self.params = [], [], []
        start = 0
        for piece in pieces:  # chunk 0 of every parameter is non-empty: all parameters
            s = spans[piece.name]
            rows = s.shape[0]
            row_numel = s.numel // rows
            lo, hi = chunk_rows(rows, world_size, rank)
            n = (hi - lo) * row_numel
            positions.append(torch.arange(start, start + n))
            columns.append(torch.arange(s.offset + lo * row_numel, s.offset + hi * row_numel))
            self.params.append((piece.name, n))
            start += -(-rows // world_size) * row_numel
        self.positions = torch.cat(positions)
        self.columns = torch.cat(columns)
        self.numel = start


class _ObservedReduceScatter:
    """The reduce-scatter FSDP2 had installed, unchanged, with its input shown to
    ``observe`` before the collective reads it (FSDP2's ``ReduceScatter`` protocol)."""

    def __init__(self, inner, observe) -> None:
        self.inner = inner
        self.observe = observe

    def allocate(self, size, *, dtype: torch.dtype, device: torch.device) -> Tensor:
        return self.inner.allocate(size, dtype=dtype, device=device)

    def __call__(self, output_tensor: Tensor, input_tensor: Tensor, group, op,
                 async_op: bool = False):
        self.observe(input_tensor)
        return self.inner(output_tensor=output_tensor, input_tensor=input_tensor, group=group,
                          op=op, async_op=async_op)


def _installed_reduce_scatter(module: nn.Module):
    # torch offers a setter but no getter; the unit's one parameter group holds it.
    groups = getattr(module._get_fsdp_state(), "_fsdp_param_groups", None)
    comm = getattr(groups[0], "_reduce_scatter_comm", None) if groups else None
    if comm is None:
        raise RuntimeError("tracing needs FSDP2's installed reduce-scatter "
                           "(FSDPParamGroup._reduce_scatter_comm, torch 2.13); this torch "
                           "does not expose it there")
    return comm


class _FSDP2Hooks:
    """The common part: sum reduction, one hook per unit, language k's shard stored."""

    _output_after_last_pass = True
    """Whether ``.grad`` holds the direction once the last pass is over (else
    the subclass traces its output itself)."""

    def __init__(self, model: nn.Module, units: list[str], shards: Partition,
                 num_languages: int, rank: int, world_size: int,
                 trace: AdapterTrace | None = None, traced: Partition | None = None) -> None:
        from torch.distributed.fsdp import FSDPModule

        if shards.layout is None:
            raise ValueError("the partition must come from refmoo.fsdp2_units")
        spans = {s.name: s for s in flat_parameters(model)}
        self.model = model
        self.K = num_languages
        self.rank = rank
        self.world_size = world_size
        self._k: int | None = None
        self.shards: dict[str, Tensor] = {}
        """unit → this rank's ``[K, n]`` shard of the K reduced gradients."""
        self.layout: dict[str, _UnitShard] = {}
        modules = dict(model.named_modules())
        by_name = {lay.name: b for b, lay in enumerate(shards.layout)}
        self.tracer = None if trace is None else trace.open(
            aggregator=self.aggregator, partition=traced if traced is not None else shards,
            num_languages=num_languages, rank=rank, world_size=world_size,
            dtype=next(iter(model.parameters())).dtype,
            parameters=[(s.name, s.offset, s.numel, s.shape) for s in spans.values()],
            producer=f"simulate.adapters.fsdp2.{type(self).__name__}")
        for unit in [ROOT, *units]:
            module = model if unit == ROOT else modules[unit]
            if not isinstance(module, FSDPModule):
                raise ValueError(f"{unit!r} is not a fully_shard unit")
            module.set_gradient_divide_factor(1.0)
            module.set_force_sum_reduction_for_comms(True)
            order = [lay for lay in shards.layout if lay.group == unit and lay.rank == 0]
            if not order:
                raise ValueError(f"unit {unit!r} has no parameters in the partition")
            shard = self.layout[unit] = _UnitShard(order[0].pieces, spans, world_size, rank)
            bucket = by_name.get(f"{unit}@r{rank}")
            if bucket is not None and shard.positions.numel() != shards.sizes[bucket]:
                raise ValueError(f"unit {unit!r}: shard layout does not match the partition")
            module.set_all_reduce_hook(self._make_hook(unit, bucket, shard))
            if self.tracer is not None:
                everyone = [_UnitShard(order[0].pieces, spans, world_size, r)
                            for r in range(world_size)]
                module.set_custom_reduce_scatter(_ObservedReduceScatter(
                    _installed_reduce_scatter(module), self._observer(everyone)))

    @contextmanager
    def language(self, k: int):
        self._k = k
        try:
            yield
        finally:
            self._k = None
        if self.tracer is not None:  # only after a pass that completed
            self._trace_pass(k)

    def backward(self, losses) -> None:
        for k, loss in enumerate(losses):
            with self.language(k):
                loss().backward()

    def _make_hook(self, unit: str, bucket: int | None, shard: _UnitShard):
        def hook(reduce_output: Tensor) -> None:
            k = self._k
            if k is None:
                raise RuntimeError("backward ran outside `with moo.language(k):`")
            if reduce_output.numel() != shard.numel:
                raise RuntimeError(f"unit {unit!r}: reduce-scatter output has "
                                   f"{reduce_output.numel()} elements, expected {shard.numel}")
            if shard.positions.numel() == 0:  # this rank's shard of the unit is all padding
                reduce_output.zero_()
                return
            p = shard.positions.to(reduce_output.device)
            G = self.shards.get(unit)
            if G is None:
                G = self.shards[unit] = reduce_output.new_zeros(self.K, p.numel())
            G[k] = reduce_output[p]
            reduce_output.zero_()
            if k == self.K - 1:
                self._last_pass(unit, bucket, G, reduce_output, p)
        return hook

    def _last_pass(self, unit, bucket, G, reduce_output, positions) -> None:
        """Language K−1's shard is stored; ``reduce_output`` is zero."""

    # -- tracing ------------------------------------------------------------------
    def _observer(self, everyone: list[_UnitShard]):
        """Records a unit's reduce-scatter input: row r is this rank's contribution
        to rank r's shard, in rank r's padded layout."""
        def observe(input_tensor: Tensor) -> None:
            k = self._k
            if k is None or not self.tracer.active:  # outside a pass the hook will raise
                return
            rows = input_tensor.view(len(everyone), -1)
            for r, shard in enumerate(everyone):
                self.tracer.local(k, shard.columns, rows[r][shard.positions.to(rows.device)])
        return observe

    def _trace_pass(self, k: int) -> None:
        for unit, G in self.shards.items():
            self.tracer.reduced(k, self.layout[unit].columns, G[k])
        if k == self.K - 1 and self._output_after_last_pass:
            self._trace_output()

    def _trace_output(self) -> None:
        """The direction as the optimizer will see it: this rank's sharded ``.grad``."""
        params = dict(self.model.named_parameters())
        for unit in self.shards:
            shard = self.layout[unit]
            parts = []
            for name, n in shard.params:
                if n:
                    g = params[name].grad
                    # A parameter without .grad is left alone by the optimizer.
                    parts.append(g.to_local().reshape(-1) if g is not None else
                                 torch.zeros(n, dtype=self.shards[unit].dtype))
            self.tracer.output(shard.columns, torch.cat(parts))
        self.tracer.end_step()


class FSDP2BucketMOO(_FSDP2Hooks):
    """Attach to a model already wrapped with ``fully_shard`` (units, then the root).

    ``partition`` must be ``refmoo.fsdp2_units(model, units, world_size)`` built
    on the unwrapped model (same names), ``units`` the submodule names.
    """

    def __init__(self, model: nn.Module, units: list[str], aggregator: Aggregator,
                 partition: Partition, num_languages: int, rank: int, world_size: int, *,
                 trace: AdapterTrace | None = None) -> None:
        self.aggregator = aggregator
        self.buckets: dict[str, int] = {}
        """unit → the partition bucket this rank owns in it."""
        super().__init__(model, units, partition, num_languages, rank, world_size, trace)

    def _last_pass(self, unit, bucket, G, reduce_output, positions) -> None:
        local = Partition.from_sizes([positions.numel()])
        reduce_output[positions] = bucketwise(self.aggregator, G, local, keys=[bucket])
        self.buckets[unit] = bucket


class FSDP2GramMOO(_FSDP2Hooks):
    """Gram-based MOO on any ``partition`` of the flat vector under FSDP2 (module docstring).

    ``shards`` is ``refmoo.fsdp2_units(model, units, world_size)`` (the engine's
    layout), ``partition`` the MOO's buckets (``Partition.single(D)`` for the full
    vector), both built on the unwrapped model. Run the K passes, then :meth:`finish`
    on every rank before the optimizer step. A trace's buckets are ``partition``'s.
    """

    _output_after_last_pass = False  # the direction exists only after finish()

    def __init__(self, model: nn.Module, units: list[str], aggregator: Aggregator,
                 shards: Partition, partition: Partition, num_languages: int, rank: int,
                 world_size: int, group=None, *, trace: AdapterTrace | None = None) -> None:
        if not isinstance(aggregator, GramAggregator):
            raise ValueError(f"{aggregator!r} is not Gram-based: its update needs the whole "
                             "bucket, which no rank holds under FSDP2")
        if partition.dim != shards.dim:
            raise ValueError(f"the partition covers {partition.dim} columns, the model has "
                             f"{shards.dim}")
        self.aggregator = aggregator
        self.partition = partition
        self.group = group
        self.weights: Tensor | None = None
        """``[M, K]``: the last step's weights, the same on every rank."""
        super().__init__(model, units, shards, num_languages, rank, world_size, trace,
                         traced=partition)

    def local_gradients(self) -> tuple[Tensor, Tensor]:
        """This rank's ``[K, n]`` shard of G (all units) and the n global columns."""
        units = [u for u in self.layout if u in self.shards]
        G = torch.cat([self.shards[u] for u in units], dim=1)
        cols = torch.cat([self.layout[u].columns for u in units]).to(G.device)
        return G, cols

    def partial_grams(self, partition: Partition) -> Tensor:
        """This rank's ``[M, K, K]`` partial Grams of ``partition``'s buckets (zeros for
        buckets it holds nothing of)."""
        G, cols = self.local_gradients()
        return partial_grams(G, cols, partition)

    def finish(self) -> Tensor:
        """Exchange the partial Grams, solve, write the local direction into ``.grad``;
        returns the ``[M, K]`` weights."""
        Q = reduce_grams(self.partial_grams(self.partition), self.group)
        M = len(self.partition)
        self.weights = self.aggregator.weights_from_gram(Q, keys=torch.arange(M))
        G, cols = self.local_gradients()
        w = self.weights.to(G.dtype)[self.partition.bucket_of.to(cols.device)[cols]]  # [n, K]
        direction = (G * w.T).sum(0)
        self._write(direction)
        if self.tracer is not None:
            self._trace_output()
        return self.weights

    @torch.no_grad()
    def _write(self, direction: Tensor) -> None:
        params = dict(self.model.named_parameters())
        at = 0
        for unit, shard in self.layout.items():
            if unit not in self.shards:
                continue
            for name, n in shard.params:
                if n:
                    local = params[name].grad.to_local()
                    local.copy_(direction[at:at + n].view_as(local))
                at += n


def partial_grams(G: Tensor, cols: Tensor, partition: Partition) -> Tensor:
    """``Q[b] = G[:, i∈b] G[:, i∈b]ᵀ`` over the columns ``cols`` this rank holds."""
    K = G.shape[0]
    bucket = partition.bucket_of.to(cols.device)[cols]
    order = torch.argsort(bucket, stable=True)
    held, counts = torch.unique_consecutive(bucket[order], return_counts=True)
    Q = G.new_zeros(len(partition), K, K)
    if cols.numel() == 0:  # a rank whose shards are all padding
        return Q
    # One batched pass over the held columns, grouped by bucket (no loop over buckets).
    Q[held] = bucket_grams(G[:, order], Partition.from_sizes(counts.tolist()))
    return Q


def reduce_grams(Q: Tensor, group=None) -> Tensor:
    """Sum ``[M, K, K]`` partial Grams over ranks: one all-reduce of M·K(K+1)/2 numbers,
    mirrored back, so the result is exactly symmetric on every rank."""
    K = Q.shape[-1]
    packed = upper_triangle(Q).contiguous()
    dist.all_reduce(packed, group=group)
    return from_upper_triangle(packed, K)
