"""proofs/convergence.md: descent lemma, continuity of φ, rates of bucket/full MGDA."""

import math

import numpy as np
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from refmoo import MGDA, Partition, bucketwise
from refmoo.testing import degenerate_matrices, gradient_matrices, partitions

from ._referee import REFEREE_TOL, phi, phi_p, row_scale


class Problem:
    """L_k(θ) = ½(θ−c_k)ᵀH_k(θ−c_k) + Σ_i α_ki·cos θ_i: smooth, non-convex when α ≠ 0.

    ‖∇²L_k‖ ≤ ‖H_k‖₂ + max_i |α_ki| =: L, and L_k ≥ −Σ_i |α_ki| (the quadratic is ≥ 0),
    which is inf L_k exactly when α_k = 0.
    """

    def __init__(self, seed: int, K: int, D: int, wavy: bool):
        rng = np.random.default_rng(seed)
        A = rng.standard_normal((K, D, D)) * rng.uniform(0.2, 2.0, size=(K, 1, 1))
        self.H = torch.from_numpy(A @ A.transpose(0, 2, 1) / D)
        self.c = torch.from_numpy(rng.standard_normal((K, D)) * 3)
        self.alpha = torch.from_numpy(rng.uniform(-1, 1, (K, D)) if wavy else np.zeros((K, D)))
        self.L = float(torch.linalg.matrix_norm(self.H, ord=2).max()
                       + self.alpha.abs().amax())
        self.lower = -self.alpha.abs().sum(1)
        self.theta0 = torch.from_numpy(rng.standard_normal(D) * 5)

    def losses(self, theta):
        r = theta[None, :] - self.c
        return 0.5 * torch.einsum("ki,kij,kj->k", r, self.H, r) + (self.alpha * theta.cos()).sum(1)

    def jacobian(self, theta):
        r = theta[None, :] - self.c
        return torch.einsum("kij,kj->ki", self.H, r) - self.alpha * theta.sin()


@st.composite
def problems(draw):
    K, D = draw(st.integers(1, 4)), draw(st.integers(1, 6))
    problem = Problem(draw(st.integers(0, 2**32 - 1)), K, D, draw(st.booleans()))
    return problem, draw(partitions(D))


def _run(problem, partition, eta, T):
    theta, losses, phis = problem.theta0.clone(), [], []
    for _ in range(T):
        G = problem.jacobian(theta)
        a = bucketwise(MGDA(), G, partition)
        losses.append(problem.losses(theta))
        phis.append(float(a.norm()))  # ‖a‖ = φ_P (Theorem 4.1)
        theta = theta - eta * a
    losses.append(problem.losses(theta))
    return torch.stack(losses), torch.tensor(phis, dtype=torch.float64)


steps = st.sampled_from([1.0, 0.5, 0.1, 1.5, 1.9])  # η·L; the theorem allows (0, 2)


@settings(max_examples=30)
@given(problems(), st.integers(0, 2**32 - 1))
def test_descent_lemma(case, seed):
    problem, _ = case
    rng = np.random.default_rng(seed)
    D = problem.c.shape[1]
    x = torch.from_numpy(rng.standard_normal(D) * 5)
    y = x + torch.from_numpy(rng.standard_normal(D)) * 10.0 ** rng.uniform(-3, 1)
    lhs = problem.losses(y)
    step = y - x
    rhs = problem.losses(x) + problem.jacobian(x) @ step + 0.5 * problem.L * step.square().sum()
    assert bool((lhs <= rhs + 1e-9 * (1 + rhs.abs())).all())


@settings(max_examples=30)
@given(st.one_of(gradient_matrices(K=st.integers(1, 5), D=st.integers(1, 8)),
                 degenerate_matrices()).flatmap(
    lambda G: st.tuples(st.just(G), partitions(G.shape[1]))),
    st.integers(0, 2**32 - 1), st.integers(-4, 1))
def test_measures_are_lipschitz(case, seed, exponent):
    G, p = case
    E = torch.from_numpy(np.random.default_rng(seed).standard_normal(tuple(G.shape))) \
        * 10.0**exponent
    H = G + E
    bound = float(torch.linalg.vector_norm(E, dim=1).max())
    tol = REFEREE_TOL * max(row_scale(G), row_scale(H))
    assert abs(phi(G) - phi(H)) <= bound + tol
    assert abs(phi_p(G, p) - phi_p(H, p)) <= math.sqrt(len(p)) * bound + tol


