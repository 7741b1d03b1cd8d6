"""Every code path of the tiled bucket passes against a plain per-bucket loop.

The tiling cuts the columns into equal tiles; tiles inside one bucket go through
one batched product, tiles across a bucket boundary (and the tail) through masked
slots, out-of-range buckets through a rescaled float64 pass. Each path is forced
here by choosing the tile width, on partitions of every shape the builders make:
contiguous, scattered, reverse order, owner-rank slices, FSDP2 row chunks.

Tolerances are the classical dot-product bounds (Higham, Thm 3.5): a sum of n
products in unit roundoff u is off by at most γ_n·Σ|x_i y_i|, γ_n = nu/(1-nu).
"""

from __future__ import annotations

import sys

import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st
from torch import nn

from refmoo import MGDA, GramAggregator, Mean, NashMTL, Partition, Sum, UPGrad, bucketwise
from refmoo._checks import GradientError
from refmoo.partitions import ddp_buckets, fsdp2_units, per_module, per_tensor, zero_buckets
from refmoo.partitions._partition import column_tiling
from refmoo.testing import partitions

bw = sys.modules["refmoo.bucketwise"]  # the module, not the function refmoo exports

DTYPES = (torch.float32, torch.float64)


def gamma(n: int, dtype: torch.dtype) -> float:
    u = torch.finfo(dtype).eps / 2
    return n * u / (1 - n * u)


def use_width(p: Partition, width: int | None) -> Partition:
    """Make ``p``'s passes use tiles of ``width`` columns (None: the automatic choice)."""
    p._column_tiling = column_tiling(p, width=width) if width else None
    return p


def assert_grams_match(G, p, Q):
    """|Q_b - G^b G^bᵀ| ≤ (γ_{n_b}(dtype) + γ_{n_b}(f64) + u)·|G^b||G^b|ᵀ: products and
    sums within a tile in G's dtype, tile sums in float64, one final rounding."""
    A = G.double().abs()
    for b, idx in enumerate(p):
        n = idx.numel()
        bound = (gamma(n, G.dtype) + gamma(n, torch.float64) + gamma(1, G.dtype)) * (
            A[:, idx] @ A[:, idx].T)
        err = (Q[b].double() - G.double()[:, idx] @ G.double()[:, idx].T).abs()
        assert bool((err <= bound + 1e-300).all()), (b, float((err - bound).max()))


def assert_combine_matches(G, W, p, out):
    """Bucket b of the result is W_b @ G^b: a K-term sum in G's dtype, weights rounded
    to it first, so |error| ≤ γ_K·|W_b||G^b| against those rounded weights; the float64
    product it is compared with rounds too (γ_K of float64: both sides round when G is
    float64)."""
    K = G.shape[0]
    Wd = W.to(G.dtype).double()
    for b, idx in enumerate(p):
        exact = Wd[b] @ G.double()[:, idx]
        bound = (gamma(K, G.dtype) + gamma(K, torch.float64)) * (
            Wd[b].abs() @ G.double()[:, idx].abs())
        assert bool(((out[idx].double() - exact).abs() <= bound).all()), b


# -- partitions of every shape ---------------------------------------------------------

class Block(nn.Module):
    """A GPT-2-style block in miniature: LayerNorm, fused QKV, projection, MLP."""

    def __init__(self, d: int) -> None:
        super().__init__()
        self.ln_1 = nn.LayerNorm(d)
        self.attn = nn.Linear(d, 3 * d)
        self.proj = nn.Linear(d, d)
        self.ln_2 = nn.LayerNorm(d)
        self.fc = nn.Linear(d, 4 * d)
        self.out = nn.Linear(4 * d, d)


class TinyGPT(nn.Module):
    def __init__(self, vocab: int = 37, d: int = 6, layers: int = 2) -> None:
        super().__init__()
        self.wte = nn.Embedding(vocab, d)
        self.wpe = nn.Embedding(11, d)
        self.h = nn.ModuleList(Block(d) for _ in range(layers))
        self.ln_f = nn.LayerNorm(d)


MODEL = TinyGPT()
DIM = sum(p.numel() for p in MODEL.parameters())  # 1320 = 20 · 66


