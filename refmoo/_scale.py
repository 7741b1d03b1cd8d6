r"""Power-of-two scaling: how refmoo stays exact from float's smallest normal
numbers to its largest.

A Gram entry is a sum of products, so it squares the scale of G: in float64,
rows of norm 1e-170 give Gram entries that underflow to zero, rows of norm
1e155 give entries that overflow. Multiplying by a power of two changes no
digit of a normal number, so every computation below is done on a copy of the
input scaled by :math:`2^{-e}` into a safe range, and its result is scaled back
exactly. Consequences used in the tests: the weights of :math:`2^k G` are those
of G bit for bit, and the aggregated update is :math:`2^k` times that of G bit
for bit, as long as the scaled-back numbers are normal.

>>> import torch
>>> Q = torch.tensor([[[3.0, 1.0], [1.0, 2.0]]], dtype=torch.float64)
>>> Qn, e = normalise_gram(Q)
>>> Qn[0, 0, 0].item(), e.item()   # 3 = 0.75 · 2**2
(0.75, 2)
"""

from __future__ import annotations

import torch
from torch import Tensor


def pow2(e: Tensor) -> tuple[Tensor, Tensor]:
    """Two float64 factors whose product is exactly ``2**e``.

    One factor would overflow for e > 1023 and be subnormal for e < -1022; two
    halves cover the exponents a rescaling of float64 data ever needs (|e| ≤ 2100).
    """
    half = torch.div(e, 2, rounding_mode="floor")
    one = torch.ones(e.shape, dtype=torch.float64, device=e.device)
    return torch.ldexp(one, half), torch.ldexp(one, e - half)


def ldexp(x: Tensor, e: Tensor, *, trailing: bool = False) -> Tensor:
    """``x · 2**e`` with ``e`` broadcast against the leading dimensions of x (the
    trailing ones with ``trailing=True``).

    Where |e| > 1000 the two factors of :func:`pow2` are applied one after the
    other. When e > 0 both are ≥ 1 and the intermediate lies below the result;
    when e < 0 both are ≤ 1 and it lies above: either way no intermediate over- or
    underflows unless the result does. The choice is made per entry of e (elsewhere
    the second factor is 1, an exact product), so a subnormal result is rounded
    the same whatever else e holds. (For float32 x the factors are cast to
    float32; callers keep |e| within float32's exponent range.)
    """
    ones = (1,) * (x.dim() - e.dim())
    shape = ones + e.shape if trailing else e.shape + ones
    one = torch.ones(e.shape, dtype=torch.float64, device=e.device)
    if e.numel() == 0 or int(e.abs().max()) <= 1000:
        # One factor is exact and finite here: the common case costs one pass.
        return x * torch.ldexp(one, e).reshape(shape).to(x.dtype)
    small = e.abs() <= 1000
    first = torch.where(small, e, torch.div(e, 2, rounding_mode="floor"))
    a, b = torch.ldexp(one, first), torch.ldexp(one, e - first)
    return x * a.reshape(shape).to(x.dtype) * b.reshape(shape).to(x.dtype)


def exponent(top: Tensor) -> Tensor:
    """e with ``top = m · 2**e``, m ∈ [1/2, 1) (e = 0 where top is 0), as int64."""
    e = torch.frexp(top).exponent.to(torch.int64)
    return torch.where(top > 0, e, torch.zeros_like(e))


def normalise_gram(Q: Tensor) -> tuple[Tensor, Tensor]:
    """``(Qn, e)`` with ``Q = 2**e · Qn`` exactly and the largest diagonal entry of
    every ``Qn`` in [1/2, 1); Q is a batch ``[B, K, K]``.

    Everything computed from Qn is then the same, bit for bit, for Q and 4**k·Q.
    """
    e = exponent(torch.diagonal(Q, dim1=-2, dim2=-1).amax(-1))
    return ldexp(Q, -e), e


def gradient_exponent(G: Tensor) -> Tensor:
    """e (a 0-d int64 tensor) with ``max |G_ij| · 2**-e`` in [1/2, 1).

    After dividing G by 2**e every Gram entry is at most D in magnitude (no
    overflow for any D a tensor can hold), and a row's squared norm underflows
    only if the row is below about 1e-154 (float64) or 1e-19 (float32) times
    the largest entry: the range a single Gram matrix can represent at all.
    """
    top = G.detach().abs().amax() if G.numel() else G.new_zeros(())
    return exponent(top.to(torch.float64))


def scaled_gram(G: Tensor) -> tuple[Tensor, Tensor, Tensor]:
    """``(Q, Gs, e)`` with ``Gs = 2**-e · G`` and ``Q = Gs Gsᵀ``, for a K×D matrix G.

    ``G @ G.T`` is used as is (e = 0, Gs = G) when its largest diagonal entry is
    finite and at least ``sqrt(tiny)`` of G's dtype (about 1e-154 in float64,
    1e-19 in float32): then nothing overflowed, and a row can be up to
    ``tiny**(1/4)`` times smaller than the largest (1e-77, 3e-10) before its
    squared norm leaves the normal range. Otherwise G is rescaled by
    :func:`gradient_exponent` and the Gram computed again. Either way Q is the
    same multiple of the same rounded numbers, so the weights of ``2**k · G``
    equal those of G bit for bit while no squared norm is subnormal.
    """
    Q = G @ G.T
    top = torch.diagonal(Q).amax() if G.shape[0] else Q.new_zeros(())
    if bool(torch.isfinite(top)) and float(top) >= torch.finfo(G.dtype).tiny ** 0.5:
        return Q, G, torch.zeros((), dtype=torch.int64)
    e = gradient_exponent(G)
    Gs = ldexp(G, -e)
    return Gs @ Gs.T, Gs, e
