"""proofs/converse.md: RPS_P does not imply PS; the RPS set of isotropic quadratics."""

import math

import numpy as np
import torch
from hypothesis import find, given, settings
from hypothesis import strategies as st

from refmoo import MGDA, Partition, bucketwise, pareto_stationarity, refined_pareto_stationarity
from refmoo.testing import (
    CLASSES,
    NON_STATIONARY,
    assert_not_pareto_stationary,
    assert_pareto_stationary,
    assert_refined_stationary,
    bucketed_matrices,
    gradient_matrices,
    partitions,
)

from ._referee import REFEREE_TOL, phi, phi_p, project_onto_hulls, row_scale

COUNTEREXAMPLE = torch.tensor([[1.0, 1.0], [-1.0, -2.0]], dtype=torch.float64)


def test_design_counterexample():
    G, S = COUNTEREXAMPLE, Partition.singletons(2)
    for b, weights in enumerate([(0.5, 0.5), (2 / 3, 1 / 3)]):
        assert abs(float(torch.tensor(weights, dtype=torch.float64) @ G[:, b])) < 1e-15
    assert_refined_stationary(G, S)
    d = assert_not_pareto_stationary(G)
    assert float((G @ d).max()) < 0
    for t in np.linspace(0, 1, 7):
        combination = G.T @ torch.tensor([t, 1 - t], dtype=torch.float64)
        assert abs(float(combination.square().sum()) - (13 * t * t - 16 * t + 5)) < 1e-12
    cert = pareto_stationarity(G)
    assert torch.allclose(cert.weights, torch.tensor([8 / 13, 5 / 13], dtype=torch.float64),
                          atol=1e-15)
    assert abs(float(cert.residual) ** 2 - 1 / 13) < 1e-15
    assert abs(phi(G) ** 2 - 1 / 13) < 1e-9
    assert torch.allclose(cert.direction, torch.tensor([-3 / 13, 2 / 13], dtype=torch.float64),
                          atol=1e-15)
    assert torch.allclose(G @ cert.direction, torch.full((2,), -1 / 13, dtype=torch.float64),
                          atol=1e-15)


@st.composite
def embedded_counterexamples(draw):
    K = draw(st.integers(2, 5))
    D = draw(st.integers(2, 8))
    p = draw(partitions(D, min_buckets=2))
    b1, b2 = draw(st.lists(st.integers(0, len(p) - 1), min_size=2, max_size=2, unique=True))
    i = int(draw(st.sampled_from(p.indices(b1).tolist())))
    j = int(draw(st.sampled_from(p.indices(b2).tolist())))
    G = torch.zeros(K, D, dtype=torch.float64)
    G[0, i], G[0, j] = 1.0, 1.0
    G[1:, i], G[1:, j] = -1.0, -2.0
    return G * 10.0 ** draw(st.integers(-6, 6)), p


@settings(max_examples=25)
@given(embedded_counterexamples())
def test_rps_strictly_contains_ps_when_k_and_m_exceed_one(case):
    G, p = case
    assert_refined_stationary(G, p)
    assert_not_pareto_stationary(G)


@st.composite
def one_language_or_one_bucket(draw):
    if draw(st.booleans()):
        # K = 1: a single row, some of whose buckets may be exactly zero.
        G = draw(gradient_matrices(kind=NON_STATIONARY, K=1, D=st.integers(1, 8)))
        p = draw(partitions(G.shape[1]))
        zero = draw(st.lists(st.booleans(), min_size=len(p), max_size=len(p)))
        for idx, z in zip(p, zero, strict=True):
            if z:
                G[:, idx] = 0.0
        return G, p
    G = draw(gradient_matrices(K=st.integers(1, 5), D=st.integers(1, 8)))
    return G, Partition.single(G.shape[1])


