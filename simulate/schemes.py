"""``--partition`` specs, mapped onto refmoo's partition builders.

========================  ==================================================
``single``                one bucket (full-vector MOO)
``chunks:N``              fixed chunks of N elements
``tensor``                one bucket per parameter tensor
``module[:DEPTH]``        one bucket per module (or per name prefix of DEPTH parts)
``ddp[:CAP_MB[:FIRST]]``  DDP's rebuilt buckets (default 25 MiB, first 1 MiB)
``zero[:SIZE]``           DeepSpeed ZeRO-2 IPG buckets of SIZE elements, cut at the
                          owner ranks' boundaries (owners as DeepSpeed's)
``fsdp2[:UNIT,...]``      FSDP2 (unit, rank) shards; UNITs are submodule names as
                          in ``model.named_modules()`` (e.g. ``transformer.h.0``),
                          default: the transformer blocks
========================  ==================================================

Every argument is checked here, in whatever process builds the partition
(the parent does so before spawning), with a one-line ValueError.

Builders that know the engine's own ownership (``zero``, ``fsdp2``) also
return each bucket's owner rank.
"""

from __future__ import annotations

from collections.abc import Callable

from torch import Tensor, nn

from refmoo import Partition, ddp_buckets, fsdp2_units, per_module, per_tensor, zero_buckets
from refmoo.partitions import flat_parameters, gradient_ready_order

from .workload import block_names


def _flat_dim(model: nn.Module) -> int:
    return flat_parameters(model)[-1].stop


def _number(spec: str, text: str, kind: type, low: float) -> float:
    """``text`` as ``kind``, at least ``low`` (``low = 0``: strictly positive)."""
    try:
        value = kind(text)
    except ValueError:
        what = "a whole number" if kind is int else "a number"
        raise ValueError(f"{spec}: {text!r} is not {what}") from None
    if not (value >= low and value > 0):
        raise ValueError(f"{spec}: {text} must be {'positive' if low == 0 else f'>= {low}'}")
    return value


def build_partition(spec: str, model: nn.Module, world_size: int,
                    probe: Callable[[], Tensor] | None = None
                    ) -> tuple[Partition, list[int] | None]:
    """The partition named by ``spec`` and, when the engine fixes it, each bucket's owner.

    ``probe`` is a loss whose backward shows the gradient-ready order, which DDP
    and ZeRO-2 fill their buckets in (default: reverse registration order).

    >>> import torch.nn as nn
    >>> build_partition("chunks:4", nn.Linear(3, 2), 2)[0].sizes
    [4, 4]
    >>> build_partition("fsdp2:0", nn.Sequential(nn.Linear(2, 2), nn.Linear(2, 1)), 2)[1]
    [0, 0, 1]
    """
    kind, _, arg = spec.partition(":")
    args = [a for a in arg.split(":") if a] if arg else []
    if kind == "single":
        return Partition.single(_flat_dim(model)), None
    if kind == "chunks":
        if len(args) != 1:
            raise ValueError("chunks needs a size: chunks:N")
        return Partition.chunks(_flat_dim(model), _number(spec, args[0], int, 1)), None
    if kind == "tensor":
        return per_tensor(model), None
    if kind == "module":
        depth = _number(spec, args[0], int, 1) if args else None
        return per_module(model, depth=depth), None
    ready = None if probe is None else gradient_ready_order(model, probe)
    if ready is not None and len(ready) != len(flat_parameters(model)):
        ready = None  # the probe misses some parameters: fall back to the default order
    if kind == "ddp":
        cap = _number(spec, args[0], float, 0) if args else 25.0
        first = _number(spec, args[1], float, 0) if len(args) > 1 else 1.0
        return ddp_buckets(model, cap, first, ready_order=ready), None
    if kind == "zero":
        size = int(_number(spec, args[0], float, 1)) if args else 500_000_000
        p = zero_buckets(model, size, world_size=world_size, ready_order=ready)
        return p, [lay.rank for lay in p.layout]
    if kind == "fsdp2":
        units = arg.split(",") if arg else block_names(model)
        if not units:
            raise ValueError("fsdp2 needs unit names (fsdp2:name,name): the model has no blocks")
        known = dict(model.named_modules())
        missing = [u for u in units if u not in known]
        if missing:
            examples = ", ".join(n for n in list(known)[1:8] if n)
            raise ValueError(f"{spec}: no submodule named {', '.join(map(repr, missing))}; "
                             f"UNITS are names from model.named_modules(), e.g. {examples}")
        p = fsdp2_units(model, units, world_size)
        return p, [lay.rank for lay in p.layout]
    raise ValueError(f"unknown partition {spec!r}; use single, chunks:N, tensor, module[:DEPTH], "
                     "ddp[:CAP_MB[:FIRST_MB]], zero[:SIZE] or fsdp2[:UNITS]")
