"""proofs/pcgrad_cagrad.md: which PCGrad/CAGrad guarantees survive bucket-wise application."""

import itertools
import math
from fractions import Fraction

import numpy as np
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from refmoo import AGGREGATORS, CAGrad, Mean, Partition, PCGrad, bucketwise, get_aggregator
from refmoo.testing import (
    assert_non_conflicting,
    assert_not_pareto_stationary,
    assert_pareto_stationary,
    degenerate_matrices,
    gradient_matrices,
    partitions,
)

from ._referee import all_pcgrad_orders, cagrad_primal, pcgrad_with_orders, row_scale

scales = {"min_exp": -6, "max_exp": 6}


ANY_K, ANY_D = st.integers(1, 5), st.integers(1, 8)


@st.composite
def matrix_and_partition(draw, K=ANY_K, D=ANY_D, degenerate=True, kind=None):
    options = [gradient_matrices(kind=kind, K=K, D=D, **scales)]
    if degenerate:
        options.append(degenerate_matrices(min_exp=-6, max_exp=6))
    G = draw(st.one_of(*options))
    return G, draw(partitions(G.shape[1]))


# At stationary buckets some aggregators (Nash-MTL) return rounding-level vectors whose
# batched and per-bucket values differ by about 1e-9 of the scale; 1e-7 still catches any
# misplaced bucket or wrong key, which are errors of order one.
@settings(max_examples=15)
@given(matrix_and_partition(K=st.integers(2, 4), D=st.integers(2, 8), degenerate=False,
                            kind="non-stationary"),
       st.integers(0, 2**32 - 1))
def test_bucket_additivity(case, seed):
    G, p = case
    u = torch.from_numpy(np.random.default_rng(seed).standard_normal(G.shape[1]))
    for name in AGGREGATORS:
        aggregator = get_aggregator(name)
        d = bucketwise(aggregator, G, p)
        # bucketwise is the concatenation of the per-bucket calls (bucket b uses key b) ...
        blocks = [aggregator(G[:, idx], key=b) for b, idx in enumerate(p)]
        pieces = sum(float(u[idx] @ blk) for idx, blk in zip(p, blocks, strict=True))
        # Batched and per-bucket solves round differently: compare at the scale of G.
        scale = float(u.norm()) * (float(d.norm()) + row_scale(G))
        # ... so the inner product and the squared distance split over the buckets.
        assert abs(float(u @ d) - pieces) <= 1e-7 * scale, name
        dist = sum(float((u[idx] - blk).square().sum()) for idx, blk in zip(p, blocks, strict=True))
        size = (float(u.norm()) + float(d.norm()) + row_scale(G)) ** 2
        assert abs(float((u - d).square().sum()) - dist) <= 1e-7 * size, name


# ---------------------------------------------------------------- PCGrad

two_languages = matrix_and_partition(K=st.just(2), D=st.integers(1, 8)).filter(
    lambda case: case[0].shape[0] == 2)


@settings(max_examples=40)
@given(two_languages)
def test_pcgrad_two_languages_never_conflict(case):
    G, p = case
    g1, g2 = G
    d = PCGrad()(G)
    tol = 1e-12 * row_scale(G) ** 2
    if float(g1 @ g2) >= 0:
        assert torch.allclose(d, g1 + g2, rtol=0, atol=1e-15 * row_scale(G))
        assert float(G[0] @ d) >= float(g1 @ g1) - tol and float(G[1] @ d) >= float(g2 @ g2) - tol
    else:
        pc1 = g1 - (g1 @ g2) / (g2 @ g2) * g2
        pc2 = g2 - (g1 @ g2) / (g1 @ g1) * g1
        assert abs(float(g1 @ d) - float(pc1 @ pc1)) <= tol
        assert abs(float(g2 @ d) - float(pc2 @ pc2)) <= tol
    d_p = bucketwise(PCGrad(), G, p)
    assert_non_conflicting(d_p, G)
    assert float((g1 + g2) @ d_p) >= -tol


@settings(max_examples=40)
@given(st.one_of(gradient_matrices(K=2, D=st.integers(1, 6), **scales),
                 degenerate_matrices(K=2, min_exp=-6, max_exp=6)))
