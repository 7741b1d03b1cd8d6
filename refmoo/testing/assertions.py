"""Assertions for user tests, refereed by cvxpy; failures print the certificate.

Tolerances are relative to the scale of the input (the largest row norm), so
the same test passes at 1e-12 and at 1e12.
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np
import torch
from torch import Tensor

from ..partitions import Partition
from ..referee import cvxpy_min_norm
from ..stationarity import pareto_stationarity, refined_pareto_stationarity


def _row_scale(G: Tensor) -> float:
    return float(torch.linalg.vector_norm(G.to(torch.float64), dim=1).max())


def assert_non_conflicting(direction: Tensor | Callable[[Tensor], Tensor], G: Tensor,
                           rtol: float = 1e-9, scale_tol: float = 1e-12) -> None:
    """Assert ⟨g_k, d⟩ ≥ −‖g_k‖·(rtol·‖d‖ + scale_tol·max_j‖g_j‖) for every row k.

    ``direction`` is the aggregated vector d, or an aggregator called on G. The
    second term admits the rounding left in a d that should be exactly zero
    (G stationary), which is of order eps·max_j‖g_j‖.
    """
    d = direction(G) if callable(direction) else direction
    G64, d64 = G.to(torch.float64), d.to(torch.float64)
    inner = G64 @ d64
    norms = torch.linalg.vector_norm(G64, dim=1)
    bound = norms * (rtol * torch.linalg.vector_norm(d64) + scale_tol * norms.max())
    bad = (inner < -bound).nonzero().reshape(-1)
    if bad.numel():
        k = int(bad[0])
        raise AssertionError(
            f"direction conflicts with row {k}: <g_{k}, d> = {float(inner[k]):.3e} "
            f"< -{float(bound[k]):.3e}; all inner products: {inner.tolist()}")


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
