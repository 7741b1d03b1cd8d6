"""The validated partition of the D parameter indices into buckets."""

from __future__ import annotations

import bisect
from collections.abc import Iterator, Sequence
from typing import TYPE_CHECKING

import torch
from torch import Tensor

if TYPE_CHECKING:
    from .layout import BucketLayout


class PartitionError(ValueError):
    """A set of buckets that is not a partition of 0..D-1."""


def _indices(bucket, b: int) -> Tensor:
    """Bucket ``b`` as a 1-D long tensor of column indices.

    Boolean masks are refused: ``torch.as_tensor([True, False], dtype=torch.long)``
    is ``[1, 0]``, i.e. the mask would silently be read as the indices 1 and 0.
    """
    raw = torch.as_tensor(list(bucket) if isinstance(bucket, range) else bucket)
    if raw.dtype == torch.bool:
        raise PartitionError(
            f"bucket {b} is a boolean mask; pass column indices, e.g. mask.nonzero().reshape(-1)")
    return raw.to(torch.long).reshape(-1)


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
        index_sets = [_indices(b, i) for i, b in enumerate(buckets)]
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


# -- column tiling: how bucket-level passes walk G --------------------------------
#
# Every bucket is a union of runs of consecutive columns, so bucket-level Grams
# and the weighted combination can be computed on views of G. Small skinny
# matrix products are what BLAS does fastest on CPU (one K×D GEMM runs near one
# core's dot-product speed; a batch of K×c tiles runs on every core), so the
# columns are cut into equal tiles of ``width`` columns, each a view, and one
# batched product covers them all. The few tiles straddling a run boundary
# ("mixed") are handled column by column (per-column outer products and weights).

# Cost model for choosing the width, in units of "one column of G read once":
# a batched tile costs a fixed overhead of about TILE_OVERHEAD columns (measured
# on 2 x86 cores: bmm over [T, 4, c] tiles runs at 24-29 ms per 35.6M columns
# for c >= 256 and 4x slower at c = 64); a column of a mixed tile costs MIXED_COST
# (a gather and K² float64 outer products, for K around 4).
TILE_OVERHEAD = 100
MIXED_COST = 16
MAX_WIDTH = 16_384


class ColumnTiling:
    """Columns ``0..D-1`` cut into ``full`` tiles of ``width`` columns plus a tail.

    - Tile t covers columns ``[t·width, (t+1)·width)``. ``tile_bucket[t]`` is its
      bucket when the whole tile lies in one bucket, else -1 (a *mixed* tile).
    - The last ``tail = D mod width`` columns form a padded pseudo-tile.
    - ``mixed`` lists the mixed full tiles; ``mixed_bucket`` ``[n, width]`` is the
      bucket of every column of those tiles followed by the tail pseudo-tile (if
      ``tail > 0``), with ``buckets`` (one past the last bucket) on its padding.
    - ``identity``: tile t is bucket t for every t and nothing is mixed (equal
      contiguous chunks of exactly ``width``), so per-tile results are per-bucket.
    - ``runs``: ``[R, 3]`` rows ``(start, stop, bucket)`` of the maximal runs of
      one bucket, in column order (for per-bucket work on views).
    - ``bucket_sizes``: columns per bucket (float64, for scale thresholds).
    - ``mixed_pieces``: ``(start, stop, bucket)`` of every run of one bucket inside
      the mixed tiles and the tail, in column order (Python ints, computed once).
    """

    __slots__ = ("width", "full", "tail", "tile_bucket", "mixed", "mixed_bucket",
                 "identity", "runs", "bucket_sizes", "_devices", "_pieces")

    def __init__(self, bucket_of: Tensor, runs: Tensor, width: int, buckets: int) -> None:
        dim = bucket_of.numel()
        self.width = width
        self.full = dim // width
        self.tail = dim - self.full * width
        self.runs = runs
        self.bucket_sizes = torch.zeros(buckets, dtype=torch.float64).index_add_(
            0, runs[:, 2], (runs[:, 1] - runs[:, 0]).to(torch.float64))
        body = bucket_of[:self.full * width].view(self.full, width)
        # A tile lies in one bucket exactly when no run starts strictly inside it.
        starts = runs[1:, 0]
        inner = starts[starts % width != 0] // width
        uniform = torch.ones(self.full, dtype=torch.bool)
        uniform[inner[inner < self.full]] = False
        first = body[:, 0]
        self.tile_bucket = torch.where(uniform, first, torch.full_like(first, -1))
        self.mixed = (~uniform).nonzero().reshape(-1)
        rows = body[self.mixed]
        if self.tail:
            pad = torch.full((1, width), buckets, dtype=torch.long)
            pad[0, :self.tail] = bucket_of[self.full * width:]
            rows = torch.cat([rows, pad])
        self.mixed_bucket = rows
        self.identity = (self.full == buckets and self.tail == 0 and self.mixed.numel() == 0
                         and bool(torch.equal(self.tile_bucket, torch.arange(buckets))))
        self._devices: dict[torch.device, tuple[Tensor, ...]] = {}
        self._pieces: list[tuple[int, int, int]] | None = None

    @property
    def mixed_pieces(self) -> list[tuple[int, int, int]]:
        if self._pieces is None:
            w, T = self.width, self.full
            regions = [(t * w, (t + 1) * w) for t in self.mixed.tolist()]
            if self.tail:
                regions.append((T * w, T * w + self.tail))
            runs = self.runs.tolist()
            starts = [r[0] for r in runs]
            pieces = []
            for lo, hi in regions:
                i = bisect.bisect_right(starts, lo) - 1
                while i < len(runs) and runs[i][0] < hi:
                    a, b = max(lo, runs[i][0]), min(hi, runs[i][1])
                    if a < b:
                        pieces.append((a, b, runs[i][2]))
                    i += 1
            self._pieces = pieces
        return self._pieces

    def on(self, device: torch.device) -> tuple[Tensor, Tensor, Tensor]:
        """``(tile_bucket, mixed, mixed_bucket)`` on ``device`` (copied once)."""
        device = torch.device(device)
        if device not in self._devices:
            self._devices[device] = tuple(t.to(device) for t in (
                self.tile_bucket, self.mixed, self.mixed_bucket))
        return self._devices[device]

    def __repr__(self) -> str:
        return (f"ColumnTiling(width={self.width}, full={self.full}, tail={self.tail}, "
                f"mixed={self.mixed_bucket.shape[0]})")