def test_pcgrad_two_languages_zero_update_characterised(G):
    d = PCGrad()(G)
    g1, g2 = G
    scale = row_scale(G)
    zero = float(d.norm()) <= 1e-12 * scale
    antiparallel = float(g1 @ g2) < 0 and abs(
        float((g1 @ g2) ** 2) - float((g1 @ g1) * (g2 @ g2))) <= 1e-12 * scale**4
    assert zero == (scale == 0 or antiparallel)
    if zero:
        assert_pareto_stationary(G)


@settings(max_examples=40)
@given(gradient_matrices(K=2, D=st.integers(1, 8), **scales))
def test_singleton_pcgrad_is_a_sign_agreement_mask(G):
    d = bucketwise(PCGrad(), G, Partition.singletons(G.shape[1]))
    agree = G[0] * G[1] >= 0
    expected = torch.where(agree, G[0] + G[1], torch.zeros_like(G[0]))
    assert torch.allclose(d, expected, rtol=1e-12, atol=1e-15 * row_scale(G))


def test_bucket_pcgrad_stalls_at_a_non_ps_point():
    G = torch.tensor([[1.0, 1.0], [-1.0, -2.0]], dtype=torch.float64)
    # Bitwise by construction: small integers, every projection coefficient is a
    # power of two or 1, so both projected rows cancel to exactly 0.
    assert torch.equal(bucketwise(PCGrad(), G, Partition.singletons(2)), torch.zeros(2,
                       dtype=torch.float64))
    d = PCGrad()(G)
    assert torch.allclose(d, torch.tensor([0.9, -0.7], dtype=torch.float64), atol=1e-15)
    assert torch.allclose(G @ d, torch.tensor([0.2, 0.5], dtype=torch.float64), atol=1e-15)
    assert_not_pareto_stationary(G)
    E = _exact([[1, 1], [-1, -2]])
    assert _projected_row(E, 0, [1]) == [Fraction(2, 5), Fraction(-1, 5)]
    assert _projected_row(E, 1, [0]) == [Fraction(1, 2), Fraction(-1, 2)]


def _exact(rows):
    return [[Fraction(x) for x in row] for row in rows]


def _dot(u, v):
    return sum(a * b for a, b in zip(u, v, strict=True))


def _projected_row(G, i, order):
    g = list(G[i])
    for j in order:
        inner = _dot(g, G[j])
        if inner < 0:
            g = [x - inner / _dot(G[j], G[j]) * y for x, y in zip(g, G[j], strict=True)]
    return g


def _exact_pcgrad(G, orders):
    out = [Fraction(0)] * len(G[0])
    for i, order in enumerate(orders):
        out = [a + b for a, b in zip(out, _projected_row(G, i, order), strict=True)]
    return out


def _row_options(G, i):
    others = [j for j in range(len(G)) if j != i]
    return {order: tuple(map(str, _projected_row(G, i, order)))
            for order in itertools.permutations(others)}


THREE = [[0, -1, -1], [2, 0, 1], [-1, 1, -1]]
FULL_TABLE = {("7/5", "7/10", "-19/10"): ("6/5", "9/10", "6/5"),
              ("7/5", "2/5", "-11/5"): ("9/5", "3/5", "6/5"),
              ("8/5", "1/2", "-17/10"): ("6/5", "3/2", "3/5"),
              ("8/5", "1/5", "-2"): ("9/5", "6/5", "3/5")}
BUCKET_TABLE = {("1/2", "1/2", "0"): ("-1/2", "1", "0"),
                ("1/2", "-1/2", "0"): ("1/2", "1", "-1"),
                ("1", "1/2", "0"): ("-1/2", "2", "-1/2"),
                ("1", "-1/2", "0"): ("1/2", "2", "-3/2")}


def _table(G, direction_of):
    table = {}
    for orders in all_pcgrad_orders(len(G)):
        d = direction_of(orders)
        table[tuple(map(str, d))] = tuple(str(_dot(g, d)) for g in G)
    return table


