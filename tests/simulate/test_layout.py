"""Bucket ownership and the owner-major layout (single process)."""

import itertools

import torch
from hypothesis import given
from hypothesis import strategies as st

from refmoo import Partition
from simulate.layout import ShardLayout, balanced_owners


@given(st.lists(st.integers(1, 50), min_size=1, max_size=9), st.integers(1, 5))
def test_balanced_owners_is_contiguous_and_optimal(sizes, W):
    owners = balanced_owners(sizes, W)
    assert owners == sorted(owners) and set(owners) <= set(range(W))
    if len(sizes) >= W:
        assert set(owners) == set(range(W))  # nobody idles when there is enough to go round
    load = max(sum(s for s, o in zip(sizes, owners, strict=True) if o == r) for r in range(W))
    # Brute force over every way to cut the sequence into at most W runs.
    best = min(
        max(sum(sizes[a:b]) for a, b in zip((0, *cuts), (*cuts, len(sizes)), strict=True))
        for n in range(min(W, len(sizes)))
        for cuts in itertools.combinations(range(1, len(sizes)), n))
    assert load == best


@given(st.integers(2, 4), st.randoms(use_true_random=False))
def test_owner_major_round_trip_with_index_set_buckets(W, rnd):
    D = 23
    perm = list(range(D))
    rnd.shuffle(perm)
    cuts = sorted(rnd.sample(range(1, D), 4))
    buckets = [perm[a:b] for a, b in zip([0, *cuts], [*cuts, D], strict=True)]
    lay = ShardLayout(Partition(buckets, dim=D), W, [rnd.randrange(W) for _ in buckets])
    flat = torch.arange(D, dtype=torch.float64) + 1
    ext = torch.cat([flat, torch.zeros(1, dtype=torch.float64)])
    send = lay.to_owner_major(ext).clone()
    assert send.numel() == W * lay.chunk
    for r in range(W):
        mine = send[r * lay.chunk:(r + 1) * lay.chunk]
        n = lay.shard_sizes[r]
        assert torch.equal(mine[:n], flat[lay.indices[r]])
        assert not mine[n:].any()  # padding is zero
    back = torch.zeros(D, dtype=torch.float64)
    assert torch.equal(lay.from_owner_major(send, back), flat)
