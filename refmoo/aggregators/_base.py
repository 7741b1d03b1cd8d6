"""What every aggregator promises, and the Gram-based specialisation.

An aggregator maps the K×D gradient matrix G to one update direction A(G) ∈ R^D;
the step is θ ← θ − η·A(G). A *Gram-based* aggregator has A(G) = w(GGᵀ)ᵀG, so
its weights depend on the K×K Gram matrix alone. That is what lets bucket-level
MOO batch all buckets into one solve, and what lets a sharded run agree on
full-vector weights by all-reducing K² numbers instead of K·D.
"""

from __future__ import annotations

from abc import ABC, abstractmethod

import torch
from torch import Tensor

from .._checks import GradientError, check_finite, check_gram, check_matrix
from .._scale import ldexp, scaled_gram, weights_fit


class Aggregator(ABC):
    """Base class: validates G, then delegates to :meth:`_aggregate`.

    ``key`` identifies the bucket to randomised aggregators (PCGrad's order,
    GradDrop's masks) so that a bucket gets the same randomness whichever
    process aggregates it; deterministic aggregators ignore it.
    """

    def __call__(self, G: Tensor, *, key: int = 0) -> Tensor:
        check_matrix(G)
        check_finite(G)
        return check_output(self._aggregate(G, key=key), G)

    @abstractmethod
    def _aggregate(self, G: Tensor, *, key: int) -> Tensor:
        """Combine a validated, finite K×D matrix into a D-vector."""

    def aggregate_partitioned(self, G: Tensor, partition, keys: Tensor) -> Tensor:
        """Bucket-level aggregation for aggregators that are neither Gram-based nor
        element-wise (user-defined ones): one call per bucket, bucket b with
        ``key=keys[b]``. Built-in aggregators override this with a batched version."""
        out = torch.empty_like(G[0])
        for idx, key in zip(partition, keys.tolist(), strict=True):
            out[idx] = self._aggregate(G[:, idx], key=key)
        return out

    def __repr__(self) -> str:
        return f"{type(self).__name__}()"


def check_output(out: Tensor, G: Tensor) -> Tensor:
    """Return A(G), or raise if float cannot hold it (e.g. the sum of rows near the
    dtype's largest value): the message names G, the only input the user passed."""
    if bool(torch.isfinite(out.sum())) or bool(torch.isfinite(out).all()):
        return out
    col = int((~torch.isfinite(out)).nonzero()[0])
    raise GradientError(
        f"the aggregated update overflows {G.dtype} at column {col}: G's largest entry there "
        f"is {float(G[:, col].abs().max()):.3e}; scale G down or cast it to float64")


class GramAggregator(Aggregator):
    """An aggregator of the form A(G) = w(GGᵀ)ᵀG.

    Subclasses implement :meth:`_weights_from_gram` for a batch ``[B, K, K]``
    of Gram matrices; ``keys`` (shape ``[B]``) identifies each bucket.

    Scale: G is rescaled by a power of two before its Gram matrix is formed when
    ``G @ G.T`` would under- or overflow (:func:`refmoo._scale.scaled_gram`); the
    weights are then corrected by :attr:`weight_degree`. So A(G) is exact for
    every finite G, and A(2^k G) = 2^k A(G) bit for bit (Nash-MTL: = A(G)).
    """

    weight_degree = 0
    """d with w(cG) = c^d · w(G) for c > 0: 0 for weights that depend on the
    directions of the rows only (most), -1 for Nash-MTL (α scales as 1/c)."""

    def weights(self, G: Tensor, *, key: int = 0) -> Tensor:
        """The K weights w with A(G) = wᵀG."""
        check_matrix(G)
        check_finite(G)
        Q, _, e = scaled_gram(G)
        w = self._weights_in(G.dtype, Q, key)
        return w if self.weight_degree == 0 else ldexp(w, e * self.weight_degree)

    def weights_from_gram(self, Q: Tensor, *, keys: Tensor | None = None) -> Tensor:
        """Weights for each Gram matrix of a batch ``[..., K, K]``; returns ``[..., K]``."""
        check_gram(Q, psd=True)
        K = Q.shape[-1]
        flat = Q.reshape(-1, K, K)
        if keys is None:
            keys = torch.arange(flat.shape[0])
        keys = torch.as_tensor(keys, dtype=torch.long).reshape(-1)
        if keys.numel() != flat.shape[0]:
            raise ValueError(f"{keys.numel()} keys given for {flat.shape[0]} Gram matrices")
        w = self._weights_from_gram(flat, keys)
        return w.reshape(Q.shape[:-1])

    def _weights_in(self, dtype: torch.dtype, Q: Tensor, key: int) -> Tensor:
        """The weights of one Gram Q in ``dtype``; Q may be float64 for a float32 G
        (rows too far apart for a float32 Gram), and the weights must then survive
        their rounding to float32 (:func:`refmoo._scale.weights_fit`)."""
        w = self._weights_from_gram(Q.unsqueeze(0), torch.tensor([key]))[0]
        if w.dtype == dtype:
            return w
        if not bool(weights_fit(w.unsqueeze(0), Q.unsqueeze(0), dtype)):
            raise GradientError(
                f"{self!r}'s weights for G span more than {dtype} holds (rows of G too far "
                f"apart in norm: a weight below {torch.finfo(dtype).tiny:.3g} would lose its "
                f"row's share of the update); cast G to float64")
        return w.to(dtype)

    @abstractmethod
    def _weights_from_gram(self, Q: Tensor, keys: Tensor) -> Tensor:
        """Weights ``[B, K]`` for a validated batch ``[B, K, K]``."""

    def _aggregate(self, G: Tensor, *, key: int) -> Tensor:
        # The Gram matrix is built here from finite G, so it needs no Gram check.
        Q, Gs, e = scaled_gram(G)
        w = self._weights_in(G.dtype, Q, key)
        if self.weight_degree == 0:
            return w @ G  # w(Gs) = w(G): no scaling back, no rounding
        # A(G) = w(G)ᵀG = 2^{e(1+d)} · w(Gs)ᵀGs, computed on Gs so that neither the
        # weights nor the products leave the normal range.
        return ldexp(w.to(Gs.dtype) @ Gs, e * (1 + self.weight_degree)).to(G.dtype)