def test_bucket_pcgrad_conflicts_where_full_pcgrad_does_not():
    G = _exact(THREE)
    block = [row[:2] for row in G]
    # The projections listed in the proof, order by order.
    assert _row_options(block, 0) == {(1, 2): ("-1/2", "-1/2"), (2, 1): ("0", "-1/2")}
    assert _row_options(block, 1) == {(0, 2): ("1", "1"), (2, 0): ("1", "0")}
    assert set(_row_options(block, 2).values()) == {("0", "0")}
    assert set(_row_options(G, 0).values()) == {("1/5", "-4/5", "-1"), ("2/5", "-1", "-4/5")}
    assert set(_row_options(G, 1).values()) == {("1", "1/2", "-1/2")}
    assert set(_row_options(G, 2).values()) == {("1/5", "1", "-2/5"), ("1/5", "7/10", "-7/10")}
    full = _table(G, lambda orders: _exact_pcgrad(G, orders))
    assert full == FULL_TABLE
    assert min(min(Fraction(v) for v in row) for row in full.values()) == Fraction(3, 5)
    bucket = _table(G, lambda orders: _exact_pcgrad(block, orders) + [Fraction(0)])
    # Bucket {2} is masked to 0 for every order (each entry meets one of the other sign).
    for orders in all_pcgrad_orders(3):
        assert _exact_pcgrad([row[2:] for row in G], orders) == [0]
    assert bucket == BUCKET_TABLE
    assert max(min(Fraction(v) for v in row) for row in bucket.values()) == Fraction(-1, 2)
    # refmoo's keyed random orders land in the tables, whatever the seed.
    Gt = torch.tensor(THREE, dtype=torch.float64)
    p = Partition([[0, 1], [2]])
    for seed in range(8):
        assert float((Gt @ PCGrad(seed)(Gt)).min()) >= 0.6 - 1e-12
        assert float((Gt @ bucketwise(PCGrad(seed), Gt, p)).min()) <= -0.5 + 1e-12


def test_full_pcgrad_can_conflict_with_three_languages():
    G = [[-2, -1], [0, 1], [1, 0]]
    worst = [min(_dot(g, _exact_pcgrad(_exact(G), o)) for g in _exact(G))
             for o in all_pcgrad_orders(3)]
    assert max(worst) == Fraction(-1, 5)
    Gt = torch.tensor(G, dtype=torch.float64)
    reference = [float((Gt @ torch.from_numpy(pcgrad_with_orders(Gt.numpy(), o))).min())
                 for o in all_pcgrad_orders(3)]
    assert abs(max(reference) + 0.2) < 1e-15


# ---------------------------------------------------------------- CAGrad

cs = st.sampled_from([0.0, 0.25, 0.5, 0.9, 1.0, 1.5])


@settings(max_examples=30)
@given(matrix_and_partition(K=st.integers(1, 4), D=st.integers(1, 6)), cs)
def test_cagrad_guarantees_that_survive_bucketing(case, c):
    G, p = case
    d_p = bucketwise(CAGrad(c=c, rescale=0), G, p)
    g0 = G.mean(0)
    n0 = float(g0.norm())
    scale = row_scale(G)
    tol = 1e-9 * scale
    # The cvxpy primal agrees with refmoo bucket by bucket on the worst-language value.
    for idx in p:
        block = G[:, idx].numpy()
        ref = cagrad_primal(block, c)
        assert abs(float((block @ ref).min()) - float((G[:, idx] @ d_p[idx]).min())) <= 1e-6 * (
            scale**2 + 1e-300)
    assert float((d_p - g0).norm()) <= c * n0 + tol                     # item 1
    assert float(g0 @ d_p) >= (1 - c) * n0**2 - tol * scale             # item 2
    if c >= 1:
        assert_non_conflicting(d_p, G, rtol=1e-9, scale_tol=1e-9)     # item 3
    full = CAGrad(c=c, rescale=0)(G)
    if c < 1:                                                          # item 4
        zero = float(d_p.norm()) <= tol
        assert zero == (n0 <= tol) == (float(full.norm()) <= tol)
        if zero:
            assert_pareto_stationary(G)
    # rescale=2 divides by 1 + c: signs are unchanged.
    assert torch.allclose(bucketwise(CAGrad(c=c), G, p) * (1 + c), d_p, rtol=1e-12,
                          atol=1e-15 * scale)


