r"""Certificates of (refined) Pareto stationarity.

Pareto stationarity (PS) of G: some :math:`\lambda\in\Delta_K` has
:math:`G^\top\lambda = 0`; its measure is :math:`\varphi(G) = \min_{\lambda\in\Delta}
\|G^\top\lambda\|`. Refined Pareto stationarity for a partition P (RPS_P): every
bucket is PS; its measure is :math:`\varphi_P(G) = (\sum_b \varphi(G^b)^2)^{1/2}`.

A certificate never answers with a bare boolean. Stationary: the weights and
the residual :math:`\|G^\top\lambda\|`. Not stationary: by Gordan's alternative a
direction d with :math:`\max_k \langle g_k, d\rangle < 0` exists; the certificate
gives :math:`d = -G^\top\lambda^\star` (per bucket for RPS) and its margin
:math:`-\max_k\langle g_k, d\rangle \ge \varphi^2`, evaluated on G itself.

Tolerance: a (bucket) matrix counts as stationary when
:math:`\varphi \le \text{atol} + \text{tol}\cdot\max_k \|g_k\|`, so the verdict does
not change when G is rescaled (with ``atol = 0``).
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import Tensor

from ._checks import check_finite, check_matrix
from .bucketwise import bucket_grams, combine
from .min_norm import solve_min_norm
from .partitions._partition import Partition


@dataclass(frozen=True)
class ParetoCertificate:
    """Outcome of :func:`pareto_stationarity`."""

    stationary: bool
    weights: Tensor
    """λ ∈ Δ_K minimising ‖Gᵀλ‖."""
    residual: Tensor
    """φ(G) = ‖Gᵀλ‖, computed on G in float64."""
    threshold: float
    """The absolute bound φ was compared with: atol + tol·max_k‖g_k‖."""
    direction: Tensor | None
    """When not stationary: d = −Gᵀλ, a common descent direction."""
    margin: Tensor | None
    """When not stationary: −max_k ⟨g_k, d⟩ > 0."""

    @property
    def measure(self) -> Tensor:
        return self.residual


@dataclass(frozen=True)
class RefinedParetoCertificate:
    """Outcome of :func:`refined_pareto_stationarity`; per-bucket fields are ``[M, ...]``."""

    stationary: bool
    partition: Partition
    weights: Tensor
    """λ_b ∈ Δ_K per bucket, shape ``[M, K]``."""
    bucket_residuals: Tensor
    """φ(G^b) per bucket, shape ``[M]``."""
    bucket_thresholds: Tensor
    """atol + tol·max_k‖g_k^b‖ per bucket."""
    bucket_stationary: Tensor
    """Verdict per bucket (bool ``[M]``)."""
    measure: Tensor
    """φ_P(G) = sqrt(Σ_b φ(G^b)²)."""
    direction: Tensor | None
    """When not stationary: d with d^b = −G^bᵀλ_b on non-stationary buckets, 0 elsewhere."""
    margin: Tensor | None
    """When not stationary: −max_k ⟨g_k, d⟩ > 0 over the full vector."""
    bucket_margins: Tensor | None
    """When not stationary: −max_k ⟨g_k^b, d^b⟩ per bucket (0 on stationary buckets)."""

    @property
    def residual(self) -> Tensor:
        return self.measure


def _prepare(G: Tensor, partition: Partition | None) -> Tensor:
    check_matrix(G)
    if partition is not None:
        partition.check_columns(G)
    check_finite(G, partition)
    return G.detach().to(torch.float64)


def pareto_stationarity(G: Tensor, tol: float = 1e-6, *, atol: float = 0.0) -> ParetoCertificate:
    """Certify whether G (K×D) is Pareto stationary.

    >>> G = torch.tensor([[1.0, 1.0], [-1.0, -2.0]], dtype=torch.float64)
    >>> cert = pareto_stationarity(G)
    >>> cert.stationary, round(float(cert.residual), 6), round(float(cert.margin), 6)
    (False, 0.27735, 0.076923)
    """
    G64 = _prepare(G, None)
    cert = refined_pareto_stationarity(G64, Partition.single(G64.shape[1]), tol, atol=atol)
    return ParetoCertificate(
        stationary=cert.stationary,
        weights=cert.weights[0],
        residual=cert.measure,
        threshold=float(cert.bucket_thresholds[0]),
        direction=cert.direction,
        margin=cert.margin,
    )


def refined_pareto_stationarity(G: Tensor, partition: Partition, tol: float = 1e-6, *,
                                atol: float = 0.0) -> RefinedParetoCertificate:
    """Certify whether every bucket of G is Pareto stationary (RPS for ``partition``).

    >>> G = torch.tensor([[1.0, 1.0], [-1.0, -2.0]], dtype=torch.float64)
    >>> refined_pareto_stationarity(G, Partition.singletons(2)).stationary
    True
    """
    G64 = _prepare(G, partition)
    Q = bucket_grams(G64, partition)
    lam = solve_min_norm(Q).weights
    # Residuals and margins are evaluated on G, not on Q, so that they do not
    # inherit the Gram matrix's squared condition number.
    mgda = combine(G64, lam, partition)
    bucket_of = partition.bucket_of
    M = len(partition)
    residual_sq = torch.zeros(M, dtype=torch.float64).index_add_(0, bucket_of, mgda * mgda)
    residuals = residual_sq.sqrt()
    row_sq = torch.zeros(M, G64.shape[0], dtype=torch.float64).index_add_(
        0, bucket_of, (G64 * G64).T)
    thresholds = atol + tol * row_sq.amax(-1).sqrt()
    bucket_ok = residuals <= thresholds
    stationary = bool(bucket_ok.all())
    direction = margin = bucket_margins = None
    if not stationary:
        direction = torch.where(bucket_ok[bucket_of], torch.zeros_like(mgda), -mgda)
        inner = torch.zeros(M, G64.shape[0], dtype=torch.float64).index_add_(
            0, bucket_of, (G64 * direction).T)
        bucket_margins = -inner.amax(-1)
        margin = -(G64 @ direction).amax()
    return RefinedParetoCertificate(
        stationary=stationary,
        partition=partition,
        weights=lam,
        bucket_residuals=residuals,
        bucket_thresholds=thresholds,
        bucket_stationary=bucket_ok,
        measure=residual_sq.sum().sqrt(),
        direction=direction,
        margin=margin,
        bucket_margins=bucket_margins,
    )
