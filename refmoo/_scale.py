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

from ._checks import GradientError


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
    the largest entry: the range a Gram in G's dtype holds (beyond it,
    :func:`scaled_gram` forms float64 products).
    """
    top = G.detach().abs().amax() if G.numel() else G.new_zeros(())
    return exponent(top.to(torch.float64))


# A squared row norm below 2^-969 (tiny/u of float64) of the largest diagonal entry
# is out of the solver's reach: it normalises the largest diagonal entry into
# [1/2, 1) in float64, where the row's squared norm must stay a normal number with
# room for its rounding (at 1e-158 of the largest, the weights were 3e-7 off).
RELATIVE_FLOOR_EXPONENT = -969


def rows_in_range(Q: Tensor, columns: Tensor | int | None, dtype: torch.dtype) -> Tensor:
    r"""bool ``[..., K]``: the rows of Grams ``[..., K, K]`` whose squared norm
    :math:`Q_{kk}` the solvers can use:

    - :math:`Q_{kk} \ge 2^{s-969}`, :math:`2^{s-1} \le \max_j Q_{jj} < 2^s`
      (:data:`RELATIVE_FLOOR_EXPONENT`): rows down to about 1e-146 of the largest;
    - for a Gram of ``columns`` columns whose products were formed in ``dtype`` at G's
      own scale, also :math:`Q_{kk} \ge n\,\text{tiny}/u` of ``dtype``: products
      flushed below the normal range then perturb it by at most
      :math:`n\,u\,\text{tiny} \le u^2 Q_{kk}` (:func:`refmoo.bucketwise.in_range`
      puts this bound on the largest row only). ``columns=None`` for float64 products
      of a G rescaled to a largest entry in [1/2, 1): there a flushed product costs
      at most :math:`2^{-1075}`, below :math:`n\,2^{-104}` of any row that meets the
      first bound.

    A zero row fails; callers read the rows that fail, to tell a zero row (nothing
    to do) from one whose squares were flushed.

    >>> Q = torch.diag(torch.tensor([1.0, 1e-200, 1e-300, 0.0], dtype=torch.float64))
    >>> rows_in_range(Q, None, torch.float64).tolist()
    [True, True, False, False]
    """
    d = torch.diagonal(Q, dim1=-2, dim2=-1).to(torch.float64)
    top = d.amax(-1, keepdim=True) if d.shape[-1] else d.new_zeros((*d.shape[:-1], 1))
    # 2^s = top / m exactly (m its frexp mantissa); times 2^-969, exact or flushed to
    # 0 for a tiny Gram, where the second bound is the stronger. (A zero Gram: NaN,
    # and every row fails.)
    relative = top / torch.frexp(top).mantissa * 2.0**RELATIVE_FLOOR_EXPONENT
    ok = (d >= relative) & (d > 0)
    if columns is not None:
        info = torch.finfo(dtype)
        n = torch.as_tensor(columns, dtype=torch.float64, device=Q.device)
        ok &= d >= (n * (info.tiny / (info.eps / 2))).unsqueeze(-1)
    return ok


def weights_fit(w: Tensor, Q: Tensor, dtype: torch.dtype) -> Tensor:
    r"""bool ``[B]``: whether float64 weights ``[B, K]`` (of Grams ``[B, K, K]``) can be
    rounded to ``dtype`` for the update :math:`\sum_k \mathrm{fl}(w_k)\,g_k` within its
    rounding. Normal weights round with relative error u, which costs at most
    :math:`u\sum_j |w_j|\,\|g_j\|`; a weight below ``dtype``'s normal range rounds with
    absolute error up to :math:`u\,\text{tiny}`, which costs up to
    :math:`u\,\text{tiny}\,\|g_k\|`. They fit unless the second exceeds the first,
    :math:`\text{tiny}\,\|g_k\| > \sum_j |w_j|\,\|g_j\|` (float32 rows about 1e-38
    apart whose optimum needs the large row).

    >>> Q = torch.diag(torch.tensor([1.0, 1e-90], dtype=torch.float64))[None]
    >>> weights_fit(torch.tensor([[1e-45, 1.0]], dtype=torch.float64), Q,
    ...             torch.float32).tolist()
    [False]
    """
    tiny = torch.finfo(dtype).tiny
    norms = torch.diagonal(Q, dim1=-2, dim2=-1).to(torch.float64).clamp(min=0).sqrt()
    w = w.to(torch.float64).abs()
    scale = (w * norms).sum(-1, keepdim=True)
    lost = (w > 0) & (w < tiny) & (tiny * norms > scale)
    return ~lost.any(-1)


def scaled_gram(G: Tensor) -> tuple[Tensor, Tensor, Tensor]:
    """``(Q, Gs, e)`` with ``Gs = 2**-e · G`` and ``Q = Gs Gsᵀ``, for a K×D matrix G.

    ``G @ G.T`` is used as is (e = 0, Gs = G) when its largest diagonal entry is
    finite and at least ``sqrt(tiny)`` of G's dtype (about 1e-154 in float64,
    1e-19 in float32) and every nonzero row passes :func:`rows_in_range`.
    Otherwise G is rescaled by :func:`gradient_exponent` and the Gram computed
    again; Q is the same multiple of the same rounded numbers either way, so the
    weights of ``2**k · G`` equal those of G bit for bit while no squared norm is
    subnormal.

    Rows of very different norms: where a nonzero row of G still fails
    :func:`rows_in_range` in G's dtype (float32 rows more than about 1e-19 apart),
    Q is formed from float64 products of G rescaled in float64, and Q and Gs are
    returned in float64: that holds rows down to about 1e-146 of the largest.
    Beyond that no Gram the solvers take can hold the row, and
    :class:`~refmoo._checks.GradientError` says so.
    """
    D = G.shape[1]
    Q = G @ G.T
    top = torch.diagonal(Q).amax() if G.shape[0] else Q.new_zeros(())
    zero = torch.zeros((), dtype=torch.int64)
    nonzero = None
    if bool(torch.isfinite(top)) and float(top) >= torch.finfo(G.dtype).tiny ** 0.5:
        fail = ~rows_in_range(Q, D, G.dtype)
        if not bool(fail.any()):
            return Q, G, zero
        nonzero = ~fail  # a row in range has a positive squared norm; read the others
        nonzero[fail] = (G[fail] != 0).any(1)
        if not bool((fail & nonzero).any()):
            return Q, G, zero
    e = gradient_exponent(G)
    # Scaled in float64 and rounded back, exactly: the factor 2^-e alone can overflow
    # float32 (G all subnormal), and a far smaller row must not be flushed on the way.
    G64 = ldexp(G.to(torch.float64), -e)
    Gs = G64.to(G.dtype)
    if nonzero is None:
        nonzero = (G != 0).any(1)
    if bool((Gs != 0).any(1).eq(nonzero).all()):
        Q = Gs @ Gs.T
        if not bool((~rows_in_range(Q, D, G.dtype) & nonzero).any()):
            return Q, Gs, e
    Q = G64 @ G64.T
    fail = ~rows_in_range(Q, None, torch.float64) & nonzero
    if bool(fail.any()):
        raise GradientError(rows_too_far_apart(G.abs().amax(1), fail))
    return Q, G64, e


def rows_too_far_apart(amax: Tensor, fail: Tensor, where: str = "") -> str:
    """The error for the rows ``fail`` (bool ``[K]``) whose squared norms no float64
    Gram holds next to the largest row; ``amax`` ``[K]`` are the rows' largest entries."""
    small, large = int(fail.nonzero()[0]), int(amax.argmax())
    return (f"row {small} of G{where} (largest entry {float(amax[small]):.3g}) is too small "
            f"next to row {large} (largest entry {float(amax[large]):.3g}): no float64 Gram "
            f"holds rows more than about 1e-146 apart, so the weights cannot be computed; "
            f"rescale the rows (e.g. normalise each language's gradient)")