@settings(max_examples=40)
@given(gradient_matrices(K=st.integers(1, 5), D=st.integers(1, 8), **scales),
       st.sampled_from([0.0, 0.3, 0.5, 0.9, 1.0]))
def test_singleton_cagrad_is_no_worse_than_the_mean_per_language(G, c):
    d_s = bucketwise(CAGrad(c=c, rescale=0), G, Partition.singletons(G.shape[1]))
    g0 = G.mean(0)
    assert bool((G @ d_s >= (1 - c) * (G @ g0) - 1e-12 * row_scale(G) ** 2).all())


def test_bucket_cagrad_rate_is_below_full_and_can_be_below_mean():
    G = torch.tensor([[-1.0, 10.0], [10.0, -1.0]], dtype=torch.float64)
    S, c = Partition.singletons(2), 0.5
    full = float((G @ CAGrad(c=c, rescale=0)(G)).min())
    mean = float((G @ Mean()(G)).min())
    bucket = float((G @ bucketwise(CAGrad(c=c, rescale=0), G, S)).min())
    assert abs(full - 243 / 4) < 1e-12 and mean == 81 / 2 and abs(bucket - 81 / 4) < 1e-12
    referee = torch.from_numpy(cagrad_primal(G.numpy(), c))
    assert abs(float((G @ referee).min()) - 243 / 4) < 1e-6


@settings(max_examples=30)
@given(matrix_and_partition(K=st.integers(2, 4), D=st.integers(2, 6), degenerate=False),
       st.sampled_from([0.0, 0.25, 0.5, 0.9]))
def test_bucket_cagrad_rate_never_exceeds_full(case, c):
    G, p = case
    full = float((G @ CAGrad(c=c, rescale=0)(G)).min())
    bucket = float((G @ bucketwise(CAGrad(c=c, rescale=0), G, p)).min())
    assert bucket <= full + 1e-9 * row_scale(G) ** 2


def test_bucket_cagrad_can_conflict_where_the_mean_does_not():
    G = torch.tensor([[0.0, 2.0, -3.0], [0.0, -3.0, 1.0], [-1.0, 0.0, 0.0]], dtype=torch.float64)
    p, c = Partition([[0, 1], [2]]), 0.5
    # Language 1 is the strict minimum on the whole ball of bucket {0, 1}.
    h, g0 = G[:, :2], G[:, :2].mean(0)
    r = c * float(g0.norm())
    assert abs(r - math.sqrt(2) / 6) < 1e-15
    for k, (lhs, rhs) in {1: (5 / 3, 5 * math.sqrt(2) / 6), 2: (1.0, math.sqrt(10) / 6)}.items():
        assert abs(float((h[k] - h[0]) @ g0) - lhs) < 1e-15
        assert abs(r * float((h[k] - h[0]).norm()) - rhs) < 1e-15 and lhs > rhs
    assert torch.allclose(G @ G.mean(0), torch.tensor([4 / 3, 1 / 3, 1 / 3],
                                                      dtype=torch.float64), atol=1e-15)
    d_p = bucketwise(CAGrad(c=c, rescale=0), G, p)
    r2 = math.sqrt(2)
    expected = torch.tensor([-1 / 3, -1 / 3 + r2 / 6, -1 / 3], dtype=torch.float64)
    assert torch.allclose(d_p, expected, atol=1e-12)
    assert abs(float(G[1] @ d_p) - (2 / 3 - r2 / 2)) < 1e-12 and 2 / 3 - r2 / 2 < 0
    # The referee's primal solution of each bucket gives the same direction.
    ref = np.concatenate([cagrad_primal(G[:, [0, 1]].numpy(), c), cagrad_primal(G[:, [2]].numpy(),
                                                                                 c)])
    assert np.allclose(ref, expected.numpy(), atol=1e-6)
    # Full-vector CAGrad stays at least as good as the mean for the worst language.
    assert float((G @ CAGrad(c=c, rescale=0)(G)).min()) >= 1 / 3 - 1e-12
