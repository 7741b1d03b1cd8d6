"""Aggregator properties, written once and applied to every aggregator that claims them.

Each ``assert_*`` takes an aggregator instance and a K×D float64 matrix.
Tolerances are relative to the matrix's scale.
"""

from __future__ import annotations

import torch

from refmoo import Partition, bucketwise
from refmoo.testing import assert_non_conflicting as _non_conflicting


def _close(actual, expected, G, rtol=1e-7):
    scale = float(torch.linalg.vector_norm(G, dim=1).max()) * G.shape[0]
    torch.testing.assert_close(actual, expected, rtol=rtol, atol=rtol * max(scale, 1e-300))


def assert_expected_structure(agg, G):
    out = agg(G)
    assert out.shape == (G.shape[1],)
    assert out.dtype == G.dtype
    assert bool(torch.isfinite(out).all())


def assert_non_conflicting(agg, G):
    _non_conflicting(agg(G), G, rtol=1e-7, scale_tol=1e-10)


def assert_permutation_invariant(agg, G, perm):
    _close(agg(G[perm]), agg(G), G)


def assert_positively_homogeneous(agg, G, alpha):
    """A(αG) = α·A(G) for α > 0."""
    _close(agg(alpha * G), alpha * agg(G), alpha * G)


def assert_scale_invariant(agg, G, alpha):
    """A(αG) = A(G) for α > 0 (e.g. Nash-MTL's bargaining solution)."""
    _close(agg(alpha * G), agg(G), G)


def assert_linear_under_scaling(agg, G, c1, c2):
    """A(diag(c1 + c2)G) = A(diag(c1)G) + A(diag(c2)G) for c1, c2 ≥ 0 (TorchJD's definition)."""
    lhs = agg((c1 + c2)[:, None] * G)
    rhs = agg(c1[:, None] * G) + agg(c2[:, None] * G)
    _close(lhs, rhs, (c1 + c2)[:, None] * G)


def assert_single_row_returns_it(agg, G):
    _close(agg(G[:1]), G[0], G[:1])


def assert_single_bucket_equals_full_vector(agg, G):
    _close(bucketwise(agg, G, Partition.single(G.shape[1])), agg(G), G)


def assert_bucketwise_is_concatenation(agg, G, partition):
    out = bucketwise(agg, G, partition)
    for b, idx in enumerate(partition):
        _close(out[idx], agg(G[:, idx], key=b), G[:, idx])