def column_runs(bucket_of: Tensor) -> Tensor:
    """``[R, 3]`` rows ``(start, stop, bucket)``: the maximal runs of one bucket."""
    dim = bucket_of.numel()
    starts = torch.cat([torch.zeros(1, dtype=torch.long),
                        (bucket_of[1:] != bucket_of[:-1]).nonzero().reshape(-1) + 1])
    stops = torch.cat([starts[1:], torch.tensor([dim])])
    return torch.stack([starts, stops, bucket_of[starts]], 1)


def _gcd(values: Tensor) -> int:
    """Greatest common divisor of a 1-D tensor of positive integers (pairwise tree)."""
    while values.numel() > 1:
        if values.numel() % 2:
            values = torch.cat([values, values[-1:]])
        values = torch.gcd(values[0::2], values[1::2])
    return int(values[0])


def _largest_divisor(g: int, limit: int) -> int:
    """The largest divisor of g that is at most ``limit`` (1 if none is larger)."""
    if g <= limit:
        return g
    k = torch.arange(-(-g // limit), g + 1)
    return g // int(k[g % k == 0][0])


def tiling_cost(starts: Tensor, dim: int, width: int) -> float:
    """Modelled cost (columns read) of walking ``dim`` columns in tiles of ``width``
    when runs start at ``starts`` (excluding 0): see the constants above."""
    full = dim // width
    inner = starts[starts % width != 0] // width
    inner = torch.where(inner < full, inner, torch.full_like(inner, full))
    mixed = torch.zeros(full + 1, dtype=torch.bool)
    mixed[inner] = True
    if dim % width:
        mixed[full] = True
    return dim + TILE_OVERHEAD * full + MIXED_COST * int(mixed.sum()) * width


def choose_width(runs: Tensor, dim: int) -> int:
    """The tile width with the least modelled cost among powers of two and the
    largest divisor (at most MAX_WIDTH) of the gcd of the run starts, which tiles
    every run exactly (chunk partitions, parameters of aligned shapes)."""
    starts = runs[1:, 0]
    g = _gcd(starts) if starts.numel() else dim
    candidates = {_largest_divisor(g, MAX_WIDTH)}
    candidates.update(1 << k for k in range(4, 15) if (1 << k) <= max(dim, 16))
    return min(sorted(candidates), key=lambda c: tiling_cost(starts, dim, c))


def column_tiling(partition: Partition, width: int | None = None) -> ColumnTiling:
    """The tiling bucket-level passes use for ``partition`` (cached on it).

    ``width`` forces a tile width (tests use it to drive every code path)."""
    cached = getattr(partition, "_column_tiling", None)
    if width is None and cached is not None:
        return cached
    runs = getattr(partition, "_column_runs", None)
    if runs is None:
        runs = column_runs(partition.bucket_of)
        partition._column_runs = runs
    chosen = choose_width(runs, partition.dim) if width is None else int(width)
    if chosen < 1:
        raise PartitionError(f"tile width must be positive, got {chosen}")
    tiling = ColumnTiling(partition.bucket_of, runs, chosen, len(partition))
    if width is None:
        partition._column_tiling = tiling
    return tiling


def equal_chunk_width(partition: Partition) -> int | None:
    """w if bucket b is exactly the columns ``[b·w, min((b+1)·w, D))`` for every b
    (``Partition.chunks(D, w)``: equal chunks in column order, the last one possibly
    shorter), else None; cached on the partition."""
    cached = getattr(partition, "_equal_chunk_width", False)
    if cached is not False:
        return cached
    runs = column_tiling(partition).runs
    M, D = len(partition), partition.dim
    width = int(runs[0, 1] - runs[0, 0]) if M else 0
    buckets = torch.arange(M)
    equal = (width > 0 and (M - 1) * width < D <= M * width and runs.shape[0] == M
             and bool((runs[:, 2] == buckets).all())
             and bool((runs[:, 0] == buckets * width).all()))
    partition._equal_chunk_width = width if equal else None
    return partition._equal_chunk_width
