r"""Bucket-level MOO: :math:`A_P(G) = \mathrm{concat}_b\, A(G^b)`.

For a Gram-based aggregator :math:`A(G) = w(GG^\top)^\top G`, so on bucket b

.. math:: A_P(G)\big|_{B_b} = w(Q_b)^\top G^b, \qquad
          Q_b = G^b G^{b\top} = \sum_{t \subseteq B_b} G^t G^{t\top},

where t runs over pieces of consecutive columns. ``bucketwise`` therefore costs
one read of G for the Grams, one batched solve for all buckets, and one read of
G plus one write of the D-vector for the combination. Both passes work on views
of G: the columns are cut into equal tiles (:func:`column_tiling`), one batched
product covers every tile that lies in a single bucket, and the few tiles that
straddle a bucket boundary are taken column by column. No bucket is
gathered into a copy, whatever the order in which the partition lists its
columns (reverse registration order, owner-rank slices, FSDP2 row chunks).

Scale. A bucket's Gram is formed in G's dtype, so it overflows when
:math:`\max|g| \gtrsim \sqrt{\text{max}/n}` and loses its entries to underflow
when :math:`\max|g| \lesssim \sqrt{\text{tiny}}`. The diagonal tells which
buckets are affected at no extra cost: with :math:`m_b = \max_k Q_{b,kk}` and
:math:`n_b` columns, a bucket is *in range* when

.. math:: n_b\,\text{tiny}/u \;\le\; m_b \;\le\; u\cdot\text{max}

(u the unit roundoff: underflow then perturbs Q_b by at most
:math:`n_b u\,\text{tiny} \le u^2 m_b`, far below rounding, and nothing
overflowed). Only the other buckets are read again, scaled by an exact power of
two :math:`2^{-e_b}` with float64 products (then :math:`Q_b = 4^{e_b}\hat Q_b`, and
:math:`\hat Q_b` is handed to the solver in G's dtype like every other Gram). The
aggregators of this package scale exactly with G, :math:`A(cG) = c^p A(G)` (p = 1;
p = 0 for Nash-MTL), so :math:`w(4^{e}\hat Q) = 2^{e(p-1)} w(\hat Q)`; p is read off
the aggregator by one exact power-of-two step, :math:`w(4\hat Q) = 2^{p-1}w(\hat Q)`.

Rows of very different norms. The bound above is on the largest row; a row far
below it can still lose its squares to underflow (float32 rows about 1e-19 apart,
float64 entries below 1e-154) and pass for a zero row. Every row is checked
against :func:`refmoo._scale.rows_in_range` from the same diagonal; the rows that
fail are read (a zero row, a language absent from the bucket, is common and needs
nothing), and a bucket with a nonzero failing row is rescaled like the others. A
float32 bucket whose rows a float32 Gram still cannot hold keeps its float64 Gram
and float64 weights (``wide``), rounded to float32 only where they fit
(:func:`refmoo._scale.weights_fit`); rows more than about 1e-146 apart are refused.
"""

from __future__ import annotations

import math
from collections.abc import Iterator, Sequence

import torch
from torch import Tensor

from . import fused_mgda
from ._checks import GradientError, check_finite, check_matrix, locate_non_finite
from ._scale import RELATIVE_FLOOR_EXPONENT, rows_in_range, rows_too_far_apart, weights_fit
from .aggregators._base import Aggregator, GramAggregator
from .aggregators.mean import Mean
from .aggregators.sum import Sum
from .partitions._partition import ColumnTiling, Partition, column_tiling, equal_chunk_width

# Elements of the per-tile Gram batch materialised at once ([slab, K, K]): bounds
# memory when tiles are tiny (fine partitions) without costing a visible loop.
GRAM_SLAB_ELEMENTS = 1 << 22
# Elements of G gathered at once when recomputing out-of-range buckets.
RESCUE_SLAB_ELEMENTS = 1 << 24
# Up to this many pieces of buckets in mixed tiles (runs cut by tile edges), each is
# one product on a view of G (a few µs each; the 348 of fsdp2_units(world_size=4) on
# the benchmark's model took half the time of the per-column products); beyond, the
# per-column products, batched, cost less than a Python loop.
MAX_PIECES = 4096


