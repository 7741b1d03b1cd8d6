"""Rows of very different norms in one Gram: solved exactly, or refused by name.

Inside a bucket one language's gradient can be many orders of magnitude below
another's. A Gram formed in G's dtype then flushes the small row's squares
(float32 rows about 1e-19 apart, float64 rows at entries below 1e-154), and the
row would pass for a zero row that the update may contradict. refmoo forms such
Grams from float64 products of the rescaled bucket, which holds rows down to about
1e-146 of the largest (``refmoo._scale.rows_in_range``); beyond that, or where a
float32 weight would fall below float32's normal range, it raises an error that
names the rows. Every path is checked: one matrix, the eager ``bucketwise``, and
the compiled kernel on equal chunks, against the exact referee.
"""

from __future__ import annotations

from fractions import Fraction
from unittest import mock

import numpy as np
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from refmoo import MGDA, Partition, UPGrad, bucketwise, fused_mgda
from refmoo._checks import GradientError
from refmoo._scale import rows_in_range
from refmoo.exact import exact_min_norm
from tests.test_exact_referee import _cosines

K_MAX, WIDTH, BUCKETS = 5, 8, 4
EPS64, EPS32 = torch.finfo(torch.float64).eps, torch.finfo(torch.float32).eps


def spread_buckets(seed: int, K: int, orders: float, scale: float) -> torch.Tensor:
    """K × (BUCKETS·WIDTH) float64, Gaussian rows scaled per bucket by 10^e_k, the e_k
    spread over ``orders`` orders of magnitude (both ends present) around ``scale``.
    With K < WIDTH the rows are independent, so the optimum leans on every row and
    a row taken for zero shows as a conflict."""
    rng = np.random.default_rng(seed)
    blocks = []
    for _ in range(BUCKETS):
        e = rng.uniform(-orders / 2, orders / 2, K)
        e[:2] = (-orders / 2, orders / 2)
        G = rng.standard_normal((K, WIDTH)) * 10.0 ** rng.permutation(e)[:, None]
        blocks.append(torch.tensor(G) * scale)
    return torch.cat(blocks, dim=1)


def paths(G: torch.Tensor, aggregator=None) -> dict[str, list[torch.Tensor]]:
    """The update of every bucket, by the kernel (equal chunks), by the eager path
    on the same buckets, and by the aggregator on each bucket alone."""
    aggregator = aggregator or MGDA()
    chunks = Partition.chunks(G.shape[1], WIDTH)
    with mock.patch.object(fused_mgda, "applies", return_value=False):
        eager = bucketwise(aggregator, G, chunks)
    out = {"eager": eager, "alone": torch.cat([aggregator(G[:, idx]) for idx in chunks])}
    if isinstance(aggregator, MGDA):
        out["kernel"] = bucketwise(aggregator, G, chunks)
    return {k: list(v.split(WIDTH)) for k, v in out.items()}


def _unit_scale(x: torch.Tensor, e: torch.Tensor | None = None) -> torch.Tensor:
    """x (float64) divided by a power of two (per row of a matrix): exact, and the
    referee's float conversions then neither overflow nor underflow."""
    x = x.double()
    if e is None:
        e = torch.frexp(x.abs().amax(-1, keepdim=True))[1]
    return torch.ldexp(x, -e)


def cosines(G: torch.Tensor, a: torch.Tensor) -> list[float]:
    """Exact cosines between the nonzero rows of G and a, at any scale."""
    return _cosines(_unit_scale(G), _unit_scale(a))


def check_exact(G: torch.Tensor, a: torch.Tensor, eps: float, where: tuple) -> None:
    """MGDA's update a of G against the exact optimum a* (value f*, support scale
    s = Σ λ*_k ‖g_k‖): |‖a‖² − f*| ≤ 1e-9·f* + c·eps·s² and every cosine ≥ −c·eps·s/‖a*‖
    (the per-row test's guarantee plus the rounding of a at the support's scale)."""
    e = torch.frexp(G.double().abs().amax())[1]
    Gs, a = _unit_scale(G, e), _unit_scale(a, e)
    exact = exact_min_norm(Gs)
    s = sum(float(w) * float(Fraction(sum(Fraction(x) ** 2 for x in g))) ** 0.5
            for w, g in zip(exact.weights, Gs.tolist(), strict=True))
    c = 20 * G.shape[0] + 2 * G.shape[1]
    f = sum(Fraction(x) ** 2 for x in a.tolist())
    assert abs(float(f - exact.value)) <= 1e-9 * float(exact.value) + c * eps * s * s, where
    assert min(cosines(G, a)) >= -c * eps * s / float(exact.value) ** 0.5, where