@settings(max_examples=40)
@given(one_language_or_one_bucket())
def test_rps_equals_ps_with_one_language_or_one_bucket(case):
    G, p = case
    assert refined_pareto_stationarity(G, p).stationary == pareto_stationarity(G).stationary
    stationary_p = phi_p(G, p) <= REFEREE_TOL * row_scale(G)
    stationary = phi(G) <= REFEREE_TOL * row_scale(G)
    assert stationary_p == stationary


@st.composite
def quadratic_problems(draw):
    K = draw(st.integers(2, 4))
    D = draw(st.integers(2, 6))
    rng = np.random.default_rng(draw(st.integers(0, 2**32 - 1)))
    centres = rng.standard_normal((K, D)) * 10.0 ** draw(st.integers(-3, 3))
    return centres, draw(partitions(D, min_buckets=2))


def _gradients(theta, centres):
    return torch.from_numpy(theta[None, :] - centres)


@settings(max_examples=20)
@given(quadratic_problems(), st.data())
def test_rps_set_of_isotropic_quadratics_is_a_product_of_hulls(problem, data):
    centres, p = problem
    K, D = centres.shape
    rng = np.random.default_rng(data.draw(st.integers(0, 2**32 - 1)))
    # A point of the product of hulls: its own convex weights in every bucket.
    theta = np.empty(D)
    for idx in p:
        mu = rng.dirichlet(np.ones(K))
        theta[idx.numpy()] = mu @ centres[:, idx.numpy()]
    G = _gradients(theta, centres)
    assert_refined_stationary(G, p)
    # Item 1: φ is the distance to the hull, φ_P the distance to the product.
    scale = row_scale(G)
    blocks = [idx.numpy() for idx in p]
    to_hull = np.linalg.norm(theta - project_onto_hulls(theta, centres, [np.arange(D)]))
    assert abs(phi(G) - to_hull) <= 1e-6 * scale
    # Item 3 with item 2: a point of the product is PS exactly when it lies in the hull.
    if to_hull > 1e-4 * scale:
        assert_not_pareto_stationary(G)
    off = theta + rng.standard_normal(D) * scale
    to_product = np.linalg.norm(off - project_onto_hulls(off, centres, blocks))
    assert abs(phi_p(_gradients(off, centres), p) - to_product) <= 1e-6 * row_scale(
        _gradients(off, centres))


def _assert_is_projection(theta, x, centres, p, weights, scale):
    """x = proj of θ onto ∏_b conv{c_k^b}, certified exactly by the projection inequality."""
    for b, idx in enumerate(p):
        cols = idx.numpy()
        lam = weights[b]
        assert float(lam.min()) >= 0 and abs(float(lam.sum()) - 1) < 1e-12
        assert np.linalg.norm(x[cols] - lam @ centres[:, cols]) <= 1e-12 * scale  # x^b in the hull
        # ⟨θ^b − x^b, c_k^b − x^b⟩ ≤ 0 at every vertex: the obtuse-angle criterion.
        inner = (centres[:, cols] - x[cols]) @ (theta[cols] - x[cols])
        assert float(inner.max()) <= 1e-12 * scale**2


@settings(max_examples=20)
@given(quadratic_problems(), st.data())
def test_one_mgda_step_projects_onto_the_hulls(problem, data):
    centres, p = problem
    D = centres.shape[1]
    rng = np.random.default_rng(data.draw(st.integers(0, 2**32 - 1)))
    theta = rng.standard_normal(D) * float(np.abs(centres).max()) * 3
    G = _gradients(theta, centres)
    scale = row_scale(G)
    step = theta - bucketwise(MGDA(), G, p).numpy()
    weights = refined_pareto_stationarity(G, p).weights.numpy()
    _assert_is_projection(theta, step, centres, p, weights, scale)
    # The referee's projection agrees to its own accuracy (about sqrt of its tolerance).
    blocks = [idx.numpy() for idx in p]
    assert np.linalg.norm(step - project_onto_hulls(theta, centres, blocks)) <= 1e-5 * scale
    # The new point is RPS_P, so the next bucket-level step is (numerically) zero.
    G1 = _gradients(step, centres)
    assert_refined_stationary(G1, p)
    assert float(torch.linalg.vector_norm(bucketwise(MGDA(), G1, p))) <= 1e-12 * scale
    # Full-vector MGDA lands on the hull: a Pareto optimum, PS there.
    full = theta - MGDA()(G).numpy()
    single = Partition.single(D)
    _assert_is_projection(theta, full, centres, single,
                          pareto_stationarity(G).weights.numpy()[None, :], scale)
    assert_pareto_stationary(_gradients(full, centres))


