"""cvxpy-refereed measures and small exact references shared by the proof tests."""

from __future__ import annotations

import itertools
import math
import warnings

import cvxpy as cp
import numpy as np
import torch
from torch import Tensor

from refmoo import Partition
from refmoo.referee import cvxpy_min_norm


def phi(G: Tensor) -> float:
    """φ(G) = min_{λ∈Δ} ‖Gᵀλ‖, solved by cvxpy."""
    return math.sqrt(max(cvxpy_min_norm(G)[1], 0.0))


def bucket_phis(G: Tensor, partition: Partition) -> list[float]:
    return [phi(G[:, idx]) for idx in partition]


def phi_p(G: Tensor, partition: Partition) -> float:
    """φ_P(G) = (Σ_b φ(G^b)²)^{1/2}, every bucket solved by cvxpy."""
    return math.sqrt(sum(v * v for v in bucket_phis(G, partition)))


def row_scale(G: Tensor) -> float:
    return float(torch.linalg.vector_norm(G.to(torch.float64), dim=1).max())


# cvxpy/Clarabel solves the normalised problem to about 1e-9 in φ; comparisons
# between referee values allow this much relative to the largest row norm.
REFEREE_TOL = 1e-7


_TIGHT = {"tol_gap_abs": 1e-12, "tol_gap_rel": 1e-12, "tol_feas": 1e-12, "max_iter": 500}


def project_onto_hulls(theta: np.ndarray, centres: np.ndarray, blocks: list[np.ndarray]
                       ) -> np.ndarray:
    """argmin_x ‖θ − x‖ subject to x^b ∈ conv{c_k^b} for every block (cvxpy)."""
    # Solved on unit-scale data so that the solver's absolute tolerances are relative.
    scale = max(float(np.abs(theta).max()), float(np.abs(centres).max()), 1e-300)
    t, c = theta / scale, centres / scale
    x = cp.Variable(theta.size)
    cons = []
    for idx in blocks:
        mu = cp.Variable(centres.shape[0], nonneg=True)
        cons += [cp.sum(mu) == 1, x[idx] == c[:, idx].T @ mu]
    with warnings.catch_warnings():
        # Clarabel flags "inaccurate" when it stops just short of the 1e-12 targets;
        # the tests compare its answer with explicit tolerances instead.
        warnings.simplefilter("ignore", UserWarning)
        cp.Problem(cp.Minimize(cp.norm(x - t, 2)), cons).solve(solver=cp.CLARABEL, **_TIGHT)
    return np.asarray(x.value) * scale


def pcgrad_with_orders(G: np.ndarray, orders) -> np.ndarray:
    """PCGrad (Yu et al. 2020, Alg. 1, summed) with the visiting order of every row given."""
    out = np.zeros(G.shape[1])
    for i, order in enumerate(orders):
        g = G[i].astype(float).copy()
        for j in order:
            inner = g @ G[j]
            if inner < 0:
                g = g - inner / (G[j] @ G[j]) * G[j]
        out += g
    return out


def all_pcgrad_orders(K: int):
    """Every combination of visiting orders, one permutation of the other rows per row."""
    per_row = [list(itertools.permutations([j for j in range(K) if j != i])) for i in range(K)]
    return list(itertools.product(*per_row))


def cagrad_primal(G: np.ndarray, c: float) -> np.ndarray:
    """CAGrad's direction from its primal: argmax_{‖d−g0‖≤c‖g0‖} min_k ⟨g_k, d⟩ (cvxpy)."""
    scale = float(np.abs(G).max()) if G.size else 0.0
    if scale == 0.0:
        return np.zeros(G.shape[1])
    A = G / scale
    g0 = A.mean(0)
    radius = c * float(np.linalg.norm(g0))
    if radius == 0.0:
        return g0 * scale
    d, t = cp.Variable(G.shape[1]), cp.Variable()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UserWarning)  # see project_onto_hulls
        cp.Problem(cp.Maximize(t), [A @ d >= t, cp.norm(d - g0, 2) <= radius]).solve(
            solver=cp.CLARABEL, **_TIGHT)
    return np.asarray(d.value) * scale