def builder_partitions() -> dict[str, Partition]:
    order = [n for n, _ in MODEL.named_parameters()]
    ready = order[::-1]
    ready[0], ready[1] = ready[1], ready[0]  # a LayerNorm's weight ready before its bias
    return {
        "per_tensor": per_tensor(MODEL),
        "per_module": per_module(MODEL),
        "zero_reverse": zero_buckets(MODEL, 700),
        "zero_stage1": zero_buckets(MODEL, 700, stage=1),
        "zero_ranks": zero_buckets(MODEL, 700, world_size=3),
        "zero_ready_ranks": zero_buckets(MODEL, 500, world_size=4, ready_order=ready),
        "ddp": ddp_buckets(MODEL, bucket_cap_mb=0.002, first_bucket_cap_mb=0.001),
        "fsdp_ranks": fsdp2_units(MODEL, Block, world_size=3),
        "chunks": Partition.chunks(DIM, 64),
        "chunks_exact": Partition.chunks(DIM, DIM // 20),
        "chunks_remainder": Partition.chunks(DIM, 100),
        "reverse_chunks": Partition([torch.arange(a, min(a + 50, DIM)) for a in
                                     range(0, DIM, 50)][::-1], dim=DIM),
        "scattered": Partition(list(torch.randperm(
            DIM, generator=torch.Generator().manual_seed(3)).chunk(9)), dim=DIM),
    }


PARTITIONS = builder_partitions()
# Forced widths (None: automatic). A width far above the run lengths of a scattered
# partition means one tile with a slot per run: correct, but the pathological case
# the automatic choice exists to avoid, so it is not forced here.
WIDTHS = (None, 1, 7, 64, 256)


def gradients(dtype, seed=0, K=4):
    return torch.randn(K, DIM, generator=torch.Generator().manual_seed(seed), dtype=dtype)


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("width", WIDTHS)
@pytest.mark.parametrize("name", PARTITIONS)
def test_grams_and_combine_match_the_loop(name, width, dtype):
    p = use_width(PARTITIONS[name], width)
    G = gradients(dtype)
    assert_grams_match(G, p, bw.bucket_grams(G, p))
    W = torch.rand(len(p), 4, generator=torch.Generator().manual_seed(1), dtype=torch.float64)
    assert_combine_matches(G, W, p, bw.combine(G, W, p))
    use_width(p, None)


def test_the_widths_above_drive_every_path():
    """The mixed-tile, tail and uniform paths all run on these partitions."""
    seen = set()
    for p in PARTITIONS.values():
        for width in WIDTHS:
            t = column_tiling(p, width=width)
            seen.add(("mixed", t.mixed.numel() > 0))
            seen.add(("tail", t.tail > 0))
            seen.add(("uniform", bool((t.tile_bucket >= 0).any())))
            seen.add(("identity", t.identity))
    assert seen >= {("mixed", True), ("tail", True), ("uniform", True), ("identity", True)}


def test_tiny_slabs_give_the_same_grams(monkeypatch):
    """Slabbing the batch (fine partitions, bounded memory) changes nothing but the
    order of float64 additions of per-tile Grams, in both passes."""
    G = gradients(torch.float64, seed=5)
    for name in ("chunks_remainder", "scattered", "fsdp_ranks"):
        p = use_width(PARTITIONS[name], 64)
        whole = bw.scaled_bucket_grams(1e-170 * G, p)
        with monkeypatch.context() as m:
            m.setattr(bw, "GRAM_SLAB_ELEMENTS", 16 * 3)
            m.setattr(bw, "RESCUE_SLAB_ELEMENTS", 4 * 64 * 2)
            assert_grams_match(G, p, bw.bucket_grams(G, p))
            Q, e = bw.scaled_bucket_grams(1e-170 * G, p)
        assert torch.equal(e, whole[1]) and bool((e != 0).all())
        torch.testing.assert_close(Q, whole[0], rtol=1e-14, atol=0)
        use_width(p, None)


@st.composite
def matrix_partition_width(draw):
    D = draw(st.integers(1, 60))
    p = draw(partitions(D))
    seed = draw(st.integers(0, 2**31 - 1))
    K = draw(st.integers(1, 5))
    dtype = draw(st.sampled_from(DTYPES))
    G = torch.randn(K, D, generator=torch.Generator().manual_seed(seed), dtype=dtype)
    return G, p, draw(st.sampled_from((None, 1, 2, 3, 5, 8, 64)))


@settings(max_examples=80, deadline=None)
@given(matrix_partition_width())
def test_random_partitions_and_widths(case):
    G, p, width = case
    use_width(p, width)
    assert_grams_match(G, p, bw.bucket_grams(G, p))
    W = torch.rand(len(p), G.shape[0], dtype=torch.float64)
    assert_combine_matches(G, W, p, bw.combine(G, W, p))


@settings(max_examples=60, deadline=None)
@given(st.integers(1, 80).flatmap(lambda D: st.tuples(partitions(D), st.integers(1, 40))))
def test_tiles_record_the_bucket_of_every_column(case):
    """Uniform tiles name their one bucket; mixed tiles and the tail list the bucket
    of each column (padding: one past the last bucket); together they cover 0..D-1."""
    p, width = case
    t = column_tiling(p, width=width)
    body = p.bucket_of[:t.full * width].view(t.full, width)
    uniform = t.tile_bucket >= 0
    assert bool((body[uniform] == t.tile_bucket[uniform].unsqueeze(1)).all())
    assert bool((body[~uniform] != body[~uniform][:, :1]).any(1).all())  # really mixed
    assert torch.equal((~uniform).nonzero().reshape(-1), t.mixed)
    rows = torch.cat([t.mixed, torch.tensor([t.full] if t.tail else [], dtype=torch.long)])
    assert t.mixed_bucket.shape == (rows.numel(), width)
    for i, r in enumerate(rows.tolist()):
        lo, hi = r * width, min((r + 1) * width, p.dim)
        assert torch.equal(t.mixed_bucket[i, :hi - lo], p.bucket_of[lo:hi])
        assert bool((t.mixed_bucket[i, hi - lo:] == len(p)).all())


def test_equal_chunks_are_tiled_one_bucket_per_tile():
    for size in (64, 256, 1000):
        t = column_tiling(Partition.chunks(size * 37, size))
        assert t.identity and t.width == size and t.mixed.numel() == 0


# -- bucketwise end to end -------------------------------------------------------------

def integer_gradients(dtype, seed=0, K=4):
    """Small integers: every Gram is exact in float32 and float64, whatever the order
    of summation, so the loop and the tiled pass hand the solver the very same Q."""
    gen = torch.Generator().manual_seed(seed)
    return torch.randint(-8, 9, (K, DIM), generator=gen).to(dtype)


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("width", (None, 7, 256))
@pytest.mark.parametrize("name", PARTITIONS)
def test_bucketwise_mgda_matches_the_loop(name, width, dtype):
    """Same exact Grams, same solver: what remains is the solver's own rounding in a
    batch versus alone (none expected, allowed 8u) and the K-term combine (γ_K)."""
    p = use_width(PARTITIONS[name], width)
    G = integer_gradients(dtype)
    out = bucketwise(MGDA(), G, p)
    u = torch.finfo(dtype).eps / 2
    for idx in p:
        ref = MGDA()(G[:, idx])
        scale = G[:, idx].abs().max()
        atol = float((8 * u * 4 + gamma(4, dtype)) * scale)
        torch.testing.assert_close(out[idx], ref, rtol=0, atol=atol)
    use_width(p, None)


@pytest.mark.parametrize("agg", (UPGrad(), NashMTL()), ids=repr)
def test_other_gram_aggregators_follow_the_same_paths(agg):
    p = use_width(PARTITIONS["fsdp_ranks"], 7)
    G = integer_gradients(torch.float64, seed=2, K=3)
    out = bucketwise(agg, G, p)
    for idx in p:
        torch.testing.assert_close(out[idx], agg(G[:, idx]), rtol=1e-9, atol=1e-9)
    use_width(p, None)


def test_strided_gradients_are_accepted():
    p = PARTITIONS["zero_ranks"]
    G = gradients(torch.float64, seed=4).T.contiguous().T  # column-major storage
    assert G.stride(-1) != 1
    torch.testing.assert_close(bucketwise(MGDA(), G, p), bucketwise(MGDA(), G.contiguous(), p))


def test_normal_scales_read_G_only_twice(monkeypatch):
    """No bucket is read again when its Gram and every row are in range: the rescue pass
    never runs."""
    def fail(*args, **kwargs):
        raise AssertionError("rescue pass ran on in-range buckets")

    monkeypatch.setattr(bw, "_row_amax", fail)
    for dtype in DTYPES:
        for p in PARTITIONS.values():
            bucketwise(MGDA(), gradients(dtype, seed=6), p)


# -- Mean and Sum need no Gram (issue 8 §6) ----------------------------------------------

@pytest.mark.parametrize("agg", (Mean(), Sum()), ids=repr)
def test_mean_and_sum_are_applied_to_G_directly(agg):
    G = torch.full((4, 10), 1e20, dtype=torch.float32)  # squared norms overflow float32
    for p in (Partition.single(10), Partition.chunks(10, 3)):
        assert torch.equal(bucketwise(agg, G, p), agg(G))  # the same call: bitwise
    Gs = gradients(torch.float64, seed=7)
    assert torch.equal(bucketwise(agg, Gs, PARTITIONS["scattered"]), agg(Gs))


def test_mean_still_names_a_non_finite_bucket():
    G = gradients(torch.float32)
    G[2, 500] = float("nan")
    p = PARTITIONS["zero_ranks"]
    with pytest.raises(GradientError, match=f"bucket {int(p.bucket_of[500])}"):
        bucketwise(Mean(), G, p)


# -- scale: every bucket as if it were at scale 1 ----------------------------------------

SCALES = {torch.float64: (1e-300, 1e-170, 1e154, 1e300), torch.float32: (1e-30, 1e-23, 1e18, 1e30)}


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("width", (None, 7))
def test_extreme_buckets_equal_their_rescaled_result(dtype, width):
    """Buckets at extreme scales next to buckets at scale 1 give what the same buckets
    give at scale 1, multiplied back. Both sides solve from Grams that agree to
    rounding (within γ_n(dtype) relative, the scale being a power of ten, not two),
    so the comparison allows the solver that much: 1e-4 in float32, 1e-10 in float64."""
    p = use_width(PARTITIONS["zero_ranks"], width)
    G1 = gradients(torch.float64, seed=8)
    factor = torch.ones(len(p), dtype=torch.float64)
    for b, s in enumerate(SCALES[dtype]):
        factor[b] = s
    col_factor = factor[p.bucket_of]
    G = (G1 * col_factor).to(dtype)
    G_unit = (G.double() / col_factor).to(dtype)  # the same buckets, brought back to 1
    out = bucketwise(MGDA(), G, p)
    ref = bucketwise(MGDA(), G_unit, p).double() * col_factor
    rtol = 1e-4 if dtype == torch.float32 else 1e-10
    for idx in p:
        scale = float(G[:, idx].double().abs().max())
        torch.testing.assert_close(out[idx].double(), ref[idx], rtol=rtol, atol=rtol * scale)
    use_width(p, None)


@pytest.mark.parametrize("width", (None, 4))  # 4: the whole matrix is one padded tail
@pytest.mark.parametrize("dtype", DTYPES)
def test_issue_examples_at_extreme_scales(dtype, width):
    """Issue 8 §2: s·[[1,1],[-1,-2]] is not stationary at any scale s: Q = s²[[2,-3],[-3,5]],
    λ* = (8, 5)/13, and the update is s·(3, -2)/13 (at 1e-23 in float32 it was g₁)."""
    base = torch.tensor([[1.0, 1.0], [-1.0, -2.0]], dtype=torch.float64)
    expected = torch.tensor([3.0, -2.0], dtype=torch.float64) / 13
    for s in ((1e-170, 1e154, 1e-300) if dtype == torch.float64 else (1e-23, 1e-30, 1e18)):
        out = bucketwise(MGDA(), (s * base).to(dtype), use_width(Partition.single(2), width))
        torch.testing.assert_close(out.double() / s, expected, rtol=1e-5, atol=1e-6)


@pytest.mark.parametrize("width", (None, 4))  # 4: every bucket in a mixed tile or the tail
def test_zero_and_subnormal_buckets(width):
    p = use_width(Partition.from_sizes([3, 3, 3]), width)
    G = torch.zeros(2, 9, dtype=torch.float64)
    subnormal = torch.tensor([[1.0, 2.0, 0.0], [0.0, -1.0, 1.0]], dtype=torch.float64)
    subnormal *= 7 * 2.0 ** -1074
    G[:, 3:6] = subnormal
    assert bool((subnormal != 0).any())
    G[:, 6:] = torch.tensor([[1.0, 0.0, 1.0], [2.0, 1.0, 0.0]])
    out = bucketwise(MGDA(), G, p)
    assert torch.equal(out[:3], torch.zeros(3, dtype=torch.float64))
    torch.testing.assert_close(out[6:], MGDA()(G[:, 6:]))
    # The subnormal bucket as at scale 1: two roundings to the subnormal grid apart.
    ref = MGDA()(G[:, 3:6] * 2.0 ** 537 * 2.0 ** 537) * 2.0 ** -537 * 2.0 ** -537
    assert bool(ref.abs().max() > 0)
    torch.testing.assert_close(out[3:6], ref, rtol=0, atol=4 * 2.0 ** -1074)


def test_nash_mtl_keeps_its_scale_invariance():
    """Nash-MTL is homogeneous of degree 0: its weights scale as 1/c, and bucketwise
    must unscale them so (p read by one power-of-two step)."""
    p = Partition.from_sizes([20, 20])
    G1 = torch.randn(3, 40, generator=torch.Generator().manual_seed(9), dtype=torch.float64)
    G = G1.clone()
    G[:, :20] *= 1e160
    out = bucketwise(NashMTL(), G, p)
    torch.testing.assert_close(out, bucketwise(NashMTL(), G1, p), rtol=1e-8, atol=1e-8)


class TraceThreshold(GramAggregator):
    """Mean below a trace threshold, else the first row: not homogeneous."""

    def _weights_from_gram(self, Q, keys):
        K = Q.shape[-1]
        small = torch.diagonal(Q, dim1=-2, dim2=-1).sum(-1, keepdim=True) < 2.5
        first = torch.zeros(Q.shape[0], K, dtype=Q.dtype)
        first[:, 0] = 1
        return torch.where(small, torch.full_like(first, 1 / K), first)


class Doubled(GramAggregator):
    """w = (1, 1): the plain sum, but through Grams, so it can overflow its dtype."""

    def _weights_from_gram(self, Q, keys):
        return torch.ones(Q.shape[0], Q.shape[-1], dtype=Q.dtype)


def test_a_non_homogeneous_aggregator_is_refused_out_of_range():
    G = torch.tensor([[1.0, 0.5], [0.25, 1.0]], dtype=torch.float64) * 1e160
    with pytest.raises(GradientError, match="not scale-homogeneous"):
        bucketwise(TraceThreshold(), G, Partition.single(2))


def test_an_update_beyond_the_dtype_is_reported_by_bucket():
    G = torch.ones(2, 6, dtype=torch.float32)
    G[:, 3:] = 3e38
    p = Partition.from_sizes([3, 3], names=["small", "huge"])
    with pytest.raises(GradientError, match="bucket 1 \\('huge'\\) overflows torch.float32"):
        bucketwise(Doubled(), G, p)
    torch.testing.assert_close(bucketwise(Doubled(), G[:, :3], Partition.single(3)),
                               2 * torch.ones(3))


@pytest.mark.parametrize("dtype", DTYPES)
def test_non_finite_gradients_are_named(dtype):
    for value in (float("nan"), float("inf")):
        G = gradients(dtype, seed=10)
        p = use_width(PARTITIONS["fsdp_ranks"], 7)
        G[1, 123] = value
        with pytest.raises(GradientError, match=f"column 123, bucket {int(p.bucket_of[123])}"):
            bucketwise(MGDA(), G, p)
        use_width(p, None)
