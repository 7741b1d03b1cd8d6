"""Hypothesis strategies for gradient matrices of a chosen stationarity class.

Every matrix is built on purpose, not filtered from random draws:

- *strongly stationary*: some λ with all λ_k > 0 has Gᵀλ = 0;
- *weakly stationary*: Gᵀλ = 0 only for λ with a zero entry (some row cannot
  take part in any zero combination: it has a positive inner product with a
  vector that every participating row is orthogonal to; with K = 2 this
  forces a zero row);
- *non-stationary*: a unit vector u has ⟨g_k, u⟩ ≥ margin > 0 for every k, so
  φ(G) ≥ margin.

Knobs: K, D, rank (the base draw is A·B with inner dimension ``rank``; the
construction adds at most two rank-one terms), and a scale drawn as 10^e.
Degenerate shapes (exact conflicts g_2 = −c·g_1, duplicate and zero rows) come
from :func:`degenerate_matrices`. Per-bucket classes come from
:func:`bucketed_matrices`; partitions and their refinements from
:func:`partitions`, :func:`refinements` and :func:`partition_pairs`.

>>> from hypothesis import find
>>> coarse, fine = find(partition_pairs(6), lambda pair: len(pair[1]) > len(pair[0]))
>>> fine.refines(coarse)
True
"""

from __future__ import annotations

import numpy as np
import torch
from hypothesis import strategies as st
from torch import Tensor

from ..partitions import Partition

STRONG, WEAK, NON_STATIONARY = "strong", "weak", "non-stationary"
CLASSES = (STRONG, WEAK, NON_STATIONARY)

# Default strategies live at module level: a strategy built in an argument
# default would be shared by every call anyway, and ruff (B008) says so.
DEFAULT_K = st.integers(1, 6)
DEFAULT_D = st.integers(1, 10)
DEFAULT_BUCKET_K = st.integers(2, 5)
DEFAULT_BUCKET_SIZES = st.integers(1, 4)


def _normal(draw, shape) -> np.ndarray:
    seed = draw(st.integers(0, 2**32 - 1))
    return np.random.default_rng(seed).standard_normal(shape)


def _scale(draw, min_exp: int, max_exp: int) -> float:
    return 10.0 ** draw(st.integers(min_exp, max_exp))


def _value(draw, x):
    return draw(x) if isinstance(x, st.SearchStrategy) else x


def _low_rank(draw, K: int, D: int, rank: int | None) -> np.ndarray:
    if rank is None or rank >= min(K, D):
        return _normal(draw, (K, D))
    return _normal(draw, (K, rank)) @ _normal(draw, (rank, D))


def _simplex_point(draw, K: int, positive: bool) -> np.ndarray:
    raw = np.array(draw(st.lists(st.floats(0.05 if positive else 0.0, 1.0), min_size=K,
                                 max_size=K)))
    if raw.sum() <= 0:
        raw[0] = 1.0
    return raw / raw.sum()


def _strong_block(draw, K: int, D: int, rank: int | None) -> np.ndarray:
    G0 = _low_rank(draw, K, D, rank)
    lam = _simplex_point(draw, K, positive=True)
    # Remove the λ-combination: Gᵀλ = G0ᵀλ − (G0ᵀλ)(λᵀλ)/‖λ‖² = 0.
    return G0 - np.outer(lam, lam @ G0) / (lam @ lam)


def _non_stationary_block(draw, K: int, D: int, rank: int | None) -> np.ndarray:
    G0 = _low_rank(draw, K, D, rank)
    u = _normal(draw, D)
    u /= np.linalg.norm(u)
    margin = draw(st.floats(0.1, 2.0))
    shift = margin - G0 @ u
    return G0 + np.outer(np.maximum(shift, 0.0), u)


