"""DeepSpeed ZeRO-1/2 gradient buckets, optionally sliced by owner rank.

What DeepSpeed does (``deepspeed/runtime/zero/stage_1_and_2.py``, 0.1x):

- The trainable parameters of an optimizer group are flattened, in group
  order, into one buffer padded at the end to a multiple of ``2·W`` elements
  (``nccl_start_alignment_factor = 2``). Rank r owns the r-th of W equal,
  contiguous partitions of it. With one group built from ``model.parameters()``
  the flat buffer is refmoo's flat vector plus the padding.
- Gradients are collected into an IPG bucket of at most ``reduce_bucket_size``
  *elements*: before appending a parameter, if ``elements + numel`` would exceed
  the size, the open bucket is reduced first; a parameter larger than the size
  thus travels alone. ZeRO-2 appends from its gradient hooks, i.e. in
  gradient-ready order (about reverse registration order); ZeRO-1 without
  ``overlap_comm`` appends at the accumulation boundary walking the group in
  registration order. Whatever is left is reduced after backward.
- Each reduced bucket is cut at the rank-partition boundaries and each rank
  keeps its own part (``average_tensor``). So with ``world_size`` the buckets
  here are the non-empty (IPG bucket, owner rank) intersections.

The columns of every bucket are listed in the IPG buffer's order. Not
reproduced: several parameter groups or dtypes (flattened and bucketed
separately by DeepSpeed), ``round_robin_gradients``, MoE expert groups.
"""

from __future__ import annotations

from collections.abc import Sequence

from torch import nn

from ._partition import Partition
from .flat import ParamSpan, flat_dim, flat_parameters
from .layout import BucketLayout, ParamPiece, partition_from_layout
from .ready_order import ordered_spans

ALIGNMENT_FACTOR = 2


def ipg_buckets(spans: Sequence[ParamSpan], reduce_bucket_size: int) -> list[list[ParamSpan]]:
    """Whole parameters, in the given order, in buckets of at most ``reduce_bucket_size``
    elements (a larger parameter alone)."""
    buckets: list[list[ParamSpan]] = [[]]
    elements = 0
    for s in spans:
        if buckets[-1] and elements + s.numel > reduce_bucket_size:
            buckets.append([])
            elements = 0
        buckets[-1].append(s)
        elements += s.numel
    return buckets


def rank_bounds(dim: int, world_size: int) -> list[tuple[int, int]]:
    """Flat columns each rank owns: equal partitions of the padded buffer, cut at D."""
    align = ALIGNMENT_FACTOR * world_size
    part = -(-dim // align) * align // world_size
    return [(min(r * part, dim), min((r + 1) * part, dim)) for r in range(world_size)]


def zero_buckets(model: nn.Module, reduce_bucket_size: int = 500_000_000,
                 world_size: int | None = None, *, stage: int = 2,
                 ready_order: Sequence[str] | None = None) -> Partition:
    """ZeRO IPG buckets; with ``world_size``, each cut into its owner ranks' slices.

    The fill order is ``ready_order`` if given, else reverse registration order
    for ``stage=2`` and registration order for ``stage=1``.

    >>> import torch.nn as nn
    >>> net = nn.Sequential(nn.Linear(4, 4), nn.Linear(4, 3))   # D = 35
    >>> zero_buckets(net, reduce_bucket_size=16).names
    ['zero0(1.bias..1.weight)', 'zero1(0.bias)', 'zero2(0.weight)']
    >>> p = zero_buckets(net, reduce_bucket_size=16, world_size=2)   # ranks own [0,18), [18,35)
    >>> [(lay.name, lay.numel) for lay in p.layout]
    [('zero0.r1', 15), ('zero1.r0', 2), ('zero1.r1', 2), ('zero2.r0', 16)]
    """
    if stage not in (1, 2):
        raise ValueError(f"stage must be 1 or 2, got {stage}")
    if reduce_bucket_size < 1:
        raise ValueError(f"reduce_bucket_size must be positive, got {reduce_bucket_size}")
    if world_size is not None and world_size < 1:
        raise ValueError(f"world_size must be positive, got {world_size}")
    spans = flat_parameters(model)
    dim = flat_dim(spans)
    if ready_order is None and stage == 1:
        ordered = spans
    else:
        ordered = ordered_spans(spans, ready_order)
    layouts = []
    for b, members in enumerate(ipg_buckets(ordered, int(reduce_bucket_size))):
        group = f"zero{b}"
        if world_size is None:
            label = members[0].name if len(members) == 1 else \
                f"{members[0].name}..{members[-1].name}"
            layouts.append(BucketLayout(f"{group}({label})",
                                        tuple(ParamPiece.of(s) for s in members), group=group))
            continue
        for r, (lo, hi) in enumerate(rank_bounds(dim, world_size)):
            pieces = tuple(ParamPiece(s.name, max(s.offset, lo), min(s.stop, hi), s.offset)
                           for s in members if max(s.offset, lo) < min(s.stop, hi))
            layouts.append(BucketLayout(f"{group}.r{r}", pieces, rank=r, group=group))
    return partition_from_layout(layouts, dim)
