r"""``bucketwise(MGDA)`` in one pass over G when the buckets are many equal column ranges.

With small buckets (``chunks:256`` has 138,912 on a 35.6M-parameter model) the eager
path's three stages, one batched product for the Grams, the batched solver, one
batched product for the update, each pay per bucket and read G twice. The compiled
kernel (``mgda_tiles`` in ``csrc/kernels.cpp``, a PyTorch custom operator built
by :mod:`refmoo.compiled`) does all three per bucket while its columns are in cache:

1. :math:`Q_b = G^bG^{b\top}` summed in float64. Products of float32 entries are
   exact there, so float32 buckets need no rescaling at any scale; a float64
   bucket is formed from :math:`2^{-e_b}G^b`, its largest entry in
   :math:`[2^{474}, 2^{475})`, so that no square down to 1e-290 of the largest
   underflows (the solver's normalisation then rounds each entry once), and the
   Gram of :math:`2^kG^b` is that of :math:`G^b` bit for bit.
2. The weights by the support guesses of :mod:`refmoo.min_norm`: the full
   support, then up to ``_GUESS_ROUNDS`` guesses, each answer accepted only when
   the per-row test and the vertex test of the eager solver certify it. Up to 8
   neighbouring buckets are solved side by side, one per lane, each lane with the
   single problem's operations in its order (tested bit for bit against the
   scalar solver): a problem's divisions and square roots are serial, and the
   lanes overlap them (measured in ``benchmarks/RESULTS.md``).
3. :math:`w_b^\top G^b`, with :math:`w_b` rounded to G's dtype and the rows added
   in order.

A bucket with a zero row (a language absent from it; every row, where the bucket
has no gradient) has its optimum at that row's vertex, with update 0: the kernel
settles it with weights :math:`e_k`. A bucket the kernel cannot settle (its optimum
needs Wolfe's method, its Gram is singular on the full support) is solved by the
eager solver from
its float64 Gram and combined here; a non-finite G, an update that overflows, or
a bucket whose rows are too far apart in norm for the solver (about 1e-146) or for
weights rounded to float32 (about 1e-38) sends the whole call to the eager path,
whose errors name the bucket. So the
kernel is a shortcut with the eager path's guarantees, never an approximation.

Bits. The kernel is compiled with ``-ffp-contract=off`` and without fast-math:
every step is one correctly rounded IEEE 754 operation in a fixed order, so a
bucket it settles gets the same weights and update on every CPU, at every thread
count and in every batch (tested); its update is :math:`\sum_k \mathrm{fl}(w_k)g_k`
in G's dtype, added in order, and so is a left bucket's. A left bucket's weights
are the eager solver's, whose bits can depend, within rounding, on how many
buckets were left with it (:func:`refmoo.min_norm._first_rounds`); a shorter last
chunk is ``bucketwise``'s eager result for that chunk alone. All of them differ
from the eager path's by rounding times the bucket's conditioning: the Gram is
summed in another order, and a float32 Gram is exact here where the eager path
rounds it to float32 (an audit saw 121 ulp on a bucket of condition number 1.5e7,
the kernel's update the closer to the exact one).

Build: see :mod:`refmoo.compiled` (on first use, about 10 s; without a compiler,
or with ``REFMOO_FUSED=0``, ``bucketwise`` keeps its eager path).

>>> import torch
>>> from refmoo import MGDA, Partition, bucketwise
>>> G = torch.tensor([[1.0, 0.0, 2.0, 0.0], [0.0, 1.0, 0.0, 2.0]])
>>> bucketwise(MGDA(), G, Partition.from_sizes([2, 2])).tolist()  # 1/2 of each row
[0.5, 0.5, 1.0, 1.0]
"""

from __future__ import annotations

import os

import torch
from torch import Tensor

from . import compiled
from ._scale import ldexp, weights_fit
from .aggregators.mgda import MGDA
from .min_norm import _EPS, _GUESS_ROUNDS, _solve_weights