def _weak_block(draw, K: int, D: int, rank: int | None) -> np.ndarray:
    # Rows 0..s-1 cancel inside the subspace orthogonal to v; the other rows
    # lean towards v, so every zero combination leaves them out. s = 1 makes
    # the cancelling group a single zero row, the only weak shape at K = 2.
    s = draw(st.integers(1, K - 1))
    v = _normal(draw, D)
    v /= np.linalg.norm(v)
    inner = _strong_block(draw, s, D, rank)
    inner -= np.outer(inner @ v, v)
    outer = _normal(draw, (K - s, D))
    outer += np.outer(draw(st.floats(0.1, 2.0)) - outer @ v, v)
    G = np.vstack([inner, outer])
    perm = np.random.default_rng(draw(st.integers(0, 2**32 - 1))).permutation(K)
    return G[perm]


_BUILDERS = {STRONG: _strong_block, WEAK: _weak_block, NON_STATIONARY: _non_stationary_block}


def _block(draw, kind: str, K: int, D: int, rank: int | None) -> np.ndarray:
    if K == 1 and kind == STRONG:
        return np.zeros((1, D))  # a single gradient is stationary only when it is zero
    return _BUILDERS[kind](draw, K, D, rank)


def _check_kind(kind: str) -> None:
    if kind not in CLASSES:
        raise ValueError(f"unknown stationarity class {kind!r}; expected one of {CLASSES}")


@st.composite
def gradient_matrices(draw, kind: str | st.SearchStrategy[str] | None = None,
                      K: st.SearchStrategy[int] | int = DEFAULT_K,
                      D: st.SearchStrategy[int] | int = DEFAULT_D,
                      rank: int | None | str = "any", min_exp: int = 0, max_exp: int = 0,
                      dtype: torch.dtype = torch.float64) -> Tensor:
    """A K×D matrix of stationarity class ``kind`` (``None``: any class).

    ``rank="any"`` draws full or reduced rank; an int fixes the inner dimension.
    The scale is 10^e with e in [min_exp, max_exp] (e.g. -12, 12). A weakly
    stationary matrix needs K ≥ 2 and D ≥ 2, so those are raised when needed.
    """
    K = _value(draw, K)
    kind = _value(draw, kind) if kind is not None else draw(st.sampled_from(CLASSES))
    _check_kind(kind)
    if kind == WEAK and K < 2:
        K = 2
    D = _value(draw, D)
    if kind == WEAK:
        D = max(D, 2)
    if rank == "any":
        rank = draw(st.one_of(st.none(), st.integers(1, max(1, min(K, D)))))
    block = _block(draw, kind, K, D, rank)
    return torch.tensor(block * _scale(draw, min_exp, max_exp), dtype=dtype)


@st.composite
def degenerate_matrices(draw, K: int | None = None, D: int | None = None,
                        min_exp: int = 0, max_exp: int = 0) -> Tensor:
    """Matrices with exact conflicts (g_2 = −c·g_1), duplicate rows or zero rows."""
    K = K or draw(st.integers(2, 6))
    D = D or draw(st.integers(1, 8))
    G = _normal(draw, (K, D))
    kind = draw(st.sampled_from(["conflict", "duplicate", "zero", "all-zero"]))
    if kind == "conflict":
        G[1] = -draw(st.floats(0.01, 100.0)) * G[0]
    elif kind == "duplicate":
        G[draw(st.integers(1, K - 1))] = G[0]
    elif kind == "zero":
        G[draw(st.integers(0, K - 1))] = 0.0
    else:
        G[:] = 0.0
    perm = np.random.default_rng(draw(st.integers(0, 2**32 - 1))).permutation(K)
    return torch.tensor(G[perm] * _scale(draw, min_exp, max_exp), dtype=torch.float64)


def _cut(draw, n: int, pieces: int) -> list[int]:
    """Sizes of ``pieces`` non-empty consecutive runs covering n items."""
    cuts = sorted(draw(st.sets(st.integers(1, n - 1), min_size=pieces - 1,
                               max_size=pieces - 1))) if pieces > 1 else []
    bounds = [0, *cuts, n]
    return [b - a for a, b in zip(bounds[:-1], bounds[1:], strict=True)]


def _scattered(draw, dim: int, sizes: list[int]) -> Partition:
    perm = torch.from_numpy(np.random.default_rng(draw(st.integers(0, 2**32 - 1)))
                            .permutation(dim))
    return Partition(list(torch.split(perm, sizes)), dim=dim)


