"""The validated partition of the D parameter indices into buckets."""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from typing import TYPE_CHECKING

import torch
from torch import Tensor

if TYPE_CHECKING:
    from .layout import BucketLayout


class PartitionError(ValueError):
    """A set of buckets that is not a partition of 0..D-1."""


class Partition:
    """Disjoint, non-empty buckets that together cover the indices ``0..D-1``.

    Buckets may be arbitrary index sets (an FSDP2 rank shard is a union of row
    chunks), so the partition stores the concatenated bucket indices
    (:attr:`order`) and, for every column, the bucket that holds it
    (:attr:`bucket_of`).

    >>> p = Partition.from_sizes([2, 3])
    >>> p.sizes, p.dim, p.is_contiguous
    ([2, 3], 5, True)
    >>> Partition([[0, 2], [1]]).bucket_of.tolist()
    [0, 1, 0]

    Partitions built from a model (:mod:`refmoo.partitions`) also carry a
    :attr:`layout`: for every bucket, the parameter slices it holds, so that
    a bucket can be traced back to exact parameters with :meth:`describe`.
    """

    def __init__(
        self,
        buckets: Sequence[Sequence[int] | Tensor | range],
        dim: int | None = None,
        names: Sequence[str] | None = None,
        layout: Sequence[BucketLayout] | None = None,
    ) -> None:
        if len(buckets) == 0:
            raise PartitionError("a partition needs at least one bucket")
        index_sets = [torch.as_tensor(list(b) if isinstance(b, range) else b, dtype=torch.long)
                      .reshape(-1) for b in buckets]
        for b, idx in enumerate(index_sets):
            if idx.numel() == 0:
                raise PartitionError(f"bucket {b} is empty")
        order = torch.cat(index_sets)
        if dim is None:
            dim = int(order.max()) + 1
        if int(order.min()) < 0 or int(order.max()) >= dim:
            raise PartitionError(
                f"bucket indices must lie in 0..{dim - 1}, got range "
                f"[{int(order.min())}, {int(order.max())}]")
        sizes = [int(idx.numel()) for idx in index_sets]
        bucket_of = torch.full((dim,), -1, dtype=torch.long)
        counts = torch.bincount(order, minlength=dim)
        if bool((counts > 1).any()):
            col = int((counts > 1).nonzero()[0])
            owners = [b for b, idx in enumerate(index_sets) if bool((idx == col).any())]
            raise PartitionError(f"buckets overlap: index {col} is in buckets {owners}")
        if bool((counts == 0).any()):
            missing = (counts == 0).nonzero().reshape(-1)
            raise PartitionError(
                f"buckets do not cover 0..{dim - 1}: {missing.numel()} indices missing, "
                f"first {missing[:5].tolist()}")
        bucket_of[order] = torch.repeat_interleave(torch.arange(len(sizes)), torch.tensor(sizes))
        if names is None and layout is not None:
            names = [lay.name for lay in layout]
        if names is None:
            names = [f"bucket{b}" for b in range(len(sizes))]
        elif len(names) != len(sizes):
            raise PartitionError(f"{len(names)} names given for {len(sizes)} buckets")
        if layout is not None:
            layout = tuple(layout)
            if [lay.numel for lay in layout] != sizes:
                raise PartitionError(
                    f"layout sizes {[lay.numel for lay in layout][:6]} do not match the "
                    f"bucket sizes {sizes[:6]}")
        self._layout = layout
        self._order = order
        self._sizes = sizes
        self._bucket_of = bucket_of
        self._names = [str(n) for n in names]
        self._contiguous = bool(torch.equal(order, torch.arange(dim)))

    # -- constructors -----------------------------------------------------
    @classmethod
    def from_sizes(cls, sizes: Sequence[int], names: Sequence[str] | None = None) -> Partition:
        """Contiguous buckets ``[0, s0), [s0, s0+s1), ...``."""
        sizes = [int(s) for s in sizes]
        for b, s in enumerate(sizes):
            if s <= 0:
                raise PartitionError(f"bucket {b} is empty (size {s})")
        bounds = [0]
        for s in sizes:
            bounds.append(bounds[-1] + s)
        return cls([range(a, b) for a, b in zip(bounds[:-1], bounds[1:], strict=True)],
                   dim=bounds[-1], names=names)

    @classmethod
    def single(cls, dim: int) -> Partition:
        """The trivial partition: one bucket, i.e. full-vector MOO."""
        return cls.from_sizes([dim], names=["global"])

    @classmethod
    def chunks(cls, dim: int, size: int) -> Partition:
        """Fixed-size contiguous chunks; the last one holds the remainder."""
        if size <= 0:
            raise PartitionError(f"chunk size must be positive, got {size}")
        if dim <= 0:
            raise PartitionError(f"dimension must be positive, got {dim}")
        sizes = [size] * (dim // size) + ([dim % size] if dim % size else [])
        return cls.from_sizes(sizes)

    @classmethod
    def singletons(cls, dim: int) -> Partition:
        """One bucket per coordinate: the finest partition."""
        return cls.from_sizes([1] * dim)

    # -- views ------------------------------------------------------------
    @property
    def dim(self) -> int:
        return self._bucket_of.numel()

    @property
    def sizes(self) -> list[int]:
        return list(self._sizes)

    @property
    def names(self) -> list[str]:
        return list(self._names)

    @property
    def layout(self) -> tuple[BucketLayout, ...] | None:
        """Per bucket, the parameter slices it holds (None unless built from a model)."""
        return self._layout

    def describe(self, b: int) -> list[tuple[str, slice]]:
        """``(parameter name, flat column slice)`` for every piece of bucket ``b``,
        in the order the bucket lists its columns."""
        if self.layout is None:
            raise PartitionError(
                "this partition was not built from a model, so its buckets carry no "
                "parameter names; use a builder from refmoo.partitions")
        return [(piece.name, piece.columns) for piece in self.layout[b].pieces]

    @property
    def order(self) -> Tensor:
        """Bucket indices concatenated in bucket order (a permutation of 0..D-1)."""
        return self._order

    @property
    def bucket_of(self) -> Tensor:
        """``bucket_of[i]`` is the bucket that holds column ``i``."""
        return self._bucket_of

    @property
    def is_contiguous(self) -> bool:
        """True when the buckets are consecutive ranges in column order."""
        return self._contiguous

    def indices(self, b: int) -> Tensor:
        start = sum(self._sizes[:b])
        return self._order[start:start + self._sizes[b]]

    def __len__(self) -> int:
        return len(self._sizes)

    def __iter__(self) -> Iterator[Tensor]:
        return iter(torch.split(self._order, self._sizes))

    def split(self, G: Tensor) -> list[Tensor]:
        """The column blocks ``G^b`` in bucket order (copies unless contiguous)."""
        self.check_columns(G)
        if self._contiguous:
            return list(torch.split(G, self._sizes, dim=-1))
        return [G[..., idx] for idx in self]

    def check_columns(self, G: Tensor) -> None:
        if G.shape[-1] != self.dim:
            raise PartitionError(
                f"gradient has {G.shape[-1]} columns but the partition covers {self.dim}")

    def refines(self, other: Partition) -> bool:
        """True when every bucket of ``self`` lies inside one bucket of ``other``."""
        if other.dim != self.dim:
            return False
        parent = other.bucket_of[self._order]
        sizes = torch.tensor(self._sizes)
        first = parent[torch.cumsum(sizes, 0) - sizes]
        return bool(torch.equal(parent, torch.repeat_interleave(first, sizes)))

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, Partition):
            return NotImplemented
        return self._sizes == other._sizes and torch.equal(self._order, other._order)

    def __hash__(self) -> int:
        return hash((tuple(self._sizes), self.dim))

    def __repr__(self) -> str:
        shown = self._sizes[:6]
        more = ", ..." if len(self._sizes) > 6 else ""
        return (f"Partition(dim={self.dim}, buckets={len(self)}, "
                f"sizes=[{', '.join(map(str, shown))}{more}])")


