"""FSDP2 (``fully_shard``) reduce-scatter shards: one bucket per (unit, rank).

What FSDP2 does (``torch/distributed/fsdp/_fully_shard``, torch 2.13):

- ``fully_shard(m)`` makes ``m`` a unit managing the parameters of every module
  reached from ``m`` without entering a module that already is a unit (units are
  applied bottom-up, the root last). Its parameters are ordered by a post-order
  walk of those modules: children before their parent, each module's own
  parameters in registration order.
- Each parameter is sharded on dim 0 like ``torch.chunk(p, W, dim=0)``: chunks
  of ``ceil(n0 / W)`` rows, so the last ranks may get fewer rows or none; FSDP2
  pads every shard to ``ceil(n0 / W)`` rows. 0-d parameters are rejected.
- The unit's gradients are reduce-scattered in one collective; rank r receives
  the concatenation, in unit order, of the (padded) chunk r of every
  parameter.

So bucket (unit, r) is the union of chunk r of every parameter of the unit, a
non-contiguous set of row blocks, listed in the order rank r receives them
(padding excluded). A (unit, rank) pair that holds no element (W larger than
every dim 0 of the unit) is dropped, not an empty bucket; ``layout[b].rank``
says which rank each bucket belongs to. Buckets are ordered by unit, in
``model.named_modules()`` order with the root unit ``"<root>"`` first, then by
rank. Not reproduced: ``shard_placement_fn`` (dims other than 0), HSDP meshes.
"""

from __future__ import annotations

from collections.abc import Sequence

from torch import nn

from ._partition import Partition
from .flat import ParamSpan, flat_dim, flat_parameters, trainable_parameters
from .layout import BucketLayout, ParamPiece, partition_from_layout

ROOT = "<root>"


def chunk_rows(n0: int, world_size: int, rank: int) -> tuple[int, int]:
    """Rows ``lo .. hi`` of ``torch.chunk(t, world_size, dim=0)[rank]`` for ``t.shape[0] == n0``
    (an empty range where torch.chunk returns fewer chunks)."""
    size = -(-n0 // world_size)
    return min(rank * size, n0), min((rank + 1) * size, n0)


def _unit_names(model: nn.Module, units) -> list[str]:
    modules = dict(model.named_modules())
    if isinstance(units, type) or (isinstance(units, tuple) and units
                                   and all(isinstance(u, type) for u in units)):
        names = [n for n, m in modules.items() if n and isinstance(m, units)]
        if not names:
            raise ValueError(f"no submodule of class {units} in the model")
        return names
    names = [str(u) for u in units]
    if "" in names:
        raise ValueError("the root module is always a unit; list only submodules")
    unknown = [n for n in names if n not in modules]
    if unknown:
        raise ValueError(f"no submodule named {unknown}")
    return [n for n in modules if n in set(names)]


def _managed_params(root: nn.Module, stop: set[int]) -> list[nn.Parameter]:
    """FSDP2's parameter order for a unit rooted at ``root``: post-order over the
    modules reached without entering another unit."""
    modules: list[nn.Module] = []
    seen: set[int] = set()

    def dfs(module: nn.Module) -> None:
        seen.add(id(module))
        for child in module.children():
            if id(child) not in seen and id(child) not in stop:
                dfs(child)
        modules.append(module)

    dfs(root)
    params, seen_params = [], set()
    for m in modules:
        for p in m.parameters(recurse=False):
            if id(p) not in seen_params:
                seen_params.add(id(p))
                params.append(p)
    return params


def fsdp2_units(model: nn.Module, units: Sequence[str] | type | tuple[type, ...],
                world_size: int = 1) -> Partition:
    """One bucket per (``fully_shard`` unit, rank): rank r's dim-0 chunk of every
    parameter of the unit.

    ``units`` are submodule names, or a module class (or tuple of classes) whose
    instances are all units. Parameters outside every unit form the root unit.

    >>> import torch.nn as nn
    >>> net = nn.Sequential(nn.Linear(2, 3), nn.Linear(3, 1))
    >>> p = fsdp2_units(net, ["0"], world_size=2)
    >>> p.names
    ['<root>@r0', '0@r0', '0@r1']
    >>> p.describe(0)   # the root unit: everything outside unit "0"
    [('1.weight', slice(9, 12, None)), ('1.bias', slice(12, 13, None))]
    >>> p.describe(2)   # rows 2..3 of 0.weight, row 2 of 0.bias
    [('0.weight', slice(4, 6, None)), ('0.bias', slice(8, 9, None))]
    """
    if world_size < 1:
        raise ValueError(f"world_size must be positive, got {world_size}")
    spans = flat_parameters(model)
    dim = flat_dim(spans)
    span_of: dict[int, ParamSpan] = {
        id(p): s for (_, p), s in zip(trainable_parameters(model), spans, strict=True)}
    modules = dict(model.named_modules())
    names = _unit_names(model, units)
    stop = {id(modules[n]) for n in names}
    layouts = []
    for unit in [ROOT, *names]:
        root = model if unit == ROOT else modules[unit]
        members = [span_of[id(p)] for p in _managed_params(root, stop)
                   if id(p) in span_of]
        for s in members:
            if not s.shape:
                raise ValueError(f"FSDP2 cannot shard the 0-d parameter {s.name!r} on dim 0")
        for r in range(world_size):
            pieces = []
            for s in members:
                lo, hi = chunk_rows(s.shape[0], world_size, r)
                pieces.append(ParamPiece.of(s, lo * s.row_numel, hi * s.row_numel))
            layouts.append(BucketLayout(f"{unit}@r{r}", tuple(pieces), rank=r, group=unit))
    return partition_from_layout(layouts, dim)