@pytest.mark.parametrize("spread", [(140.0, 1.0), (100.0, 1e-100), (30.0, 1e-160),
                                    (30.0, 1e150)], ids=str)
@settings(max_examples=6, deadline=None)
@given(seed=st.integers(0, 2**32 - 1), K=st.integers(2, K_MAX))
def test_float64_rows_140_orders_apart_are_exact_on_every_path(spread, seed, K):
    """float64 rows up to 1e-140 apart, also where the small rows' squares underflow
    (entries down to 1e-175) or the large rows' overflow (up to 1e165): every bucket's
    MGDA update is within 1e-9 of the exact optimum plus rounding at the support's
    scale, and conflicts with no row beyond that rounding."""
    orders, scale = spread
    G = spread_buckets(seed, K, orders, scale)
    for name, updates in paths(G).items():
        for b, a in enumerate(updates):
            check_exact(G[:, b * WIDTH:(b + 1) * WIDTH], a, EPS64, (name, b))


@pytest.mark.parametrize("spread", [(30.0, 1e-5), (20.0, 1e-25), (30.0, 1e20)], ids=str)
@settings(max_examples=6, deadline=None)
@given(seed=st.integers(0, 2**32 - 1), K=st.integers(2, K_MAX))
def test_float32_rows_30_orders_apart_are_exact_on_every_path(spread, seed, K):
    """float32 rows up to 1e-30 apart, whose squares a float32 Gram cannot hold next to
    each other (from 1e10 down to 1e-20, 1e-15 down to 1e-35, 1e35 down to 1e5): the
    update is the exact optimum's to float32's rounding."""
    orders, scale = spread
    G = spread_buckets(seed, K, orders, scale).float()
    for name, updates in paths(G).items():
        for b, a in enumerate(updates):
            check_exact(G[:, b * WIDTH:(b + 1) * WIDTH], a, EPS32, (name, b))


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
@settings(max_examples=6, deadline=None)
@given(seed=st.integers(0, 2**32 - 1))
def test_upgrad_holds_rows_30_orders_apart(dtype, seed):
    """Any Gram aggregator takes the same Grams: UPGrad's update conflicts with no row
    beyond rounding (its bound: a cosine of −100·K·eps, refmoo.aggregators._dual_cone)."""
    G = spread_buckets(seed, 4, 30.0, 1e-5).to(dtype)
    eps = EPS64 if dtype == torch.float64 else EPS32
    for name, updates in paths(G, UPGrad()).items():
        for b, a in enumerate(updates):
            assert min(cosines(G[:, b * WIDTH:(b + 1) * WIDTH], a)) >= -400 * eps, (name, b)


def far_apart(dtype: torch.dtype, small: float, large: float) -> torch.Tensor:
    """Two rows per bucket, 1e-150 apart in norm (float64) or with a weight that must
    fall below float32's normal range: random signs, so that both rows get weight."""
    gen = torch.Generator().manual_seed(7)
    G = torch.randn(2, BUCKETS * WIDTH, dtype=torch.float64, generator=gen)
    G[0] *= large
    G[1] *= small
    return G.to(dtype)