@settings(max_examples=25)
@given(problems(), steps)
def test_bucket_mgda_losses_decrease_by_the_margin(case, eta_l):
    problem, p = case
    eta = eta_l / problem.L
    losses, phis = _run(problem, p, eta, T=30)
    decrease = eta * (1 - problem.L * eta / 2) * phis.square()
    slack = 1e-9 * (1 + losses.abs().amax())
    assert bool((losses[1:] <= losses[:-1] - decrease[:, None] + slack).all())
    assert bool((losses[1:] <= losses[:-1] + slack).all())


def _assert_rate(problem, p, eta, T):
    losses, phis = _run(problem, p, eta, T)
    gap = float((losses[0] - problem.lower).min())  # ≥ min_k Δ_k: a valid, possibly weaker bound
    const = eta * (1 - problem.L * eta / 2)
    steps_so_far = torch.arange(1, T + 1, dtype=torch.float64)
    running_min = torch.cummin(phis.square(), 0).values
    running_mean = phis.square().cumsum(0) / steps_so_far
    bound = gap / (const * steps_so_far)
    # The bound can hold with equality (see test_rate_constant_is_attained): compare
    # with a rounding-level slack only.
    slack = 1e-9 * (1 + gap) / const
    assert bool((running_min <= running_mean * (1 + 1e-12)).all())
    assert bool((running_mean <= bound + slack).all())
    if eta * problem.L <= 1:
        assert bool((bound <= 2 * gap / (eta * steps_so_far) * (1 + 1e-12)).all())
    return phis


@settings(max_examples=20)
@given(problems(), steps)
def test_bucket_mgda_rate(case, eta_l):
    problem, p = case
    phis = _assert_rate(problem, p, eta_l / problem.L, T=30)
    # The measure tracked is φ_P, as the referee computes it, at the start.
    G0 = problem.jacobian(problem.theta0)
    assert abs(float(phis[0]) - phi_p(G0, p)) <= REFEREE_TOL * row_scale(G0)


@settings(max_examples=20)
@given(problems(), steps)
def test_full_mgda_rate(case, eta_l):
    problem, _ = case
    single = Partition.single(problem.c.shape[1])
    phis = _assert_rate(problem, single, eta_l / problem.L, T=30)
    G0 = problem.jacobian(problem.theta0)
    assert abs(float(phis[0]) - phi(G0)) <= REFEREE_TOL * row_scale(G0)


@settings(max_examples=20)
@given(st.floats(0.1, 10.0), st.lists(st.floats(-5, 5), min_size=1, max_size=4).filter(any),
       st.sampled_from([0.25, 0.5, 1.0, 1.5]))
def test_rate_constant_is_attained(L, theta0, eta_l):
    # K = 1, L_1(θ) = (L/2)‖θ‖²: one step of size η, and item 1 holds with equality.
    theta0 = torch.tensor(theta0, dtype=torch.float64)
    eta = eta_l / L
    G = (L * theta0)[None, :]
    a = bucketwise(MGDA(), G, Partition.single(theta0.numel()))
    theta1 = theta0 - eta * a
    decrease = 0.5 * L * (theta0.square().sum() - theta1.square().sum())
    predicted = eta * (1 - L * eta / 2) * a.square().sum()
    assert abs(float(decrease - predicted)) <= 1e-12 * float(predicted)
    if eta_l == 1.0:
        # T = 1 in (R): φ_0² equals Δ/(η(1 − Lη/2)) since the first step reaches the minimum.
        assert float(theta1.abs().max()) <= 1e-15 * float(theta0.abs().max())
        delta = 0.5 * L * float(theta0.square().sum())
        assert abs(float(a.square().sum()) - delta / (eta * (1 - L * eta / 2))) <= 1e-12 * delta * L


def test_bucket_bound_does_not_control_phi():
    centres = torch.tensor([[0.0, 0.0], [1.0, 1.0]], dtype=torch.float64)
    theta = torch.tensor([1.0, 0.0], dtype=torch.float64)
    S = Partition.singletons(2)
    for _ in range(20):
        G = theta[None, :] - centres
        assert phi_p(G, S) <= 1e-12
        assert abs(phi(G) - 1 / math.sqrt(2)) < 1e-9
        theta = theta - 1.0 * bucketwise(MGDA(), G, S)  # η = 1/L with L = 1
    # Bitwise by construction: a zero row in every singleton bucket makes the update
    # exactly 0 at every step (see tests/proofs/test_converse.py).
    assert torch.equal(theta, torch.tensor([1.0, 0.0], dtype=torch.float64))