class SizeGroup:
    """Buckets of one size, stacked as a ``[n, size]`` block of the permuted columns.

    Bucket-level work runs once per group instead of once per bucket; groups
    are few in practice (equal chunks plus a remainder, a handful of distinct
    tensor shapes per model).
    """

    __slots__ = ("size", "buckets", "starts", "consecutive")

    def __init__(self, size: int, buckets: Tensor, starts: Tensor) -> None:
        self.size = size
        self.buckets = buckets
        self.starts = starts
        n = buckets.numel()
        self.consecutive = bool(torch.equal(starts, starts[0] + size * torch.arange(n)))

    def columns(self) -> Tensor:
        """Positions in :attr:`Partition.order` of this group's entries, ``[n, size]``."""
        return self.starts.unsqueeze(1) + torch.arange(self.size)


def size_groups(partition: Partition) -> list[SizeGroup]:
    cached = getattr(partition, "_size_groups", None)
    if cached is not None:
        return cached
    sizes = torch.tensor(partition.sizes)
    starts = torch.cumsum(sizes, 0) - sizes
    groups = []
    for s in torch.unique(sizes).tolist():
        members = (sizes == s).nonzero().reshape(-1)
        groups.append(SizeGroup(int(s), members, starts[members]))
    partition._size_groups = groups
    return groups
