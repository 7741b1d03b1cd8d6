"""Shared test inputs and cvxpy referees for the per-aggregator tests."""

from __future__ import annotations

import warnings

import cvxpy as cp
import numpy as np
import torch

# CLARABEL at tight tolerances, on G itself (not the Gram), as in refmoo.referee.
TIGHT = {"tol_gap_abs": 1e-12, "tol_gap_rel": 1e-12, "tol_feas": 1e-12, "max_iter": 500}



def _solve(problem: cp.Problem) -> None:
    # CLARABEL flags "inaccurate" near its 1e-12 targets; the tests judge the values.
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message="Solution may be inaccurate")
        problem.solve(solver=cp.CLARABEL, **TIGHT)


KINDS = ("generic", "conflict", "duplicate", "zero", "non-stationary")


def matrix(rng: np.random.Generator, K: int, D: int, kind: str, rank: int | None = None,
           exponent: int = 0) -> np.ndarray:
    """A K×D matrix of the given degenerate ``kind``, of rank ≤ ``rank``, scaled by 10^exponent."""
    r = min(K, D) if rank is None else rank
    G = rng.standard_normal((K, r)) @ rng.standard_normal((r, D))
    if kind == "conflict" and K > 1:
        G[1] = -rng.uniform(0.01, 100.0) * G[0]
    elif kind == "duplicate" and K > 1:
        G[rng.integers(1, K)] = G[0]
    elif kind == "zero":
        G[rng.integers(0, K)] = 0.0
    elif kind == "non-stationary":
        u = rng.standard_normal(D)
        u /= np.linalg.norm(u)
        G = G + np.outer(np.maximum(rng.uniform(1e-3, 1.0) - G @ u, 0.0), u)
    return G * 10.0**exponent


def cases(seed: int, count: int, K=(1, 7), D=(1, 10), exponents=(-12, 12), kinds=KINDS):
    """``count`` (label, float64 tensor) pairs covering kinds, ranks and scales."""
    rng = np.random.default_rng(seed)
    out = []
    for t in range(count):
        k = int(rng.integers(K[0], K[1] + 1))
        d = int(rng.integers(D[0], D[1] + 1))
        rank = int(rng.integers(1, min(k, d) + 1))
        kind = kinds[t % len(kinds)]
        e = int(rng.integers(exponents[0], exponents[1] + 1))
        G = matrix(rng, k, d, kind, rank, e)
        out.append((f"{t}-{kind}-K{k}-D{d}-r{rank}-1e{e}", torch.tensor(G)))
    return out


def normalised(G: torch.Tensor) -> np.ndarray:
    """G as float64 numpy, divided by its largest row norm (1 if G = 0)."""
    A = G.to(torch.float64).numpy()
    scale = float(np.linalg.norm(A, axis=1).max()) if A.size else 0.0
    return A / (scale if scale > 0 else 1.0)


def cvxpy_dual_cone_projection(A: np.ndarray, u: np.ndarray) -> float:
    """min_{v ≥ u} ‖Aᵀv‖², solved as an SOCP on A."""
    v = cp.Variable(A.shape[0])
    problem = cp.Problem(cp.Minimize(cp.norm(A.T @ v, 2)), [v >= u])
    _solve(problem)
    vv = np.maximum(np.asarray(v.value), u)
    return float(np.sum((A.T @ vv) ** 2))


def cvxpy_cagrad_value(A: np.ndarray, c: float) -> float:
    """max_{‖d − g0‖ ≤ c‖g0‖} min_k ⟨a_k, d⟩ (CAGrad's primal problem)."""
    g0 = A.mean(0)
    d, t = cp.Variable(A.shape[1]), cp.Variable()
    problem = cp.Problem(cp.Maximize(t), [A @ d >= t, cp.norm(d - g0, 2) <= c * np.linalg.norm(g0)])
    _solve(problem)
    return float(problem.value)


def cvxpy_nash_objective(A: np.ndarray) -> float:
    """min_{α>0} ½‖Aᵀα‖² − Σ log α_k (Nash-MTL's potential on Q = AAᵀ)."""
    a = cp.Variable(A.shape[0])
    problem = cp.Problem(cp.Minimize(0.5 * cp.sum_squares(A.T @ a) - cp.sum(cp.log(a))))
    _solve(problem)
    return float(problem.value)


def nash_objective(Q: np.ndarray, alpha: np.ndarray) -> float:
    return float(0.5 * alpha @ Q @ alpha - np.log(alpha).sum())
