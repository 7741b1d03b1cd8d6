r"""Counter-based random numbers: a value is a pure function of (seed, stream, key, counter).

Randomised aggregators (PCGrad's order, GradDrop's masks) draw their numbers
from here rather than from a stateful generator, so that a bucket gets the same
randomness whichever process aggregates it and in whatever order buckets are
visited: ``key`` is the bucket, ``counter`` the position of the draw inside it.

The mixer is splitmix64 (G. Steele, D. Lea, C. Flood, "Fast splittable
pseudorandom number generators", OOPSLA 2014; the finaliser used by
``java.util.SplittableRandom``), written on int64 tensors: torch's int64 ``+``
and ``*`` wrap modulo 2^64, and a logical right shift is an arithmetic shift
masked to the low bits. Inputs are chained as
``h = mix(mix(mix(seed ^ stream) ^ key) ^ counter)``.

>>> import torch
>>> u = uniform(0, 1, torch.tensor(7), torch.arange(3))
>>> bool(((u > 0) & (u < 1)).all()), torch.equal(u, uniform(0, 1, torch.tensor(7), torch.arange(3)))
(True, True)
"""

from __future__ import annotations

import torch
from torch import Tensor

# Streams keep the draws of different aggregators independent for equal seeds.
PCGRAD_STREAM = 0x5043475241440001
GRADDROP_STREAM = 0x4752414444524F50

_GAMMA = 0x9E3779B97F4A7C15
_M1 = 0xBF58476D1CE4E5B9
_M2 = 0x94D049BB133111EB


def _signed(x: int) -> int:
    """The int64 with the same 64 bits as the unsigned ``x``."""
    x &= (1 << 64) - 1
    return x - (1 << 64) if x >= 1 << 63 else x


def _shr(x: Tensor, s: int) -> Tensor:
    """Logical right shift of int64 bits."""
    return (x >> s) & ((1 << (64 - s)) - 1)


def splitmix64(x: Tensor) -> Tensor:
    """The splitmix64 output for state ``x`` (int64 tensor, bits read as unsigned)."""
    z = x + _signed(_GAMMA)
    z = (z ^ _shr(z, 30)) * _signed(_M1)
    z = (z ^ _shr(z, 27)) * _signed(_M2)
    return z ^ _shr(z, 31)


def hash64(seed: int, stream: int, key: Tensor, counter: Tensor) -> Tensor:
    """64 random bits (as int64) for each broadcast pair of ``key`` and ``counter``."""
    key = torch.as_tensor(key, dtype=torch.int64)
    counter = torch.as_tensor(counter, dtype=torch.int64, device=key.device)
    base = splitmix64(torch.tensor(_signed(seed) ^ _signed(stream), dtype=torch.int64,
                                   device=key.device))
    return splitmix64(splitmix64(base ^ key) ^ counter)


def uniform(seed: int, stream: int, key: Tensor, counter: Tensor) -> Tensor:
    """Float64 uniforms in the open interval (0, 1): the top 53 bits, centred in their cell."""
    bits = _shr(hash64(seed, stream, key, counter), 11)
    return (bits.to(torch.float64) + 0.5) * 2.0 ** -53
