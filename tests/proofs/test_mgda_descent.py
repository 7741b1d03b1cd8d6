"""proofs/mgda_descent.md: margin, steepness and fixed points of bucket-level MGDA."""

import math

import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from refmoo import MGDA, Partition, bucketwise, refined_pareto_stationarity
from refmoo.testing import (
    NON_STATIONARY,
    assert_bucketwise_non_conflicting,
    assert_non_conflicting,
    bucketed_matrices,
    degenerate_matrices,
    gradient_matrices,
    partitions,
)

from ._referee import REFEREE_TOL, phi, phi_p, row_scale

scales = {"min_exp": -8, "max_exp": 8}


@st.composite
def matrix_and_partition(draw):
    G = draw(st.one_of(gradient_matrices(K=st.integers(1, 6), D=st.integers(1, 10), **scales),
                       degenerate_matrices(min_exp=-8, max_exp=8)))
    return G, draw(partitions(G.shape[1]))


@settings(max_examples=40)
@given(st.one_of(matrix_and_partition(),
                 bucketed_matrices(contiguous=None, **scales).map(lambda c: c[:2])))
def test_bucket_mgda_margin(case):
    G, p = case
    a = bucketwise(MGDA(), G, p)
    sq = float(a @ a)
    scale2 = row_scale(G) ** 2
    # ‖a‖² = φ_P(G)² with φ_P from the referee ...
    assert abs(math.sqrt(sq) - phi_p(G, p)) <= REFEREE_TOL * row_scale(G)
    # ... and every language gains at least ‖a‖² to first order.
    assert float((G @ a).min()) >= sq - 1e-12 * scale2
    weights = refined_pareto_stationarity(G, p).weights
    for b, idx in enumerate(p):
        inner = G[:, idx] @ a[idx]
        block_sq = float(a[idx] @ a[idx])
        assert float(inner.min()) >= block_sq - 1e-12 * scale2
        # Attained on the support of the bucket's weights.
        support = weights[b] > 1e-9
        assert float((inner[support] - block_sq).abs().max()) <= 1e-12 * scale2
    in_every_bucket = (weights > 1e-9).all(0)
    if bool(in_every_bucket.any()):
        assert float((G @ a)[in_every_bucket].sub(sq).abs().max()) <= 1e-11 * scale2 * len(p)


@settings(max_examples=40)
@given(bucketed_matrices(contiguous=None, **scales))
def test_bucket_mgda_is_non_conflicting_in_every_bucket(case):
    G, p, kinds = case
    a = bucketwise(MGDA(), G, p)
    assert_bucketwise_non_conflicting(a, G, p)
    assert_non_conflicting(a, G)
    if NON_STATIONARY in kinds:
        # Not RPS: a strict common descent direction.
        assert float((G @ a).min()) > 0


@settings(max_examples=40)
@given(matrix_and_partition())
def test_normalised_rate_is_bracketed(case):
    G, p = case
    tol = REFEREE_TOL * row_scale(G)
    full = MGDA()(G)
    a = bucketwise(MGDA(), G, p)
    phi_full = phi(G)
    # Below tol the direction is rounding noise around an exact zero, and its angle is noise.
    if float(full.norm()) > tol:
        assert abs(float((G @ full).min()) / float(full.norm()) - phi_full) <= tol
    if float(a.norm()) > tol:
        rate = float((G @ a).min()) / float(a.norm())
        assert phi_p(G, p) - tol <= rate <= phi_full + tol


def test_normalised_rate_on_the_counterexample():
    G = torch.tensor([[1.0, 1.0], [-1.0, -2.0]], dtype=torch.float64)
    assert float(bucketwise(MGDA(), G, Partition.singletons(2)).abs().max()) <= 1e-15
    full = MGDA()(G)
    assert abs(float((G @ full).min()) / float(full.norm()) - 1 / math.sqrt(13)) < 1e-15


@settings(max_examples=40)
@given(bucketed_matrices(contiguous=None, **scales))
def test_fixed_points_are_exactly_rps(case):
    G, p, kinds = case
    a = bucketwise(MGDA(), G, p)
    rps = all(k != NON_STATIONARY for k in kinds)
    assert (float(a.norm()) <= 1e-12 * row_scale(G)) == rps
    # Bucket by bucket: the update vanishes exactly on the stationary buckets.
    for b, idx in enumerate(p):
        block_zero = float(a[idx].norm()) <= 1e-12 * row_scale(G)
        assert block_zero == (kinds[b] != NON_STATIONARY)


def test_full_mgda_can_conflict_inside_a_bucket():
    G = torch.tensor([[1.0, 1.0], [-1.0, -2.0]], dtype=torch.float64)
    full = MGDA()(G)
    assert torch.allclose(full, torch.tensor([3 / 13, -2 / 13], dtype=torch.float64), atol=1e-15)
    assert abs(float(G[1, 0] * full[0]) + 3 / 13) < 1e-15
    assert abs(float(G[1] @ full) - 1 / 13) < 1e-15
    assert_non_conflicting(full, G)
    S = Partition.singletons(2)
    try:
        assert_bucketwise_non_conflicting(full, G, S)
    except AssertionError as err:
        assert "bucket 0" in str(err) and "row 1" in str(err)
    else:
        raise AssertionError("full-vector MGDA should conflict with language 2 in bucket 0")
    assert_bucketwise_non_conflicting(MGDA(), G, S)