# -- views of G ----------------------------------------------------------------------

def _row_major(G: Tensor) -> Tensor:
    """G with unit column stride, so that column ranges are views (copies only a
    transposed or otherwise strided input)."""
    return G if G.stride(-1) == 1 else G.contiguous()


def _tiles(G: Tensor, tiling: ColumnTiling) -> Tensor:
    """The full tiles of G as a ``[T, K, width]`` view (tile t = columns t·w .. (t+1)·w)."""
    K, c, T = G.shape[0], tiling.width, tiling.full
    return G[:, :T * c].view(K, T, c).transpose(0, 1)


def _mixed_rows(G: Tensor, tiling: ColumnTiling, mixed: Tensor) -> Tensor:
    """The mixed tiles, then the zero-padded tail, as a ``[n, K, width]`` copy
    (a few tiles: one per bucket boundary that does not fall on a tile edge)."""
    K, c, T = G.shape[0], tiling.width, tiling.full
    rows = torch.zeros(mixed.numel() + (tiling.tail > 0), K, c, dtype=G.dtype, device=G.device)
    if mixed.numel():
        rows[:mixed.numel()] = _tiles(G, tiling)[mixed]
    if tiling.tail:
        rows[-1, :, :tiling.tail] = G[:, T * c:]
    return rows


def _ranges(n: int, step: int) -> Iterator[slice]:
    """Slices of ``0..n`` of ``step`` items (at least one)."""
    step = max(step, 1)
    for lo in range(0, n, step):
        yield slice(lo, min(lo + step, n))


# -- the two passes over G -----------------------------------------------------------