@pytest.mark.parametrize("dtype, small, large, match", [
    (torch.float64, 1e-150, 1.0, r"row 1 of G.* is too small next to row 0.*about 1e-146"),
    (torch.float32, 1e-15, 1e30, r"span more than torch.float32 holds.*cast G to float64"),
], ids=["float64 rows 1e-150 apart", "float32 weights below its range"])
def test_rows_beyond_the_range_are_refused_by_name_on_every_path(dtype, small, large, match):
    G = far_apart(dtype, small, large)
    chunks = Partition.chunks(G.shape[1], WIDTH)
    with pytest.raises(GradientError, match=match) as kernel:
        bucketwise(MGDA(), G, chunks)
    with mock.patch.object(fused_mgda, "applies", return_value=False), \
            pytest.raises(GradientError, match=match) as eager:
        bucketwise(MGDA(), G, chunks)
    assert str(kernel.value) == str(eager.value)  # the kernel hands the call over
    assert "bucket" in str(eager.value)
    refused = 0
    for idx in chunks:  # each bucket alone: the buckets whose weights need it refuse
        try:
            MGDA()(G[:, idx])
        except GradientError as error:
            assert error.args[0].startswith(str(eager.value).split(" for bucket")[0]) or \
                dtype == torch.float64
            refused += 1
    assert refused >= 1 if dtype == torch.float32 else refused == BUCKETS
    if dtype == torch.float32:  # the remedy the message gives works
        G64 = G.double()
        for b, a in enumerate(bucketwise(MGDA(), G64, chunks).split(WIDTH)):
            assert min(cosines(G64[:, b * WIDTH:(b + 1) * WIDTH], a)) >= -1e-9


def test_the_kernel_leaves_out_of_range_buckets_to_the_eager_path():
    G = far_apart(torch.float64, 1e-150, 1.0)
    out = torch.empty(G.shape[1], dtype=G.dtype)
    status = fused_mgda.mgda_tiles(G, WIDTH, out)[2]
    assert status.tolist() == [fused_mgda.OUT_OF_RANGE] * BUCKETS


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
def test_zero_rows_are_read_found_zero_and_change_nothing(dtype):
    """A language absent from a bucket (a zero row) fails rows_in_range like a flushed
    row; read, it is found zero: MGDA's update there is exactly 0 (the zero row is the
    min-norm point), UPGrad's conflicts with no row, and the other buckets keep theirs."""
    G = spread_buckets(3, 4, 10.0, 1.0).to(dtype)
    G[2, :WIDTH] = 0
    eps = EPS64 if dtype == torch.float64 else EPS32
    for name, updates in paths(G).items():
        assert not bool(updates[0].any()), name
        for b, a in enumerate(updates[1:], start=1):
            check_exact(G[:, b * WIDTH:(b + 1) * WIDTH], a, eps, (name, b))
    for name, updates in paths(G, UPGrad()).items():
        assert min(cosines(G[:, :WIDTH], updates[0])) >= -400 * eps, name


def test_rows_in_range_marks_flushed_and_distant_rows():
    info = torch.finfo(torch.float32)
    Q = torch.diag(torch.tensor([1.0, 2.0**-900, 2.0**-1000, 0.0], dtype=torch.float64))
    assert rows_in_range(Q, 1, torch.float64).tolist() == [True, True, False, False]
    # float32 products: a squared norm below n·tiny/u may have lost its last bits.
    floor = 100 * info.tiny / (info.eps / 2)
    Q = torch.diag(torch.tensor([1.0, floor, floor * (1 - 1e-9)], dtype=torch.float64))
    assert rows_in_range(Q, 100, torch.float32).tolist() == [True, True, False]
    # The relative bound is exact under power-of-two scaling.
    assert rows_in_range(Q * 2.0**40, 100, torch.float32).tolist() == [True, True, True]
    assert np.all(rows_in_range(Q[None].repeat(3, 1, 1), torch.tensor([100] * 3),
                                torch.float32).numpy() == [[True, True, False]] * 3)


# -- the audit's reproducers -------------------------------------------------------------

@pytest.mark.parametrize("G", [
    torch.tensor([[1e21, 0.0], [-1e-25, 1e-26]], dtype=torch.float32),
    torch.tensor([[1e300, 0.0], [-1e-30, 1e-31]], dtype=torch.float64),
], ids=["float32", "float64"])
@pytest.mark.parametrize("aggregator", [MGDA(), UPGrad()], ids=repr)
def test_a_row_that_vanishes_when_g_is_rescaled_is_not_taken_for_zero(G, aggregator):
    """Rescaled to its largest entry, the small row underflows to 0: one matrix alone
    must refuse it as bucketwise does, not return the small row (cosine −0.995).
    (UPGrad's float32 weight on the small row, about 1e46, overflows first.)"""
    refusal = "span more than|too small next to|overflows"
    with pytest.raises(GradientError, match=refusal):
        aggregator(G)
    with pytest.raises(GradientError, match=refusal):
        bucketwise(aggregator, G, Partition.single(2))