def test_dominated_fixed_point():
    centres = np.array([[0.0, 0.0], [1.0, 1.0]])
    theta = np.array([1.0, 0.0])
    S = Partition.singletons(2)
    G = _gradients(theta, centres)
    assert torch.equal(G, torch.tensor([[1.0, 0.0], [0.0, -1.0]], dtype=torch.float64))
    assert_refined_stationary(G, S)
    assert_not_pareto_stationary(G)
    assert abs(phi(G) - 1 / math.sqrt(2)) < 1e-9

    def losses(x):
        return 0.5 * ((x[None, :] - centres) ** 2).sum(1)

    assert np.array_equal(losses(theta), [0.5, 0.5])
    assert np.array_equal(losses(np.array([0.5, 0.5])), [0.25, 0.25])
    # Bitwise by construction: each singleton bucket has a zero row, MGDA puts
    # weight exactly 1 on it, and the update is exactly 0 (no BLAS sum involved).
    for eta in (1e-3, 0.5, 1.0, 10.0):
        assert np.array_equal(theta - eta * bucketwise(MGDA(), G, S).numpy(), theta)
    assert np.allclose(theta - MGDA()(G).numpy(), [0.5, 0.5], atol=1e-15)


small_int_matrices = st.integers(2, 3).flatmap(lambda K: st.integers(2, 3).flatmap(
    lambda D: st.lists(st.lists(st.integers(-3, 3), min_size=D, max_size=D),
                       min_size=K, max_size=K)))


def _rps_but_not_ps(G, p):
    return refined_pareto_stationarity(G, p).stationary and not pareto_stationarity(G).stationary


@settings(max_examples=30)
@given(st.lists(st.integers(-3, 3).filter(bool), min_size=2, max_size=2),
       st.lists(st.integers(0, 1), min_size=2, max_size=2))
def test_independent_rows_with_a_zero_in_every_column_are_counterexamples(nonzero, zero_row):
    G = torch.zeros(2, 2, dtype=torch.float64)
    for col in range(2):
        G[1 - zero_row[col], col] = nonzero[col]
    if float(torch.linalg.det(G)) == 0.0:
        return  # both non-zeros in one row: a zero row, which is PS
    assert_refined_stationary(G, Partition.singletons(2))
    assert_not_pareto_stationary(G)


# The two searches below run with hypothesis's default budget (no max_examples):
# the claim is that the counterexamples are found, not that they are planted.
def test_search_finds_rps_not_ps_in_integer_matrices():
    found = find(small_int_matrices,
                 lambda rows: _rps_but_not_ps(torch.tensor(rows, dtype=torch.float64),
                                              Partition.singletons(len(rows[0]))),
                 settings=settings(database=None))
    G = torch.tensor(found, dtype=torch.float64)
    assert G.shape == (2, 2)  # shrinking reaches the smallest shape
    assert_refined_stationary(G, Partition.singletons(2))
    assert_not_pareto_stationary(G)


def test_search_finds_rps_not_ps_in_bucketed_matrices():
    space = bucketed_matrices(kinds=st.lists(st.sampled_from(CLASSES), min_size=2, max_size=4),
                              K=st.integers(2, 4), contiguous=None)
    G, p, _ = find(space, lambda case: _rps_but_not_ps(case[0], case[1]),
                   settings=settings(database=None))
    assert_refined_stationary(G, p)
    assert_not_pareto_stationary(G)
