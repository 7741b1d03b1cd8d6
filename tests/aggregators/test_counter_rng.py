"""The counter-based generator shared by PCGrad and GradDrop."""

import torch

from refmoo.aggregators._counter_rng import (
    GRADDROP_STREAM,
    PCGRAD_STREAM,
    hash64,
    splitmix64,
    uniform,
)

MASK = (1 << 64) - 1


def _splitmix64_reference(x: int) -> int:
    """Steele, Lea & Flood's splitmix64 on Python's unbounded ints."""
    z = (x + 0x9E3779B97F4A7C15) & MASK
    z = ((z ^ (z >> 30)) * 0xBF58476D1CE4E5B9) & MASK
    z = ((z ^ (z >> 27)) * 0x94D049BB133111EB) & MASK
    return z ^ (z >> 31)


def test_splitmix64_matches_the_unsigned_reference_including_wraparound():
    states = [0, 1, 2, 12345, -1, -(1 << 63), (1 << 63) - 1, 0x0123456789ABCDEF, -987654321]
    out = splitmix64(torch.tensor(states, dtype=torch.int64))
    assert [int(o) & MASK for o in out] == [_splitmix64_reference(s & MASK) for s in states]


def test_splitmix64_known_first_output():
    # The first output of a splitmix64 generator seeded with 0.
    assert int(splitmix64(torch.tensor(0))) & MASK == 0xE220A8397B1DCDAF


def test_hash_depends_only_on_its_inputs_not_on_batching():
    keys = torch.tensor([[3], [7], [11]])
    counters = torch.arange(5)
    batch = hash64(9, PCGRAD_STREAM, keys, counters)
    for i, key in enumerate([3, 7, 11]):
        for j in range(5):
            assert int(batch[i, j]) == int(hash64(9, PCGRAD_STREAM, torch.tensor(key),
                                                  torch.tensor(j)))


def test_seed_stream_key_and_counter_each_change_the_bits():
    base = int(hash64(1, PCGRAD_STREAM, torch.tensor(2), torch.tensor(3)))
    assert base != int(hash64(2, PCGRAD_STREAM, torch.tensor(2), torch.tensor(3)))
    assert base != int(hash64(1, GRADDROP_STREAM, torch.tensor(2), torch.tensor(3)))
    assert base != int(hash64(1, PCGRAD_STREAM, torch.tensor(3), torch.tensor(3)))
    assert base != int(hash64(1, PCGRAD_STREAM, torch.tensor(2), torch.tensor(4)))


def test_uniforms_lie_in_the_open_interval_and_look_uniform():
    u = uniform(0, GRADDROP_STREAM, torch.arange(20).unsqueeze(1), torch.arange(5000))
    assert u.dtype == torch.float64
    assert bool(((u > 0) & (u < 1)).all())
    # 10 equal bins over 1e5 draws: a chi-square with 9 dof above 40 has p < 1e-5.
    counts = torch.histc(u, bins=10, min=0.0, max=1.0)
    expected = u.numel() / 10
    assert float(((counts - expected) ** 2 / expected).sum()) < 40.0
    # Neighbouring counters are not correlated.
    flat = u.reshape(-1)
    corr = torch.corrcoef(torch.stack([flat[:-1], flat[1:]]))[0, 1]
    assert abs(float(corr)) < 0.02
