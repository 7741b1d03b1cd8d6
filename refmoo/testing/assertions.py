"""Assertions for user tests, refereed by cvxpy; failures print the certificate.

Tolerances are relative to the scale of the input (the largest row norm), so
the same test passes at 1e-12 and at 1e12.
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np
import torch
from torch import Tensor

from ..aggregators import Aggregator
from ..bucketwise import bucketwise
from ..partitions import Partition
from ..referee import cvxpy_min_norm
from ..stationarity import pareto_stationarity, refined_pareto_stationarity


def _row_scale(G: Tensor) -> float:
    return float(torch.linalg.vector_norm(G.to(torch.float64), dim=1).max())


def _conflicts(G: Tensor, d: Tensor, rtol: float, scale_tol: float
               ) -> tuple[Tensor, Tensor, Tensor]:
    """Inner products, their admissible negative bound, and the offending rows."""
    G64, d64 = G.to(torch.float64), d.to(torch.float64)
    inner = G64 @ d64
    norms = torch.linalg.vector_norm(G64, dim=1)
    bound = norms * (rtol * torch.linalg.vector_norm(d64) + scale_tol * norms.max())
    return inner, bound, (inner < -bound).nonzero().reshape(-1)


def assert_non_conflicting(direction: Tensor | Callable[[Tensor], Tensor], G: Tensor,
                           rtol: float = 1e-9, scale_tol: float = 1e-12) -> None:
    """Assert ⟨g_k, d⟩ ≥ −‖g_k‖·(rtol·‖d‖ + scale_tol·max_j‖g_j‖) for every row k.

    ``direction`` is the aggregated vector d, or an aggregator called on G. The
    second term admits the rounding left in a d that should be exactly zero
    (G stationary), which is of order eps·max_j‖g_j‖.
    """
    d = direction(G) if callable(direction) else direction
    inner, bound, bad = _conflicts(G, d, rtol, scale_tol)
    if bad.numel():
        k = int(bad[0])
        raise AssertionError(
            f"direction conflicts with row {k}: <g_{k}, d> = {float(inner[k]):.3e} "
            f"< -{float(bound[k]):.3e}; all inner products: {inner.tolist()}")


def assert_bucketwise_non_conflicting(direction: Tensor | Aggregator, G: Tensor,
                                      partition: Partition, rtol: float = 1e-9,
                                      scale_tol: float = 1e-12) -> None:
    """Assert the non-conflict bound of :func:`assert_non_conflicting` inside every bucket.

    This is the localised guarantee: ⟨g_k^b, d^b⟩ ≥ 0 (up to the same relative
    tolerance, measured on the bucket block) for every language k and bucket b.
    An :class:`~refmoo.Aggregator` is applied bucket-wise first.
    """
    d = bucketwise(direction, G, partition) if isinstance(direction, Aggregator) else direction
    failures = []
    for b, idx in enumerate(partition):
        inner, bound, bad = _conflicts(G[:, idx], d[idx], rtol, scale_tol)
        failures += [f"bucket {b} ({partition.names[b]!r}), row {int(k)}: "
                     f"<g_k^b, d^b> = {float(inner[k]):.3e} < -{float(bound[k]):.3e}"
                     for k in bad]
    if failures:
        raise AssertionError("direction conflicts inside buckets:\n  " + "\n  ".join(failures))


def assert_matches_bucketwise(actual: Tensor, aggregator: Aggregator, G: Tensor,
                              partition: Partition, rtol: float = 1e-9,
                              scale_tol: float = 1e-12) -> None:
    """Assert ``actual`` equals the reference ``bucketwise(aggregator, G, partition)``.

    Meant for distributed or fused implementations: bucket b must satisfy
    ‖actual^b − ref^b‖ ≤ rtol·‖ref^b‖ + scale_tol·max_k‖g_k‖. The message
    names the worst bucket.
    """
    expected = bucketwise(aggregator, G, partition).to(torch.float64)
    actual64 = actual.to(torch.float64)
    if actual64.shape != expected.shape:
        raise AssertionError(f"shape {tuple(actual.shape)} != reference {tuple(expected.shape)}")
    floor = scale_tol * _row_scale(G)
    worst, worst_excess = None, 0.0
    for b, idx in enumerate(partition):
        err = float(torch.linalg.vector_norm(actual64[idx] - expected[idx]))
        allowed = rtol * float(torch.linalg.vector_norm(expected[idx])) + floor
        if err > allowed and err - allowed > worst_excess:
            worst, worst_excess = (b, err, allowed), err - allowed
    if worst is not None:
        b, err, allowed = worst
        raise AssertionError(
            f"update differs from bucketwise({aggregator!r}) in bucket {b} "
            f"({partition.names[b]!r}): error {err:.3e} > {allowed:.3e}\n"
            f"  actual:    {actual64[partition.indices(b)].tolist()}\n"
            f"  reference: {expected[partition.indices(b)].tolist()}")


def _referee_residual(block: Tensor) -> tuple[float, np.ndarray]:
    weights, value = cvxpy_min_norm(block)
    return float(np.sqrt(max(value, 0.0))), weights


def assert_pareto_stationary(G: Tensor, tol: float = 1e-6) -> None:
    """Assert min_{λ∈Δ} ‖Gᵀλ‖ ≤ tol·max_k‖g_k‖, as judged by cvxpy."""
    residual, weights = _referee_residual(G)
    threshold = tol * _row_scale(G)
    if residual > threshold:
        cert = pareto_stationarity(G, tol)
        raise AssertionError(
            f"G is not Pareto stationary: cvxpy residual {residual:.3e} > {threshold:.3e} "
            f"(λ = {np.round(weights, 6).tolist()}).\nrefmoo certificate: {cert}")


def assert_not_pareto_stationary(G: Tensor, tol: float = 1e-6) -> Tensor:
    """Assert G is not Pareto stationary, with a witness; returns the witness d.

    Two checks: cvxpy's residual exceeds tol·max_k‖g_k‖, and d = −Gᵀλ built
    from cvxpy's weights is a strict common descent direction, max_k ⟨g_k, d⟩ < 0
    (Gordan's alternative), evaluated on G itself.
    """
    residual, weights = _referee_residual(G)
    threshold = tol * _row_scale(G)
    G64 = G.to(torch.float64)
    d = -(G64.T @ torch.from_numpy(weights))
    inner = G64 @ d
    if residual <= threshold or float(inner.max()) >= 0:
        cert = pareto_stationarity(G, tol)
        raise AssertionError(
            f"G is Pareto stationary (or no witness found): cvxpy residual {residual:.3e} "
            f"vs threshold {threshold:.3e}, λ = {np.round(weights, 6).tolist()}, "
            f"max_k <g_k, d> = {float(inner.max()):.3e}.\nrefmoo certificate: {cert}")
    return d


def assert_refined_stationary(G: Tensor, partition: Partition, tol: float = 1e-6) -> None:
    """Assert every bucket of G is Pareto stationary (RPS_P), each judged by cvxpy."""
    failures = []
    for b, idx in enumerate(partition):
        block = G[:, idx]
        residual, weights = _referee_residual(block)
        threshold = tol * _row_scale(block)
        if residual > threshold:
            failures.append(f"bucket {b} ({partition.names[b]!r}): residual {residual:.3e} > "
                            f"{threshold:.3e}, λ = {np.round(weights, 6).tolist()}")
    if failures:
        cert = refined_pareto_stationarity(G, partition, tol)
        raise AssertionError("G is not refined-Pareto stationary:\n  " + "\n  ".join(failures)
                             + f"\nrefmoo certificate: {cert}")
