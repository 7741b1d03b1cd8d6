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

A verdict of "not stationary" is *verified*: the inner products
:math:`\langle g_k^b, d^b\rangle` are evaluated on G, and each must stay negative
after adding the worst-case rounding of its own evaluation,
:math:`\gamma_{n+1}\sum_i |g_{ki}||d_i|` with :math:`\gamma_m = m\varepsilon/(1-m\varepsilon)`
over the n columns of the bucket. A bucket whose φ exceeds its threshold but
whose direction cannot be verified so is declared stationary: no strict
descent direction is visible in float64, which happens only when G is
stationary to within the rounding of the Gram-based solve (its φ then
reflects that rounding, about :math:`\sqrt{\varepsilon}` relative to the rows).

Scale: every bucket is divided by the power of two that brings its largest
entry into [1/2, 1) before its Gram matrix is formed, so nothing under- or
overflows and the verdicts are the same from 1e-300 to 1e300. Outputs are
scaled back exactly; one that float64 cannot hold (a margin of order
:math:`\varphi^2` for G near 1e-170, a residual of a G whose row norms overflow)
is reported as it rounds, with a :class:`RuntimeWarning` that says so.
"""

from __future__ import annotations

import warnings
from dataclasses import dataclass

import torch
from torch import Tensor

from ._checks import check_finite, check_matrix, check_tol
from ._scale import exponent, ldexp
from .bucketwise import bucket_grams, combine
from .min_norm import _solve
from .partitions._partition import Partition

_EPS = torch.finfo(torch.float64).eps


@dataclass(frozen=True)
class ParetoCertificate:
    """Outcome of :func:`pareto_stationarity`."""

    stationary: bool
    """False only with a verified strict descent direction (see the module docstring)."""
    weights: Tensor
    """λ ∈ Δ_K minimising ‖Gᵀλ‖."""
    residual: Tensor
    """φ(G) = ‖Gᵀλ‖, computed on G in float64."""
    threshold: float
    """The absolute bound φ was compared with: atol + tol·max_k‖g_k‖."""
    direction: Tensor | None
    """When not stationary: d = −Gᵀλ, a common descent direction."""
    margin: Tensor | None
    """When not stationary: −max_k ⟨g_k, d⟩ > 0 (≥ φ², up to the solver's tolerance;
    rounded, with a warning, where float64 cannot hold it)."""

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
    """Verdict per bucket (bool ``[M]``); False only where the bucket's direction is a
    verified strict descent direction for every row of the bucket."""
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


def _bucket_sum(values: Tensor, partition: Partition) -> Tensor:
    """Per-bucket sums of the columns of ``values [R, D]``: ``[M, R]``."""
    out = values.new_zeros(len(partition), values.shape[0])
    return out.index_add_(0, partition.bucket_of, values.T)


def _scaled_by_bucket(G64: Tensor, partition: Partition) -> tuple[Tensor, Tensor]:
    """``(Gs, e)``: bucket b of Gs is bucket b of G times 2**-e_b, largest entry in [1/2, 1)."""
    top = G64.new_zeros(len(partition)).scatter_reduce_(
        0, partition.bucket_of, G64.abs().amax(0), "amax")
    e = exponent(top)
    return ldexp(G64.T, -e[partition.bucket_of]).T, e


def _gamma(n: Tensor) -> Tensor:
    """γ_n = nε/(1 − nε): the relative error bound of an n-term sum of products."""
    m = n.to(torch.float64) * _EPS
    return m / (1 - m)


def _warn_unrepresentable(what: str, values: Tensor) -> None:
    if bool((~torch.isfinite(values)).any()):
        warnings.warn(f"{what} overflows float64 for this G (its row norms are near float64's "
                      "limit); it is reported as inf, the verdict is unaffected",
                      RuntimeWarning, stacklevel=3)
    elif bool(((values > 0) & (values < torch.finfo(torch.float64).tiny)).any()) or \
            bool((values == 0).any()):
        warnings.warn(f"{what} underflows float64 for this G (it is of order the square of "
                      "G's entries); it is reported rounded to a subnormal or 0, the verdict "
                      "was verified on G rescaled by powers of two", RuntimeWarning,
                      stacklevel=3)


def pareto_stationarity(G: Tensor, tol: float = 1e-6, *, atol: float = 0.0) -> ParetoCertificate:
    """Certify whether G (K×D) is Pareto stationary.

    >>> G = torch.tensor([[1.0, 1.0], [-1.0, -2.0]], dtype=torch.float64)
    >>> cert = pareto_stationarity(G)
    >>> cert.stationary, round(float(cert.residual), 6), round(float(cert.margin), 6)
    (False, 0.27735, 0.076923)
    """
    G64 = _prepare(G, None)
    if G64.shape[1] == 0:
        # Gᵀλ is the empty vector for every λ: stationary, with MGDA's weights.
        K = G64.shape[0]
        check_tol(tol, "tol")
        return ParetoCertificate(
            stationary=True, weights=_solve(G64.new_zeros(1, K, K)).weights[0],
            residual=G64.new_zeros(()), threshold=check_tol(atol, "atol"),
            direction=None, margin=None)
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
    tol, atol = check_tol(tol, "tol"), check_tol(atol, "atol")
    G64 = _prepare(G, partition)
    Gs, e = _scaled_by_bucket(G64, partition)
    lam = _solve(bucket_grams(Gs, partition)).weights
    # Residuals and margins are evaluated on G, not on Q, so that they do not
    # inherit the Gram matrix's squared condition number. Everything below is
    # in the units of the rescaled buckets until the outputs are scaled back.
    mgda = combine(Gs, lam, partition)
    residual_s = _bucket_sum((mgda * mgda).unsqueeze(0), partition)[:, 0].sqrt()
    row_norm_s = _bucket_sum(Gs * Gs, partition).amax(-1).sqrt()
    threshold_s = ldexp(torch.full_like(residual_s, atol), -e) + tol * row_norm_s
    over = residual_s > threshold_s
    direction_s = torch.where(over[partition.bucket_of], -mgda, torch.zeros_like(mgda))
    inner_s = _bucket_sum(Gs * direction_s, partition)  # [M, K]
    sizes = torch.tensor(partition.sizes)
    rounding_s = _gamma(sizes + 1).unsqueeze(-1) * _bucket_sum(
        Gs.abs() * direction_s.abs(), partition)
    verified = over & ((inner_s + rounding_s).amax(-1) < 0)
    bucket_ok = ~verified
    stationary = bool(bucket_ok.all())
    residuals = ldexp(residual_s, e)
    thresholds = atol + tol * ldexp(row_norm_s, e)
    top = int(e.max())
    measure = ldexp(ldexp(residual_s, e - top).square().sum().sqrt(), torch.tensor(top))
    positive = residual_s > 0
    _warn_unrepresentable("the residual φ",
                          torch.cat([residuals[positive], measure.reshape(1)[positive.any(0,
                                                                                   keepdim=True)]]))
    direction = margin = bucket_margins = None
    if not stationary:
        direction = ldexp(direction_s, e[partition.bucket_of])
        bucket_margins = torch.where(verified, -ldexp(inner_s.amax(-1), 2 * e),
                                     torch.zeros_like(residual_s))
        shift = int(e[verified].max())
        margin = -ldexp(ldexp(inner_s[verified], 2 * (e[verified] - shift)).sum(0).amax(),
                        torch.tensor(2 * shift))
        _warn_unrepresentable("the margin -max_k <g_k, d>",
                              torch.cat([margin.reshape(1), bucket_margins[verified]]))
    return RefinedParetoCertificate(
        stationary=stationary,
        partition=partition,
        weights=lam,
        bucket_residuals=residuals,
        bucket_thresholds=thresholds,
        bucket_stationary=bucket_ok,
        measure=measure,
        direction=direction,
        margin=margin,
        bucket_margins=bucket_margins,
    )