def _accumulate_grams(G: Tensor, tiling: ColumnTiling, buckets: int, *,
                      select: Tensor | None = None, exponent: Tensor | None = None) -> Tensor:
    r"""float64 ``[buckets, K, K]``: :math:`\sum_t X_t X_t^\top` over the tiles of every
    bucket plus, over its columns in mixed tiles, one such product per piece (up to
    ``MAX_PIECES`` pieces) or :math:`\sum_j x_j x_j^\top` in float64, where
    :math:`X_t = G^t` in G's dtype, or, with ``select`` (bool per bucket), only for
    the selected buckets and with :math:`X_t = 2^{-e_b} G^t` in float64
    (``exponent`` = e per bucket, default 0; mixed columns by their products).

    Per-tile Grams and per-column products are summed in float64, so a bucket of
    T tiles adds no :math:`O(T u)` accumulation error of G's dtype. Row
    ``buckets`` of the internal buffer absorbs mixed tiles and padding.
    """
    K = G.shape[0]
    tile_bucket, mixed, mixed_bucket = tiling.on(G.device)
    Q = torch.zeros(buckets + 1, K, K, dtype=torch.float64, device=G.device)
    tiles = _tiles(G, tiling)
    target = torch.where(tile_bucket >= 0, tile_bucket, buckets)

    def prepare(X: Tensor, owner: Tensor) -> Tensor:
        """X (rows ``[n, K, c]``) in float64, scaled by 2^-e of each tile's or column's bucket."""
        X = X.to(torch.float64)
        if select is None or exponent is None:
            return X
        e = torch.cat([exponent, exponent.new_zeros(1)])[owner]  # padding: bucket M
        return _scale_by_power_of_two(X, -(e.view(-1, 1, 1) if e.dim() == 1 else e.unsqueeze(1)))

    if select is None:
        for r in _ranges(tiling.full, GRAM_SLAB_ELEMENTS // (K * K)):
            P = torch.bmm(tiles[r], tiles[r].transpose(1, 2)).to(torch.float64)
            if tiling.identity:
                Q[r] = P  # tile t is bucket t: nothing to sum
            else:
                Q.index_add_(0, target[r], P)
    else:
        chosen = (select[tile_bucket.clamp(min=0)] & (tile_bucket >= 0)).nonzero().reshape(-1)
        step = RESCUE_SLAB_ELEMENTS // (K * tiling.width)
        for r in _ranges(chosen.numel(), step):
            X = prepare(tiles[chosen[r]], target[chosen[r]])
            Q.index_add_(0, target[chosen[r]], torch.bmm(X, X.transpose(1, 2)))
    if mixed_bucket.numel() and select is None and len(tiling.mixed_pieces) <= MAX_PIECES:
        # A few boundaries (builders' partitions): one product per piece of a bucket,
        # on views, like the full tiles.
        for lo, hi, b in tiling.mixed_pieces:
            X = G[:, lo:hi]
            Q[b] += (X @ X.T).to(torch.float64)
    elif mixed_bucket.numel():
        X = _mixed_rows(G, tiling, mixed)
        owner = mixed_bucket
        if select is not None:
            keep = torch.cat([select, select.new_zeros(1)])[owner]
            owner = torch.where(keep, owner, buckets)
        for r in _ranges(X.shape[0], GRAM_SLAB_ELEMENTS // (K * K * tiling.width)):
            cols = prepare(X[r], owner[r]).transpose(1, 2)  # [n, c, K]
            outer = cols.unsqueeze(-1) * cols.unsqueeze(-2)  # x_j x_jᵀ per column
            Q.index_add_(0, owner[r].reshape(-1), outer.reshape(-1, K, K))
    return Q[:buckets]


def _identity_grams(G: Tensor, tiling: ColumnTiling) -> Tensor:
    """Bucket Grams in G's dtype when tile t is bucket t (``tiling.identity``): one
    product per bucket, so there is nothing to sum and no float64 buffer to fill."""
    tiles = _tiles(G, tiling)
    return torch.bmm(tiles, tiles.transpose(1, 2))


def _combine_tiles(G: Tensor, weights: Tensor, tiling: ColumnTiling, *,
                   out: Tensor | None = None) -> Tensor:
    """The D-vector whose columns in bucket b are ``weights[b] @ G^b``, written in
    place tile by tile (one batched product over views, then the mixed tiles), into
    ``out`` if given."""
    c, T = tiling.width, tiling.full
    tile_bucket, mixed, mixed_bucket = tiling.on(G.device)
    weights = weights.to(dtype=G.dtype, device=G.device)
    out = G.new_empty(G.shape[1]) if out is None else out
    if T:
        # Mixed tiles get some bucket's weights here and are redone below.
        per_tile = weights if tiling.identity else weights[tile_bucket.clamp(min=0)]
        per_tile = per_tile.unsqueeze(1)
        torch.bmm(per_tile, _tiles(G, tiling), out=out[:T * c].view(T, 1, c))
    if mixed_bucket.numel() and len(tiling.mixed_pieces) <= MAX_PIECES:
        for lo, hi, b in tiling.mixed_pieces:
            torch.mv(G[:, lo:hi].T, weights[b], out=out[lo:hi])
    elif mixed_bucket.numel():
        X = _mixed_rows(G, tiling, mixed)
        padded = torch.cat([weights, weights.new_zeros(1, weights.shape[1])])
        per_column = padded[mixed_bucket].transpose(1, 2)  # [n, K, c]: w of each column's bucket
        Y = (per_column * X).sum(1)
        if mixed.numel():
            out[:T * c].view(T, c)[mixed] = Y[:mixed.numel()]
        if tiling.tail:
            out[T * c:] = Y[-1, :tiling.tail]
    return out


def _scale_by_power_of_two(X: Tensor, e: Tensor) -> Tensor:
    """``X · 2^e`` exactly (two factors, each within range); e is broadcast against X
    (a 1-D e scales X's leading index)."""
    e = e.to(torch.float64)
    if e.dim() == 1:
        e = e.view(-1, *([1] * (X.dim() - 1)))
    half = torch.trunc(e / 2)
    return X * torch.exp2(half) * torch.exp2(e - half)


# -- public building blocks ----------------------------------------------------------

def bucket_grams(G: Tensor, partition: Partition) -> Tensor:
    """All bucket Gram matrices ``Q[b] = G^b G^{bᵀ}``, shape ``[M, K, K]``, in G's dtype.

    Products are taken in G's dtype on views of G and summed per bucket in
    float64 (see :func:`scaled_bucket_grams` for Grams safe at every scale).

    >>> G = torch.tensor([[1.0, 2.0, 0.0], [0.0, 1.0, 1.0]])
    >>> bucket_grams(G, Partition.from_sizes([1, 2]))[1].tolist()
    [[4.0, 2.0], [2.0, 2.0]]
    """
    check_matrix(G)
    partition.check_columns(G)
    G = _row_major(G)
    return _accumulate_grams(G, column_tiling(partition), len(partition)).to(G.dtype)


def combine(G: Tensor, weights: Tensor, partition: Partition) -> Tensor:
    """Apply per-bucket weights ``[M, K]``: bucket b of the result is ``weights[b] @ G^b``."""
    partition.check_columns(G)
    K = G.shape[0]
    if weights.shape != (len(partition), K):
        raise ValueError(
            f"weights must have shape {(len(partition), K)}, got {tuple(weights.shape)}")
    return _combine_tiles(_row_major(G), weights, column_tiling(partition))


def in_range(Q: Tensor, sizes: Tensor, dtype: torch.dtype) -> Tensor:
    r"""Per bucket: is the Gram ``Q[b]`` (of ``sizes[b]`` columns, products in
    ``dtype``) free of overflow and of underflow that matters?

    :math:`n_b\,\text{tiny}/u \le \max_k Q_{b,kk} \le u\cdot\text{max}`. The lower
    bound keeps the error of flushed products (at most :math:`u\,\text{tiny}` each)
    below :math:`u^2 \max_k Q_{b,kk}`; the upper bound leaves the solver a factor
    1/u of headroom. NaN and Inf fail both.
    """
    info = torch.finfo(dtype)
    u = info.eps / 2
    m = torch.diagonal(Q, dim1=-2, dim2=-1).amax(-1).to(torch.float64)
    return (m >= sizes.to(m) * (info.tiny / u)) & (m <= info.max * u)


def scaled_bucket_grams(G: Tensor, partition: Partition) -> tuple[Tensor, Tensor]:
    r"""Bucket Grams that are accurate at every scale: ``Q`` ``[M, K, K]`` and integer
    exponents ``e`` ``[M]`` with :math:`G^bG^{b\top} = 4^{e_b}\,Q_b`.

    One pass over G in G's dtype; only buckets whose Gram is out of range
    (:func:`in_range`) or has a nonzero row out of range
    (:func:`refmoo._scale.rows_in_range`) are read again, scaled by :math:`2^{-e_b}`,
    :math:`2^{e_b-1} \le \max|G^b| < 2^{e_b}`, with float64 products (elsewhere
    ``e_b = 0``). Q is in G's dtype unless a float32 bucket's rows are too far apart
    in norm for a float32 Gram (about 1e-19): then all of Q is float64. Raises
    :class:`GradientError` naming the first NaN/Inf, or a bucket whose rows are more
    than about 1e-146 apart.

    >>> G = 2.0 ** -600 * torch.tensor([[1.0, 1.0], [-1.0, -2.0]], dtype=torch.float64)
    >>> Q, e = scaled_bucket_grams(G, Partition.single(2))   # G Gᵀ = 2^-1200·[[2,-3],[-3,5]]
    >>> int(e[0]), (16 * Q[0]).tolist()
    (-598, [[2.0, -3.0], [-3.0, 5.0]])
    """
    check_matrix(G)
    partition.check_columns(G)
    G = _row_major(G)
    Q, e, wide = _scaled_grams(G, column_tiling(partition), partition)
    return (Q if bool(wide.any()) else Q.to(G.dtype)), e


def _scaled_grams(G: Tensor, tiling: ColumnTiling, partition: Partition
                  ) -> tuple[Tensor, Tensor, Tensor]:
    """:func:`scaled_bucket_grams` as ``Q``, ``e`` and ``wide`` ``[M]``: the buckets whose
    Grams must stay in float64 (G not float64 only). Q is in G's dtype when no bucket
    is wide (the common case: no float64 copy of a fine partition's Grams), else in
    float64, every Q_b but the wide ones exactly representable in G's dtype."""
    M = len(partition)
    Q = _identity_grams(G, tiling) if tiling.identity else \
        _accumulate_grams(G, tiling, M).to(G.dtype)
    e = torch.zeros(M, dtype=torch.long, device=G.device)
    wide = torch.zeros(M, dtype=torch.bool, device=G.device)
    sizes = tiling.bucket_sizes.to(G.device)
    if _all_rows_in_range(Q, sizes, G.dtype):
        return Q, e, wide
    bad = ~in_range(Q, sizes, G.dtype)
    thin = ~rows_in_range(Q, sizes, G.dtype)
    if not bool((bad.unsqueeze(-1) | thin).any()):
        return Q, e, wide
    Q = Q.to(torch.float64)
    # Zero rows fail rows_in_range too (a language absent from a bucket): only the
    # rows that fail are read (all rows of a bucket out of range, for its exponent),
    # and only a nonzero one, flushed or lost next to the largest, needs work.
    amax = _row_amax(G, tiling, M, bad.unsqueeze(-1) | thin)
    if not bool(torch.isfinite(amax).all()):
        locate_non_finite(G, partition)
    flushed = thin & (amax > 0)
    redo = bad | flushed.any(-1)
    if bool((redo & ~bad).any()):  # their exponent needs the rows that passed too
        amax = torch.maximum(amax, _row_amax(G, tiling, M, (redo & ~bad).unsqueeze(-1) & ~thin))
    top = amax.amax(-1)
    Q[bad & (top == 0)] = 0  # an all-zero bucket's Gram is exactly 0
    redo &= top > 0
    if bool(redo.any()):
        e = torch.where(redo, torch.frexp(top)[1].long(), e)
        Q[redo] = _accumulate_grams(G, tiling, M, select=redo, exponent=e)[redo]
        lost = redo.unsqueeze(-1) & (amax > 0)
        beyond = (lost & ~rows_in_range(Q, None, torch.float64)).any(-1)
        if bool(beyond.any()):
            b = int(beyond.nonzero()[0])
            raise GradientError(rows_too_far_apart(
                amax[b], lost[b] & ~rows_in_range(Q[b], None, torch.float64),
                f" in bucket {b} ({partition.names[b]!r})"))
        if G.dtype != torch.float64:
            wide = (lost & ~rows_in_range(Q, sizes, G.dtype)).any(-1)
        keep = redo & ~wide  # in range in G's dtype: handed to the solver rounded to it
        Q[keep] = Q[keep].to(G.dtype).to(torch.float64)
    if not bool(torch.isfinite(Q).all()):
        locate_non_finite(G, partition)
        raise GradientError("a bucket Gram is not finite although G is; please report this")
    return (Q if bool(wide.any()) else Q.to(G.dtype)), e, wide


def _all_rows_in_range(Q: Tensor, sizes: Tensor, dtype: torch.dtype) -> bool:
    """Whether every bucket is in range and every row passes
    :func:`refmoo._scale.rows_in_range`, from the smallest and largest diagonal entry of
    all buckets (two reductions: the per-row test costs tens of ms on 5e5 buckets).
    Sufficient, not necessary: a zero row anywhere sends the caller to the full test."""
    if Q.numel() == 0:
        return True
    low, high = (float(x) for x in torch.aminmax(torch.diagonal(Q, dim1=-2, dim2=-1)))
    info = torch.finfo(dtype)
    u = info.eps / 2
    floor = float(sizes.amax()) * (info.tiny / u)
    # low ≥ 2·high·2^-969 ≥ 2^(s_b - 969) for every bucket b (its top < 2^s_b ≤ 2·top).
    return low >= floor and high <= info.max * u and low >= 2 * high * 2.0**RELATIVE_FLOOR_EXPONENT


def _row_amax(G: Tensor, tiling: ColumnTiling, buckets: int, select: Tensor) -> Tensor:
    r"""float64 ``[M, K]``: :math:`\max_j |G^b_{kj}|` where ``select`` ``[M, K]`` is set (0
    elsewhere; NaN/Inf propagate). Only the selected rows of each tile are read."""
    K = G.shape[0]
    tile_bucket, mixed, mixed_bucket = tiling.on(G.device)
    amax = torch.zeros((buckets + 1) * K, dtype=torch.float64, device=G.device)  # + padding
    pick = torch.cat([select, select.new_zeros(1, K)])  # the padding bucket: never

    def fold(values: Tensor, slot: Tensor) -> None:
        # scatter_reduce's amax propagates NaN, so a NaN row cannot pass as finite.
        amax.scatter_reduce_(0, slot, values.to(torch.float64), "amax")

    owner = torch.where(tile_bucket >= 0, tile_bucket, buckets)
    rows = pick[owner].nonzero()  # (tile, row) pairs to read
    tiles = _tiles(G, tiling)
    for r in _ranges(rows.shape[0], RESCUE_SLAB_ELEMENTS // tiling.width):
        t, k = rows[r, 0], rows[r, 1]
        fold(tiles[t, k].abs().amax(-1), owner[t] * K + k)
    if mixed_bucket.numel():
        columns = _mixed_rows(G, tiling, mixed).abs().transpose(1, 2).reshape(-1, K)
        slot = mixed_bucket.reshape(-1, 1) * K + torch.arange(K, device=G.device)
        keep = pick[mixed_bucket.reshape(-1)]
        fold(columns[keep], slot[keep])
    return amax.view(buckets + 1, K)[:buckets]


# -- the entry point -----------------------------------------------------------------

def bucketwise(aggregator: Aggregator, G: Tensor, partition: Partition, *,
               keys: Sequence[int] | Tensor | None = None, out: Tensor | None = None) -> Tensor:
    """Apply ``aggregator`` independently on every bucket of ``partition``.

    Bucket b is aggregated with ``key=keys[b]`` (default ``b``), so randomised
    aggregators give each bucket its own reproducible randomness. A rank that
    owns some buckets of a larger partition passes their global indices as
    ``keys`` and draws exactly what the single-process reference draws.

    Mean and Sum act column by column, so they are applied to G directly: no
    Gram is formed, and they fail exactly where the aggregator itself does.

    ``out``: a contiguous D-vector of G's dtype and device, not sharing memory with G,
    to write the update into and return (in a training loop, a buffer that is already
    resident: a fresh D-vector's first touch can cost as much as a pass over G). Its
    contents are unspecified if an error is raised.

    >>> from refmoo import MGDA
    >>> G = torch.tensor([[1.0, 1.0], [-1.0, -2.0]], dtype=torch.float64)
    >>> a = bucketwise(MGDA(), G, Partition.singletons(2))  # RPS: both buckets stationary
    >>> bool(a.abs().max() < 1e-15)
    True
    """
    check_matrix(G)
    partition.check_columns(G)
    keys = torch.arange(len(partition)) if keys is None else \
        torch.as_tensor(keys, dtype=torch.long).reshape(-1)
    if keys.numel() != len(partition):
        raise ValueError(f"{keys.numel()} keys given for {len(partition)} buckets")
    if out is not None:
        _check_out(out, G)
    if isinstance(aggregator, (Mean, Sum)):
        # A(G) = c·1ᵀG is the same on every bucket: concat_b A(G^b) = A(G).
        check_finite(G, partition)
        update = aggregator._aggregate(G, key=0)
    elif isinstance(aggregator, GramAggregator):
        if G.requires_grad:
            raise GradientError(
                "G requires grad, but bucketwise does not differentiate through the "
                "buckets' weights (it writes the update in place); pass G.detach()")
        G = _row_major(G)
        width = equal_chunk_width(partition)
        if width is not None and fused_mgda.applies(aggregator, G, width):
            update = _fused_mgda(aggregator, G, width, out)
            if update is not None:
                return update
        tiling = column_tiling(partition)
        Q, e, wide = _scaled_grams(G, tiling, partition)
        weights = _bucket_weights(aggregator, Q, e, wide, keys, G.dtype, partition)
        update = _combine_tiles(G, weights, tiling, out=out)
        _check_update(update, G, weights, Q, e, partition)
        return update
    else:
        check_finite(G, partition)
        update = aggregator.aggregate_partitioned(G, partition, keys)
    return update if out is None else out.copy_(update)


def _fused_mgda(aggregator: Aggregator, G: Tensor, width: int, out: Tensor | None
                ) -> Tensor | None:
    """:func:`refmoo.fused_mgda.bucketwise_mgda` on the equal chunks, a shorter last
    chunk as a bucket of its own; None where the eager path must take the call (it
    then names the bucket in its error)."""
    D = G.shape[1]
    full = D - D % width
    update = G.new_empty(D) if out is None else out
    if fused_mgda.bucketwise_mgda(G[:, :full], width, update[:full]) is None:
        return None
    if full < D:
        try:
            bucketwise(aggregator, G[:, full:], Partition.single(D - full), out=update[full:])
        except GradientError:
            return None
    return update


def _check_out(out: Tensor, G: Tensor) -> None:
    problem = None
    if not isinstance(out, Tensor):
        problem = f"must be a tensor, got {type(out).__name__}"
    elif out.shape != (G.shape[1],):
        problem = f"must have shape ({G.shape[1]},) (one entry per column of G), " \
                  f"got {tuple(out.shape)}"
    elif out.dtype != G.dtype or out.device != G.device:
        problem = f"must be {G.dtype} on {G.device} like G, got {out.dtype} on {out.device}"
    elif not out.is_contiguous():
        problem = "must be contiguous"
    elif out.requires_grad:
        problem = "must not require grad (the update is written into it in place)"
    elif _overlap(out, G):
        problem = "overlaps G in memory, which is still read while the update is written"
    if problem:
        raise ValueError(f"out {problem}")


def _overlap(a: Tensor, b: Tensor) -> bool:
    """Whether the bytes that two tensors span intersect (on one device). Spans, not
    elements: a strided G interleaved with out counts as overlapping, which is safe."""
    if a.device != b.device or a.numel() == 0 or b.numel() == 0:
        return False

    def span(t: Tensor) -> tuple[int, int]:
        last = sum((n - 1) * st for n, st in zip(t.shape, t.stride(), strict=True))
        return t.data_ptr(), t.data_ptr() + (last + 1) * t.element_size()

    (a0, a1), (b0, b1) = span(a), span(b)
    return a0 < b1 and b0 < a1


def _bucket_weights(aggregator: GramAggregator, Q: Tensor, e: Tensor, wide: Tensor,
                    keys: Tensor, dtype: torch.dtype, partition: Partition) -> Tensor:
    """Weights ``[M, K]`` in ``dtype`` of the float64 Grams from :func:`_scaled_grams`:
    solved from Grams in ``dtype``, except the ``wide`` buckets' float64 Grams, whose
    weights must then survive their rounding to ``dtype``."""
    if not bool(wide.any()):
        return _weights(aggregator, Q.to(dtype), e, keys)
    narrow = ~wide
    w64 = _weights(aggregator, Q[wide], e[wide], keys[wide])
    fits = weights_fit(w64, Q[wide], dtype)
    if not bool(fits.all()):
        b = int(wide.nonzero().reshape(-1)[~fits][0])
        raise GradientError(
            f"{aggregator!r}'s weights for bucket {b} ({partition.names[b]!r}) span more than "
            f"{dtype} holds (its rows of G are too far apart in norm: a weight below "
            f"{torch.finfo(dtype).tiny:.3g} would lose its row's share); cast G to float64")
    weights = torch.empty(Q.shape[:2], dtype=dtype, device=Q.device)
    weights[wide] = w64.to(dtype)
    if bool(narrow.any()):
        weights[narrow] = _weights(aggregator, Q[narrow].to(dtype), e[narrow], keys[narrow])
    return weights


def _weights(aggregator: GramAggregator, Q: Tensor, e: Tensor, keys: Tensor) -> Tensor:
    r"""Weights of the true bucket Grams :math:`4^{e_b} Q_b`, computed from :math:`Q_b`.

    For an aggregator with :math:`A(cG) = c^pA(G)`, :math:`w(c^2Q) = c^{p-1}w(Q)`;
    p is measured on the rescaled buckets by one exact step
    :math:`w(4Q) = 2^{p-1}w(Q)` (p = 1 or 0 within :math:`\sqrt u`), else the
    aggregator cannot be evaluated at that scale and an error says so.
    """
    # Q was formed here from finite G (PSD to rounding by construction), so the
    # Gram check of weights_from_gram, one factorisation per bucket, is skipped.
    w = aggregator._weights_from_gram(Q, keys)
    scaled = (e != 0).nonzero().reshape(-1)
    if scaled.numel() == 0:
        return w
    w_s = w[scaled]
    w_4 = aggregator._weights_from_gram(4 * Q[scaled], keys[scaled])
    tol = torch.finfo(w.dtype).eps ** 0.5 * w_s.abs().amax(-1, keepdim=True)
    if bool(((w_4 - w_s).abs() <= tol).all()):
        return w  # p = 1: weights do not depend on the scale
    if bool(((2 * w_4 - w_s).abs() <= tol).all()):
        w = w.clone()  # p = 0: weights scale as 1/c
        w[scaled] = _scale_by_power_of_two(w_s.to(torch.float64), -e[scaled]).to(w.dtype)
        return w
    b = int(scaled[0])
    raise GradientError(
        f"bucket {b}'s Gram is outside the range of float64 (G^b G^bᵀ = 4^{int(e[b])}·Q̂) and "
        f"{aggregator!r} is not scale-homogeneous (A(cG) = c^p·A(G) with p = 0 or 1), so its "
        f"weights cannot be evaluated there; rescale G")


def _check_update(out: Tensor, G: Tensor, weights: Tensor, Q: Tensor, e: Tensor,
                  partition: Partition) -> None:
    r"""Raise, naming the bucket, if the update cannot be represented in G's dtype.

    :math:`|A_P(G)_j| \le \sum_k |w_{bk}|\,\|g^b_k\|` for j in bucket b, from the
    Grams already at hand; only a bucket whose bound reaches the dtype's maximum is
    read back (the bound is loose by at most a factor of about :math:`K\sqrt{n_b}`)."""
    top = torch.finfo(G.dtype).max
    diagonal = torch.diagonal(Q, dim1=-2, dim2=-1)
    if weights.numel() and diagonal.numel():
        # One bound for all buckets first, K·max|w| · √(max Q) · 2^max e (the largest
        # entry of a Gram is on its diagonal), with a factor 2 to spare for its own
        # rounding: usually it settles every bucket.
        K = weights.shape[-1]
        largest = K * float(weights.abs().amax()) * math.sqrt(max(float(Q.amax()), 0))
        if largest == 0 or (math.isfinite(largest)
                            and math.log2(largest) + int(e.amax()) < math.log2(top) - 1):
            return
    norms = diagonal.clamp(min=0).sqrt()
    bound = _scale_by_power_of_two((weights.to(torch.float64).abs() * norms).sum(-1), e)
    suspect = (~(bound < top)).nonzero().reshape(-1).tolist()
    runs = column_tiling(partition).runs
    for b in suspect:
        spans = runs[runs[:, 2] == b]
        if all(bool(torch.isfinite(out[int(lo):int(hi)]).all()) for lo, hi, _ in spans):
            continue
        largest = float(_scale_by_power_of_two(norms[b].amax().view(1), e[b:b + 1]))
        remedy = "scale G down" if G.dtype == torch.float64 else \
            "cast G to float64 or scale it down"
        raise GradientError(
            f"the update of bucket {b} ({partition.names[b]!r}) overflows {G.dtype}: "
            f"its rows of G have norms up to {largest:.3g}; {remedy}")
