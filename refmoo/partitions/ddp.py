"""DDP's gradient buckets, as the reducer holds them from the second step on.

What torch's DDP does (``torch/nn/parallel/distributed.py`` and the C++
``Reducer``, torch 2.13):

- Step 0: with the default ``find_unused_parameters=False`` every parameter of
  one dtype goes into a single bucket (``Partition.single`` for a one-dtype
  model). Not what this module builds.
- After the first backward the reducer *rebuilds* its buckets from the order in
  which gradients became ready, with ``compute_bucket_assignment_by_size``
  (exposed as ``torch.distributed._compute_bucket_assignment_by_size``): whole
  tensors are appended, per dtype, to an open bucket, and the bucket closes as
  soon as its size in bytes *reaches* the current limit; the first bucket of
  each dtype uses the first-bucket limit, every later one ``bucket_cap_mb``.
  Parameters that expect sparse gradients (``nn.Embedding(sparse=True)``) get a
  bucket of their own. Buckets still open at the end are closed in the order
  their dtype first appeared (the C++ code walks a hash map there, so with
  several dtypes their relative order is unspecified; their contents are not).
- ``DDP(bucket_cap_mb=None)`` uses 25 MiB and a 1 MiB first bucket, the
  defaults here. ``DDP(bucket_cap_mb=X)`` uses X MiB for the first bucket too:
  mirror it with ``ddp_buckets(model, X, first_bucket_cap_mb=X)``.

:func:`ddp_buckets` reproduces the rebuilt assignment exactly when
``ready_order`` is the real gradient-ready order (see
:func:`~refmoo.partitions.gradient_ready_order`); by default it assumes reverse
registration order, which differs from the real one inside some modules (a
LayerNorm's weight is ready before its bias), so bucket contents can then
differ where a bucket boundary falls. Bucket b of the Partition is the b-th
bucket DDP reduces, and its columns are listed in DDP's buffer order.
Not reproduced: ``bucket_cap_mb_list``, ignored parameters, the step-0 bucket
with ``find_unused_parameters=True``.
"""

from __future__ import annotations

from collections.abc import Sequence

from torch import nn

from ._partition import Partition
from .flat import ParamSpan, flat_dim, flat_parameters, trainable_parameters
from .layout import BucketLayout, ParamPiece, partition_from_layout
from .ready_order import ordered_spans

MIB = 1024 * 1024


def _sparse_names(model: nn.Module) -> set[str]:
    # By identity: a tied weight is listed under its first name only.
    name_of = {id(p): n for n, p in trainable_parameters(model)}
    return {name_of[id(p)] for mod in model.modules()
            if isinstance(mod, (nn.Embedding, nn.EmbeddingBag)) and mod.sparse
            for p in mod.parameters(recurse=False) if id(p) in name_of}


def assign_by_size(spans: Sequence[ParamSpan], limits: Sequence[int],
                   sparse: set[str] = frozenset()) -> list[list[ParamSpan]]:
    """The c10d bucketing rule on tensors given in reduction order (see module doc)."""
    result: list[list[ParamSpan]] = []
    open_buckets: dict[object, list] = {}  # dtype -> [spans, bytes, limit index]
    for s in spans:
        if s.name in sparse:
            result.append([s])
            continue
        bucket = open_buckets.setdefault(s.dtype, [[], 0, 0])
        bucket[0].append(s)
        bucket[1] += s.numel * s.dtype.itemsize
        if bucket[1] >= limits[bucket[2]]:
            result.append(bucket[0])
            open_buckets[s.dtype] = [[], 0, min(bucket[2] + 1, len(limits) - 1)]
    result.extend(b[0] for b in open_buckets.values() if b[0])
    return result


def ddp_buckets(model: nn.Module, bucket_cap_mb: float = 25,
                first_bucket_cap_mb: float | None = 1, *,
                ready_order: Sequence[str] | None = None) -> Partition:
    """DDP's rebuilt buckets: whole tensors in gradient-ready order, capped in bytes.

    ``first_bucket_cap_mb=None`` means the same cap as every other bucket.
    ``ready_order`` lists every trainable parameter name in gradient-ready order
    (default: reverse registration order).

    >>> import torch.nn as nn
    >>> net = nn.Sequential(nn.Linear(256, 256), nn.Linear(256, 256), nn.Linear(256, 4))
    >>> p = ddp_buckets(net, bucket_cap_mb=0.25, first_bucket_cap_mb=0.25)
    >>> [lay.params for lay in p.layout]
    [('2.bias', '2.weight', '1.bias', '1.weight'), ('0.bias', '0.weight')]
    """
    if bucket_cap_mb <= 0 or (first_bucket_cap_mb is not None and first_bucket_cap_mb <= 0):
        raise ValueError("bucket caps must be positive")
    cap = int(bucket_cap_mb * MIB)
    first = cap if first_bucket_cap_mb is None else int(first_bucket_cap_mb * MIB)
    spans = flat_parameters(model)
    dim = flat_dim(spans)
    buckets = assign_by_size(ordered_spans(spans, ready_order), [first, cap], _sparse_names(model))
    layouts = []
    for b, members in enumerate(buckets):
        label = members[0].name if len(members) == 1 else f"{members[0].name}..{members[-1].name}"
        layouts.append(BucketLayout(f"ddp{b}({label})",
                                    tuple(ParamPiece.of(s) for s in members), group=f"ddp{b}"))
    return partition_from_layout(layouts, dim)