@st.composite
def partitions(draw, dim: int, max_buckets: int | None = None, contiguous: bool | None = None,
               min_buckets: int = 1) -> Partition:
    """A random partition of 0..dim-1 into ``min_buckets``..``max_buckets`` buckets.

    ``contiguous=None`` draws both kinds; non-contiguous ones scatter the columns.
    """
    max_buckets = min(dim, max_buckets or dim)
    if not 1 <= min_buckets <= max_buckets:
        raise ValueError(f"cannot split {dim} indices into at least {min_buckets} and at "
                         f"most {max_buckets} buckets")
    M = draw(st.integers(min_buckets, max_buckets))
    sizes = _cut(draw, dim, M)
    if contiguous is None:
        contiguous = draw(st.booleans())
    if contiguous:
        return Partition.from_sizes(sizes)
    return _scattered(draw, dim, sizes)


@st.composite
def refinements(draw, partition: Partition, strict: bool = False) -> Partition:
    """A partition that refines ``partition``: every bucket is split into pieces.

    The indices of a bucket are shuffled before they are cut, so the pieces are
    arbitrary subsets, not only runs. ``strict=True`` splits at least one bucket
    (when some bucket has two indices).
    """
    pieces = []
    splittable = [b for b, idx in enumerate(partition) if idx.numel() > 1]
    forced = draw(st.sampled_from(splittable)) if strict and splittable else None
    for b, idx in enumerate(partition):
        n = idx.numel()
        count = draw(st.integers(2 if b == forced else 1, n))
        shuffled = idx[torch.from_numpy(
            np.random.default_rng(draw(st.integers(0, 2**32 - 1))).permutation(n))]
        pieces.extend(torch.split(shuffled, _cut(draw, n, count)))
    return Partition(pieces, dim=partition.dim)


@st.composite
def partition_pairs(draw, dim: int, max_buckets: int | None = None
                    ) -> tuple[Partition, Partition]:
    """``(coarse, fine)`` with ``fine.refines(coarse)``."""
    coarse = draw(partitions(dim, max_buckets=max_buckets))
    return coarse, draw(refinements(coarse))


@st.composite
def bucketed_matrices(draw, kinds: list[str] | st.SearchStrategy | None = None,
                      K: st.SearchStrategy[int] | int = DEFAULT_BUCKET_K,
                      bucket_sizes: st.SearchStrategy[int] | int = DEFAULT_BUCKET_SIZES,
                      max_buckets: int = 4, min_exp: int = 0, max_exp: int = 0,
                      rank: int | None = None, contiguous: bool | None = True,
                      ) -> tuple[Tensor, Partition, list[str]]:
    """(G, partition, per-bucket classes): each bucket block has its own class.

    ``kinds`` fixes the class of every bucket (its length sets the bucket
    count); otherwise classes are drawn per bucket. ``rank`` caps the inner
    dimension of every block's base draw. ``contiguous=False`` scatters the
    buckets over the columns (``None`` draws either), so code that assumes
    consecutive buckets is caught.
    """
    K = _value(draw, K)
    kinds = _value(draw, kinds)
    if kinds is None:
        kinds = draw(st.lists(st.sampled_from(CLASSES), min_size=1, max_size=max_buckets))
    blocks, sizes = [], []
    for kind in kinds:
        _check_kind(kind)
        size = _value(draw, bucket_sizes)
        size = max(size, 2) if kind == WEAK else size
        if kind == WEAK and K < 2:
            raise ValueError("a weakly stationary bucket needs K >= 2")
        blocks.append(_block(draw, kind, K, size, rank))
        sizes.append(size)
    scale = _scale(draw, min_exp, max_exp)
    packed = np.hstack(blocks) * scale
    if contiguous is None:
        contiguous = draw(st.booleans())
    if contiguous:
        return torch.tensor(packed, dtype=torch.float64), Partition.from_sizes(sizes), list(kinds)
    partition = _scattered(draw, sum(sizes), sizes)
    G = np.empty_like(packed)
    G[:, partition.order.numpy()] = packed  # bucket b's block lands on its scattered columns
    return torch.tensor(G, dtype=torch.float64), partition, list(kinds)
