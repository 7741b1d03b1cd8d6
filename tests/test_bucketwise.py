import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from refmoo import MGDA, Mean, Partition, bucket_grams, bucketwise, combine
from refmoo.testing import gradient_matrices, partitions


@st.composite
def matrix_and_partition(draw):
    G = draw(gradient_matrices(K=st.integers(1, 5), D=st.integers(1, 24)))
    return G, draw(partitions(G.shape[1]))


@settings(max_examples=60)
@given(matrix_and_partition())
def test_bucket_grams_sum_to_the_full_gram(case):
    G, p = case
    torch.testing.assert_close(bucket_grams(G, p).sum(0), G @ G.T, rtol=1e-12, atol=1e-12)


@settings(max_examples=60)
@given(matrix_and_partition())
def test_bucket_grams_match_each_block(case):
    G, p = case
    Q = bucket_grams(G, p)
    for b, idx in enumerate(p):
        torch.testing.assert_close(Q[b], G[:, idx] @ G[:, idx].T, rtol=1e-12, atol=1e-12)


@settings(max_examples=60)
@given(matrix_and_partition(), st.integers(0, 2**31 - 1))
def test_combine_applies_each_bucket_its_weights(case, seed):
    G, p = case
    W = torch.rand(len(p), G.shape[0], generator=torch.Generator().manual_seed(seed),
                   dtype=torch.float64)
    out = combine(G, W, p)
    for b, idx in enumerate(p):
        torch.testing.assert_close(out[idx], W[b] @ G[:, idx], rtol=1e-12, atol=1e-12)


def test_mixed_sizes_and_scattered_buckets():
    G = torch.randn(3, 11, dtype=torch.float64)
    p = Partition([[10, 0, 3], [1], [2, 9, 4], [5, 6, 7, 8]])
    out = bucketwise(MGDA(), G, p)
    for idx in p:
        torch.testing.assert_close(out[idx], MGDA()(G[:, idx]), rtol=1e-12, atol=1e-14)


def test_mean_bucketwise_is_the_plain_mean():
    G = torch.randn(4, 20, dtype=torch.float64)
    torch.testing.assert_close(bucketwise(Mean(), G, Partition.chunks(20, 3)), G.mean(0))


def test_float32_stays_float32():
    G = torch.randn(3, 8)
    assert bucketwise(MGDA(), G, Partition.chunks(8, 3)).dtype == torch.float32


def test_keys_choose_each_buckets_randomness():
    from refmoo import GradDrop, PCGrad

    G = torch.randn(4, 9, dtype=torch.float64)
    p = Partition.from_sizes([4, 5])
    for agg in (PCGrad(seed=1), GradDrop(seed=1)):
        out = bucketwise(agg, G, p, keys=[7, 3])
        for idx, key in zip(p, (7, 3), strict=True):
            torch.testing.assert_close(out[idx], agg(G[:, idx], key=key))


def test_wrong_number_of_keys_is_rejected():
    import pytest

    with pytest.raises(ValueError, match="1 keys given for 2 buckets"):
        bucketwise(MGDA(), torch.randn(2, 4), Partition.from_sizes([2, 2]), keys=[0])


@settings(max_examples=40)
@given(matrix_and_partition(), st.sampled_from(["MGDA", "Mean", "Sum"]))
def test_out_receives_the_update(case, name):
    """``out=`` writes the update into a caller's buffer and returns that buffer. The
    same products run on the same views; only the destination differs, and BLAS may
    sum a K-term product in another order for another alignment, so each column may
    differ by that rounding: 2·K·eps·Σ_k|w_bk||g_kj| ≤ 2·K·eps·Σ_k|g_kj| (|w_bk| ≤ 1 for
    these aggregators)."""
    from refmoo import Sum

    G, p = case
    agg = {"MGDA": MGDA(), "Mean": Mean(), "Sum": Sum()}[name]
    expected = bucketwise(agg, G, p)
    buffer = torch.full((G.shape[1],), float("nan"), dtype=G.dtype)
    result = bucketwise(agg, G, p, out=buffer)
    assert result is buffer
    bound = 2 * G.shape[0] * torch.finfo(G.dtype).eps * G.abs().sum(0)
    assert bool(((result - expected).abs() <= bound).all())


def test_out_is_checked_before_any_work():
    import pytest

    G = torch.randn(2, 6)
    p = Partition.chunks(6, 3)
    cases = [
        (torch.empty(5), r"out must have shape \(6,\)"),
        (torch.empty(6, dtype=torch.float64), "must be torch.float32"),
        (torch.empty(12)[::2], "must be contiguous"),
        (G[0], "overlaps G in memory"),
        (torch.empty(6, requires_grad=True), "must not require grad"),
    ]
    for out, message in cases:
        with pytest.raises(ValueError, match=message):
            bucketwise(MGDA(), G, p, out=out)


def test_out_is_refused_exactly_when_it_overlaps_g_in_memory():
    """Separate storages over the same bytes overlap; adjacent slices of one buffer don't."""
    import numpy as np
    import pytest

    flat = torch.randn(4 * 64)
    G = flat[:192].view(3, 64)
    p = Partition.chunks(64, 16)
    expected = bucketwise(MGDA(), G.clone(), p)
    torch.testing.assert_close(bucketwise(MGDA(), G, p, out=flat[192:]), expected)
    a = np.random.default_rng(0).standard_normal(256).astype(np.float32)
    aliased = torch.from_numpy(a[:192].reshape(3, 64)), torch.from_numpy(a[64:128])
    with pytest.raises(ValueError, match="overlaps G in memory"):
        bucketwise(MGDA(), aliased[0], p, out=aliased[1])


def test_rows_below_the_gram_range_in_many_buckets():
    """432 equal buckets (the unrolled solver's threshold for K = 3) whose small rows make
    the Gram entries subnormal at G's scale (1e-140 of the large row: in range once
    rescaled): each gets the exact update, as 431 do. Rows 1e-158 apart are refused
    (tests/test_row_range.py): there the weights were 3e-7 off."""
    from fractions import Fraction

    from refmoo.exact import exact_min_norm

    s, t = 2.0**-64, 2.0**-530  # 5e-20 and 3e-160, so that the referee's floats are exact
    GA = torch.tensor([[5.0 * s, 0, 0], [-0.3 * t, 0.7 * t, 0], [-0.5 * t, 0, 0.9 * t]],
                      dtype=torch.float64)
    lam = exact_min_norm(GA / t).weights  # the same weights as GA's: scale-free
    exact = [float(sum(w * Fraction(g) for w, g in zip(lam, col, strict=True)))
             for col in (GA / t).T.tolist()]
    for n in (431, 432):
        out = bucketwise(MGDA(), GA.repeat(1, n), Partition.chunks(3 * n, 3))
        torch.testing.assert_close(out / t, torch.tensor(exact, dtype=torch.float64).repeat(n),
                                   rtol=1e-9, atol=1e-9)


def test_g_that_requires_grad_gets_a_clear_error():
    import pytest

    from refmoo._checks import GradientError

    G = torch.randn(2, 6, requires_grad=True)
    with pytest.raises(GradientError, match=r"G requires grad.*pass G.detach\(\)"):
        bucketwise(MGDA(), G, Partition.chunks(6, 3))
    bucketwise(MGDA(), G.detach(), Partition.chunks(6, 3))
