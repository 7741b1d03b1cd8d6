"""What a model-based bucket holds: slices of named parameters, in buffer order.

Every engine bucket (a DDP bucket, a ZeRO IPG bucket or its slice owned by one
rank, an FSDP2 rank shard of a unit) is a sequence of contiguous pieces of
individual parameters: whole tensors, or runs of dim-0 rows, which are
contiguous in the row-major flat vector. A :class:`BucketLayout` lists these
pieces in the order the engine lays them out in its communication buffer, and
the bucket's columns in the :class:`Partition` follow that same order, so
``G[:, partition.indices(b)]`` is exactly the engine's bucket buffer.

>>> lay = BucketLayout("b0", (ParamPiece("w", 4, 10, 4), ParamPiece("b", 0, 2, 0)))
>>> lay.numel, lay.params, lay.pieces[0].local
(8, ('w', 'b'), slice(0, 6, None))
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, replace

import torch

from ._partition import Partition
from .flat import ParamSpan


@dataclass(frozen=True)
class ParamPiece:
    """Columns ``start .. stop`` of the flat vector, all inside parameter ``name``
    whose own first column is ``param_offset``."""

    name: str
    start: int
    stop: int
    param_offset: int

    @classmethod
    def of(cls, span: ParamSpan, lo: int = 0, hi: int | None = None) -> ParamPiece:
        """Elements ``lo .. hi`` (default: all) of the parameter ``span`` describes."""
        hi = span.numel if hi is None else hi
        return cls(span.name, span.offset + lo, span.offset + hi, span.offset)

    @property
    def numel(self) -> int:
        return self.stop - self.start

    @property
    def columns(self) -> slice:
        """The piece in flat-vector coordinates (columns of G)."""
        return slice(self.start, self.stop)

    @property
    def local(self) -> slice:
        """The piece in the parameter's own flattened coordinates."""
        return slice(self.start - self.param_offset, self.stop - self.param_offset)


@dataclass(frozen=True)
class BucketLayout:
    """One bucket: its name, its pieces in buffer order, and for sharded engines the
    rank that owns it and the engine bucket or unit (``group``) it was cut from."""

    name: str
    pieces: tuple[ParamPiece, ...]
    rank: int | None = None
    group: str | None = None

    @property
    def numel(self) -> int:
        return sum(p.numel for p in self.pieces)

    @property
    def params(self) -> tuple[str, ...]:
        """Names of the parameters this bucket touches, in buffer order, without repeats."""
        return tuple(dict.fromkeys(p.name for p in self.pieces))

    def columns(self) -> torch.Tensor:
        """The bucket's flat column indices in buffer order."""
        if not self.pieces:
            return torch.empty(0, dtype=torch.long)
        return torch.cat([torch.arange(p.start, p.stop) for p in self.pieces])


def partition_from_layout(layouts: Sequence[BucketLayout], dim: int) -> Partition:
    """The validated :class:`Partition` whose buckets are ``layouts``' columns.

    Buckets that hold no element (a rank whose dim-0 chunks are all empty, a
    parameter with zero elements) are dropped: a bucket that carries no gradient
    has nothing to aggregate, and a Partition bucket must be non-empty.
    """
    kept = [replace(lay, pieces=tuple(p for p in lay.pieces if p.numel > 0))
            for lay in layouts if lay.numel > 0]
    if not kept:
        raise ValueError("no bucket holds any parameter element")
    return Partition([lay.columns() for lay in kept], dim=dim, layout=kept)