@pytest.mark.parametrize("aggregator", [MGDA(), UPGrad()], ids=repr)
def test_an_all_subnormal_float32_g_is_solved(aggregator):
    G = torch.tensor([[1e-40, 0.0], [0.0, 1e-40]], dtype=torch.float32)
    a = aggregator(G)
    # Bitwise by construction: orthogonal rows with one nonzero entry each, so every
    # Gram entry is a single exact product (no summation order to differ by CPU), and
    # both paths scale by the same power of two.
    assert torch.equal(a, bucketwise(aggregator, G, Partition.single(2)))
    assert min(cosines(G, a)) >= -1e-6 and bool(a.any())


@pytest.mark.parametrize("dtype", [torch.float16, torch.bfloat16])
def test_half_precision_gradients_of_ordinary_size_are_solved(dtype):
    """float16's own Grams hold little (n·tiny/u = n/8), so its buckets take float64
    Grams; weights below float16's normal range are rounded within its rounding."""
    gen = torch.Generator().manual_seed(0)
    G = (torch.randn(4, 4096, generator=gen) * 1e-3).to(dtype)
    G[1] *= 1e-2
    chunks = Partition.chunks(4096, 1024)
    a = bucketwise(MGDA(), G, chunks)
    for idx in chunks:
        assert min(cosines(G[:, idx], a[idx])) >= -1e-2  # half precision's rounding
        alone = MGDA()(G[:, idx])
        assert min(cosines(G[:, idx], alone)) >= -1e-2


def test_the_limit_does_not_depend_on_how_many_columns_are_zero():
    """Rows 4e-145 apart, the large one sparse: inside the limit on every path (the
    eager path once counted every column of a bucket against the small row)."""
    W = 4096
    G = torch.zeros(2, 2 * W, dtype=torch.float64)
    G[0, 0] = G[0, W] = 0.75
    G[1, 1] = G[1, 2] = 2.0**-480
    G[1, W + 1] = -(2.0**-480)
    chunks = Partition.chunks(2 * W, W)
    kernel = bucketwise(MGDA(), G, chunks)
    with mock.patch.object(fused_mgda, "applies", return_value=False):
        plain = bucketwise(MGDA(), G, chunks)
    torch.testing.assert_close(plain, kernel, rtol=1e-12, atol=0)
    torch.testing.assert_close(MGDA()(G[:, :W]), kernel[:W], rtol=1e-12, atol=0)
    for b, a in enumerate(kernel.split(W)):
        check_exact(G[:, b * W:(b + 1) * W], a, EPS64, b)


def test_orthogonal_rows_32_orders_apart_are_not_refused():
    """The large row's weight (1e-64) is far below float32's range, but what rounding
    it costs, at most u·tiny·‖g₀‖, is below the update's own rounding."""
    G = torch.zeros(2, 32)
    G[0, ::2] = 1e16
    G[1, 1::2] = 1e-16
    a = bucketwise(MGDA(), G, Partition.chunks(32, 8))
    torch.testing.assert_close(a, G[1], rtol=1e-6, atol=0)


def test_the_error_names_the_row_that_is_refused():
    G = torch.zeros(3, 4096, dtype=torch.float64)
    G[0] = 0.5
    G[1, 0] = 3e-145  # ‖g₁‖² = 9e-290: below 2^-969 of ‖g₀‖² = 1024
    G[2] = 1e-145  # ‖g₂‖² = 4e-287: inside
    with pytest.raises(GradientError, match=r"row 1 of G \(largest entry 3e-145\)"):
        MGDA()(G)
    with pytest.raises(GradientError, match=r"row 1 of G in bucket 0"):
        bucketwise(MGDA(), G, Partition.single(4096))
