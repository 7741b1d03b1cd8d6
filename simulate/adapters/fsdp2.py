"""Bucket-level MOO inside FSDP2 (``fully_shard``), through the unit all-reduce hook.

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
"""

from __future__ import annotations

from contextlib import contextmanager

import torch
from torch import Tensor, nn

from refmoo import Aggregator, Partition, bucketwise
from refmoo.partitions import flat_parameters
from refmoo.partitions.fsdp import ROOT, chunk_rows


class FSDP2BucketMOO:
    """Attach to a model already wrapped with ``fully_shard`` (units, then the root).

    ``partition`` must be ``refmoo.fsdp2_units(model, units, world_size)`` built
    on the unwrapped model (same names), ``units`` the submodule names.
    """

    def __init__(self, model: nn.Module, units: list[str], aggregator: Aggregator,
                 partition: Partition, num_languages: int, rank: int, world_size: int) -> None:
        from torch.distributed.fsdp import FSDPModule

        if partition.layout is None:
            raise ValueError("the partition must come from refmoo.fsdp2_units")
        spans = {s.name: s for s in flat_parameters(model)}
        self.aggregator = aggregator
        self.K = num_languages
        self.rank = rank
        self._k: int | None = None
        self.shards: dict[str, Tensor] = {}
        modules = dict(model.named_modules())
        by_name = {lay.name: b for b, lay in enumerate(partition.layout)}
        for unit in [ROOT, *units]:
            module = model if unit == ROOT else modules[unit]
            if not isinstance(module, FSDPModule):
                raise ValueError(f"{unit!r} is not a fully_shard unit")
            module.set_gradient_divide_factor(1.0)
            module.set_force_sum_reduction_for_comms(True)
            order = [lay for lay in partition.layout if lay.group == unit and lay.rank == 0]
            if not order:
                raise ValueError(f"unit {unit!r} has no parameters in the partition")
            positions, start = [], 0
            for piece in order[0].pieces:  # chunk 0 of every parameter is non-empty
                s = spans[piece.name]
                rows = s.shape[0]
                padded = -(-rows // world_size) * s.row_numel
                lo, hi = chunk_rows(rows, world_size, rank)
                positions.append(torch.arange(start, start + (hi - lo) * s.row_numel))
                start += padded
            bucket = by_name.get(f"{unit}@r{rank}")
            pos = torch.cat(positions)
            if bucket is not None and pos.numel() != partition.sizes[bucket]:
                raise ValueError(f"unit {unit!r}: shard layout does not match the partition")
            module.set_all_reduce_hook(self._make_hook(unit, bucket, pos, start))

    @contextmanager
    def language(self, k: int):
        self._k = k
        try:
            yield
        finally:
            self._k = None

    def backward(self, losses) -> None:
        for k, loss in enumerate(losses):
            with self.language(k):
                loss().backward()

    def _make_hook(self, unit: str, bucket: int | None, pos: Tensor, numel: int):
        def hook(reduce_output: Tensor) -> None:
            k = self._k
            if k is None:
                raise RuntimeError("backward ran outside `with moo.language(k):`")
            if reduce_output.numel() != numel:
                raise RuntimeError(f"unit {unit!r}: reduce-scatter output has "
                                   f"{reduce_output.numel()} elements, expected {numel}")
            if bucket is None:  # this rank's shard of the unit is all padding
                reduce_output.zero_()
                return
            p = pos.to(reduce_output.device)
            G = self.shards.get(unit)
            if G is None:
                G = self.shards[unit] = reduce_output.new_zeros(self.K, p.numel())
            G[k] = reduce_output[p]
            reduce_output.zero_()
            if k == self.K - 1:
                local = Partition.from_sizes([p.numel()])
                reduce_output[p] = bucketwise(self.aggregator, G, local, keys=[bucket])
        return hook
