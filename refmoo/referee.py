"""cvxpy as the independent referee for every fast solver in the package.

These solves are slow (one conic program per bucket) and exist to check, not
to train: tests, :mod:`refmoo.testing` and ``python -m refmoo verify`` use them.

Their reach: CLARABEL stops at tolerances of about 1e-8 relative to the
largest row (measured KKT gaps of 1e-5 relative where the exact solver's were
1e-17), so cvxpy cannot judge a row 1e-8 times smaller than the others, nor
anything finer than that. For rows of very different norms, and wherever an
answer must be checked to rounding, :mod:`refmoo.exact` is the referee: a
rational solve with no tolerance at all (small K).
"""

from __future__ import annotations

import warnings

import cvxpy as cp
import numpy as np
import torch
from torch import Tensor


def _as_array(G: Tensor | np.ndarray) -> np.ndarray:
    if isinstance(G, Tensor):
        return G.detach().cpu().to(torch.float64).numpy()
    return np.asarray(G, dtype=float)


_TIGHT = {"CLARABEL": {"tol_gap_abs": 1e-12, "tol_gap_rel": 1e-12, "tol_feas": 1e-12,
                        "max_iter": 500}}


def cvxpy_min_norm(G: Tensor | np.ndarray, solver: str = "CLARABEL") -> tuple[np.ndarray, float]:
    """Solve min_{λ∈Δ} ‖Gᵀλ‖² with cvxpy; returns (λ, optimal value).

    The problem is posed on G itself (``norm(Gᵀλ)``), not on the Gram
    matrix, so the referee does not share the fast solver's squaring of the
    condition number. Rows are rescaled by the largest row norm first so that
    the conic solver's absolute tolerances mean the same at every scale.
    """
    A = _as_array(G)
    scale = float(np.abs(A).max()) if A.size else 0.0
    if scale == 0.0:
        K = A.shape[0]
        return np.full(K, 1.0 / K), 0.0
    A = A / scale
    K = A.shape[0]
    lam = cp.Variable(K)
    # The norm (an SOCP), not its square: the solver's tolerance then applies
    # to φ itself rather than to φ², which keeps near-stationary verdicts sharp.
    problem = cp.Problem(cp.Minimize(cp.norm(A.T @ lam, 2)), [lam >= 0, cp.sum(lam) == 1])
    options = _TIGHT.get(solver, {})
    with warnings.catch_warnings():
        # At 1e-12 tolerances CLARABEL sometimes stops at "almost optimal"
        # (OPTIMAL_INACCURATE), which is still far below the checks' tolerances.
        warnings.filterwarnings("ignore", message="Solution may be inaccurate")
        problem.solve(solver=solver, **options)
    if problem.status not in (cp.OPTIMAL, cp.OPTIMAL_INACCURATE):
        raise RuntimeError(f"cvxpy could not solve the min-norm problem: {problem.status}")
    weights = np.clip(np.asarray(lam.value, dtype=float), 0.0, None)
    weights /= weights.sum()
    return weights, float(np.sum((A.T @ weights) ** 2)) * scale**2


def cvxpy_is_pareto_stationary(G: Tensor | np.ndarray, tol: float) -> bool:
    """Referee's verdict: min_{λ∈Δ} ‖Gᵀλ‖ ≤ tol · max_k ‖g_k‖."""
    A = _as_array(G)
    _, value = cvxpy_min_norm(A)
    scale = float(np.linalg.norm(A, axis=1).max())
    return float(np.sqrt(max(value, 0.0))) <= tol * scale
