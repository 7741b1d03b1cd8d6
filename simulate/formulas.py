r"""What each strategy should send per step, from the ring formulas of DESIGN.md.

With W ranks, K languages, D parameters and shards padded to ``chunk``
elements (so every flat reduce-scatter or all-gather moves ``W·chunk``):

==================  =========================================================
standard            1 all-reduce of D
bucket              K reduce-scatters of W·chunk, 1 parameter all-gather
bucket-replicated   K all-reduces of D
full-naive          as bucket, plus K all-gathers of W·chunk (the rebuild)
full-gram           as bucket, plus 1 all-reduce of K(K+1)/2 (the Gram's upper triangle)
==================  =========================================================

Per rank, a ring all-reduce of N elements sends 2(W−1)/W·N, a reduce-scatter
or all-gather (W−1)/W·N.
"""

from __future__ import annotations

from fractions import Fraction

from .comm import ring_bytes


def planned_calls(strategy: str, *, dim: int, languages: int, world_size: int,
                  chunk: int) -> dict[str, tuple[int, int]]:
    """``{"op:purpose": (calls, elements per call)}`` per step.

    >>> planned_calls("full-gram", dim=10, languages=3, world_size=2, chunk=5)
    {'reduce_scatter:grad': (3, 10), 'all_reduce:gram': (1, 6), 'all_gather:param': (1, 10)}
    """
    K, flat = languages, world_size * chunk
    rs = {"reduce_scatter:grad": (K, flat)}
    ag = {"all_gather:param": (1, flat)}
    plans = {
        "standard": {"all_reduce:grad": (1, dim)},
        "bucket": rs | ag,
        "bucket-replicated": {"all_reduce:grad": (K, dim)},
        "full-naive": rs | {"all_gather:grad": (K, flat)} | ag,
        "full-gram": rs | {"all_reduce:gram": (1, K * (K + 1) // 2)} | ag,
    }
    if strategy not in plans:
        raise ValueError(f"unknown strategy {strategy!r}")
    return plans[strategy]


def predicted_bytes(strategy: str, *, dim: int, languages: int, world_size: int, chunk: int,
                    itemsize: int) -> dict[str, Fraction]:
    """Bytes each rank sends per step, by ``"op:purpose"``.

    >>> predicted_bytes("bucket", dim=8, languages=2, world_size=2, chunk=4, itemsize=4)
    {'reduce_scatter:grad': Fraction(32, 1), 'all_gather:param': Fraction(16, 1)}
    """
    out = {}
    for key, (calls, n) in planned_calls(strategy, dim=dim, languages=languages,
                                         world_size=world_size, chunk=chunk).items():
        out[key] = calls * ring_bytes(key.split(":")[0], n, itemsize, world_size)
    return out