MAX_K = 8
# The kernel's float64 headroom (kHeadroom in csrc/kernels.cpp) assumes at most 4096.
MAX_WIDTH = 4096
# Per-bucket status codes of the kernel.
DONE, UNSOLVED, NON_FINITE, OVERFLOW, OUT_OF_RANGE = 0, 1, 2, 3, 4


def applies(aggregator: object, G: Tensor, width: int) -> bool:
    """Whether :func:`bucketwise_mgda` takes a call whose buckets are equal chunks of
    ``width`` columns in column order:

    - MGDA itself (a subclass may change the weights);
    - 2 ≤ K ≤ 8, float32 or float64 on the CPU, and the kernel built;
    - K ≤ ``width`` ≤ ``MAX_WIDTH``: with fewer columns than rows the Gram is
      singular and the kernel could settle nothing; with wider buckets the eager
      path's per-bucket costs no longer show and its BLAS products use every core
      on each bucket (measured at 1 thread on 4 × 35.6M: even at 16384, eager
      ahead at 65536);
    - at least two full chunks (the kernel gives each bucket one thread; a single
      bucket is better served by BLAS on every core). A shorter last chunk is solved
      by ``bucketwise`` as a partition of its own.
    """
    K, D = G.shape
    return (type(aggregator) is MGDA and 2 <= K <= MAX_K and K <= width <= MAX_WIDTH
            and D >= 2 * width and G.device.type == "cpu"
            and G.dtype in (torch.float32, torch.float64) and compiled.available())


def mgda_tiles(G: Tensor, width: int, out: Tensor) -> tuple[Tensor, Tensor, Tensor]:
    """The raw kernel on G ``[K, D]`` (unit column stride, D a multiple of ``width``):
    writes the update of every settled bucket into ``out`` and returns (weights
    ``[T, K]`` float64, exponents e ``[T]`` of the Grams formed from
    :math:`2^{-e}G^b`, status ``[T]``: ``DONE``, ``UNSOLVED``, ``NON_FINITE``,
    ``OVERFLOW``, ``OUT_OF_RANGE``: a nonzero row fails :func:`refmoo._scale.rows_in_range`
    or a weight fails :func:`refmoo._scale.weights_fit`). Weights are meaningful
    only where the status is ``DONE``."""
    if not compiled.available():
        switch = compiled.ENVIRONMENT_SWITCH
        raise RuntimeError(f"refmoo's compiled kernels are not available here ({switch}="
                           f"{os.environ.get(switch)!r}, or their build failed)")
    K = G.shape[0]
    return compiled.ops().mgda_tiles(G, width, 10 * K * _EPS, _GUESS_ROUNDS, out)


def bucketwise_mgda(G: Tensor, width: int, out: Tensor) -> Tensor | None:
    """MGDA's update of every bucket written into ``out``, bucket t being columns
    ``[t·width, (t+1)·width)`` of G ``[K, D]`` (unit column stride, D a multiple of
    ``width``); None when the eager path must take the call (a non-finite entry, an
    update that overflows G's dtype, rows too far apart in norm)."""
    K = G.shape[0]
    _, e, status = mgda_tiles(G, width, out)
    if status.numel() and int(status.max()) >= NON_FINITE:
        return None
    redo = (status == UNSOLVED).nonzero().reshape(-1)
    if redo.numel():
        tiles = G.view(K, -1, width).transpose(0, 1)[redo]  # [n, K, width]
        X = ldexp(tiles.to(torch.float64), -e[redo])  # as the kernel formed it
        Q = torch.bmm(X, X.transpose(1, 2))
        weights = _solve_weights(Q)
        if not bool(weights_fit(weights, Q, G.dtype).all()):
            return None
        weights = weights.to(G.dtype)
        update = weights[:, 0:1] * tiles[:, 0]  # added in order, as the kernel does
        for k in range(1, K):
            update = update + weights[:, k:k + 1] * tiles[:, k]
        if not bool(torch.isfinite(update).all()):
            return None
        out.view(-1, width)[redo] = update
    return out
