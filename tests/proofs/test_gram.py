"""proofs/gram.md: GGᵀ = Σ_b G^bG^bᵀ, exact sharded full-vector aggregation, traffic."""

from fractions import Fraction

import torch
from hypothesis import given, settings
from hypothesis import strategies as st

import refmoo
from refmoo import AGGREGATORS, GramAggregator, Partition, bucket_grams, get_aggregator
from refmoo.gram import from_upper_triangle, upper_triangle
from refmoo.testing import gradient_matrices, partition_pairs, partitions

from ._referee import row_scale

GRAM_BASED = sorted(name for name, cls in AGGREGATORS.items() if issubclass(cls, GramAggregator))


@settings(max_examples=40)
@given(gradient_matrices(K=st.integers(1, 6), D=st.integers(1, 12), min_exp=-8, max_exp=8)
       .flatmap(lambda G: st.tuples(st.just(G), partition_pairs(G.shape[1]))))
def test_gram_decomposition(case):
    G, (coarse, fine) = case
    tol = 1e-14 * row_scale(G) ** 2 * G.shape[1]
    assert torch.allclose(bucket_grams(G, coarse).sum(0), G @ G.T, rtol=0, atol=tol)
    # Each coarse bucket's Gram is the sum of the Grams of its pieces in the refinement.
    fine_q = bucket_grams(G, fine)
    parent = coarse.bucket_of[torch.stack([idx[0] for idx in fine])]
    summed = torch.zeros_like(bucket_grams(G, coarse)).index_add_(0, parent, fine_q)
    assert torch.allclose(summed, bucket_grams(G, coarse), rtol=0, atol=tol)


def _sharded_update(aggregator: GramAggregator, G: torch.Tensor, shards: Partition):
    """Theorem 6.2's protocol; rank r sees only its own columns and the all-reduced Q."""
    local = [G[:, idx] for idx in shards]  # what each rank holds after the reduce-scatters
    # The all-reduce of each rank's K(K+1)/2 upper-triangle entries.
    K = G.shape[0]
    Q = from_upper_triangle(sum(upper_triangle(block @ block.T) for block in local), K)
    w = aggregator.weights_from_gram(Q, keys=torch.tensor([0]))
    out = torch.empty(G.shape[1], dtype=G.dtype)
    for idx, block in zip(shards, local, strict=True):
        out[idx] = w @ block
    return out, Q


@settings(max_examples=12)
@given(gradient_matrices(kind=st.sampled_from(["non-stationary", "strong"]), K=st.integers(2, 4),
                         D=st.integers(4, 12), rank=None)
       .flatmap(lambda G: st.tuples(st.just(G), partitions(G.shape[1], max_buckets=4))))
def test_sharded_gram_aggregation_is_exact(case):
    G, shards = case
    K = G.shape[0]
    for name in GRAM_BASED:
        aggregator = get_aggregator(name)
        expected = aggregator(G)
        actual, Q = _sharded_update(aggregator, G, shards)
        # The only numbers exchanged: K(K+1)/2 entries, mirrored into Q. Symmetry is
        # bitwise by construction (a plain block @ block.T is not, on MKL/AVX-512).
        assert Q.shape == (K, K) and torch.equal(Q, Q.T)
        err = float((actual - expected).norm())
        assert err <= 1e-7 * (float(expected.norm()) + row_scale(G)), (name, err)


def _traffic(K, D, W):
    f = Fraction(W - 1, W)
    base = (K + 1) * f * D
    return base, f * K * D, 2 * f * Fraction(K * (K + 1), 2)


@settings(max_examples=50)
@given(st.integers(1, 64), st.integers(1, 10**12), st.integers(2, 1024))
def test_communication_counts(K, D, W):
    base, naive, gram = _traffic(K, D, W)
    assert gram / naive == Fraction(K + 1, D)
    assert gram == Fraction(W - 1, W) * K * (K + 1)
    assert naive == Fraction(W - 1, W) * K * D


def test_communication_example():
    base, naive, gram = _traffic(8, 7 * 10**9, 8)
    assert base == Fraction(55_125_000_000) and naive == 49 * 10**9 and gram == 63
    assert round(float(naive / base) * 100) == 89


def test_gram_based_list_matches_the_docs():
    # gram.md names these as Gram-based, and GradDrop as not.
    assert set(GRAM_BASED) == {"mgda", "pcgrad", "cagrad", "upgrad", "imtlg", "alignedmtl",
                               "nashmtl", "mean", "sum"}
    assert not isinstance(refmoo.GradDrop(), GramAggregator)
