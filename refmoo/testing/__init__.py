"""A public test kit: hypothesis strategies and cvxpy-refereed assertions.

Strategies build gradient matrices of a chosen stationarity class (whole
matrix or per bucket), partitions and their refinements; the assertions judge
stationarity with cvxpy and print refmoo's certificate when they fail. See
``proofs/TESTKIT.md`` for a walk-through.

>>> from hypothesis import given, settings
>>> from refmoo import MGDA
>>> from refmoo.testing import assert_non_conflicting, gradient_matrices
>>> @settings(max_examples=20, deadline=None)
... @given(gradient_matrices())
... def test_mgda_never_conflicts(G):
...     assert_non_conflicting(MGDA(), G)
>>> test_mgda_never_conflicts()
"""

from .assertions import (
    assert_bucketwise_non_conflicting,
    assert_matches_bucketwise,
    assert_non_conflicting,
    assert_not_pareto_stationary,
    assert_pareto_stationary,
    assert_refined_stationary,
)
from .strategies import (
    CLASSES,
    NON_STATIONARY,
    STRONG,
    WEAK,
    bucketed_matrices,
    degenerate_matrices,
    gradient_matrices,
    partition_pairs,
    partitions,
    refinements,
)

__all__ = [
    "CLASSES",
    "NON_STATIONARY",
    "STRONG",
    "WEAK",
    "assert_bucketwise_non_conflicting",
    "assert_matches_bucketwise",
    "assert_non_conflicting",
    "assert_not_pareto_stationary",
    "assert_pareto_stationary",
    "assert_refined_stationary",
    "bucketed_matrices",
    "degenerate_matrices",
    "gradient_matrices",
    "partition_pairs",
    "partitions",
    "refinements",
]
