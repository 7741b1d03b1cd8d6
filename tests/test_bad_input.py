"""Bad input gets an error that names the problem, never a silent wrong answer."""

import pytest
import torch

from refmoo import (
    MGDA,
    GradientError,
    Mean,
    Partition,
    PartitionError,
    bucketwise,
    min_norm_weights,
    pareto_stationarity,
    refined_pareto_stationarity,
)


@pytest.mark.parametrize("bad", [float("nan"), float("inf"), -float("inf")])
def test_non_finite_gradient_names_language_and_bucket(bad):
    G = torch.zeros(3, 6, dtype=torch.float64)
    G[2, 4] = bad
    p = Partition.from_sizes([3, 3], names=["embed", "head"])
    with pytest.raises(GradientError, match=r"row 2 \(language 2\).*bucket 1 \('head'\)"):
        bucketwise(MGDA(), G, p)
    with pytest.raises(GradientError, match="row 2"):
        MGDA()(G)
    with pytest.raises(GradientError, match="bucket 1"):
        refined_pareto_stationarity(G, p)


def test_partition_shape_mismatch():
    with pytest.raises(PartitionError, match="5 columns but the partition covers 6"):
        bucketwise(Mean(), torch.zeros(2, 5), Partition.chunks(6, 2))


def test_zero_languages():
    with pytest.raises(GradientError, match="K = 0"):
        MGDA()(torch.zeros(0, 4))
    with pytest.raises(GradientError, match="K = 0"):
        min_norm_weights(torch.zeros(0, 0))


@pytest.mark.parametrize("shape", [(4,), (2, 3, 4)])
def test_wrong_rank_of_gradient(shape):
    with pytest.raises(GradientError, match="must be 2-D"):
        pareto_stationarity(torch.zeros(shape))


def test_integer_gradient_is_rejected():
    with pytest.raises(GradientError, match="floating point"):
        MGDA()(torch.zeros(2, 3, dtype=torch.long))


def test_non_square_gram():
    with pytest.raises(GradientError, match=r"\[\.\.\., K, K\]"):
        min_norm_weights(torch.zeros(3, 2))


def test_non_finite_gram():
    Q = torch.eye(2)
    Q[0, 1] = float("nan")
    with pytest.raises(GradientError, match="non-finite entry at index"):
        min_norm_weights(Q)


def test_single_language_is_valid_and_returns_its_gradient():
    g = torch.tensor([[1.0, -2.0, 3.0]], dtype=torch.float64)
    torch.testing.assert_close(MGDA()(g), g[0])
    torch.testing.assert_close(bucketwise(MGDA(), g, Partition.chunks(3, 2)), g[0])


def test_a_float32_gram_that_would_overflow_is_rescaled_not_returned_as_inf():
    # (3e20)² overflows float32: bucketwise rescales that bucket by a power of two
    # before forming its Gram, so the answer is the float64 one rounded to float32.
    G = torch.tensor([[3e20, 0.0], [0.0, 1.0]], dtype=torch.float32)
    out = bucketwise(MGDA(), G, Partition.single(2))
    expected = bucketwise(MGDA(), G.double(), Partition.single(2))
    assert bool(torch.isfinite(out).all()) and float(out[0]) > 0
    # Norm-wise: the first weight, about 1e-41, is subnormal in float32 and keeps only
    # a few bits, which costs nothing at the scale of the update.
    u = 2.0**-24
    torch.testing.assert_close(out.double(), expected, rtol=0,
                               atol=4 * u * float(expected.abs().max()))
