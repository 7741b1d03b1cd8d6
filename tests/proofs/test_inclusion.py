"""proofs/inclusion.md: φ_P ≤ φ, PS ⇒ RPS_P, refinement monotonicity, singletons."""

import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from refmoo import Partition, pareto_stationarity, refined_pareto_stationarity, solve_min_norm
from refmoo.testing import (
    NON_STATIONARY,
    STRONG,
    WEAK,
    assert_refined_stationary,
    bucketed_matrices,
    degenerate_matrices,
    gradient_matrices,
    partition_pairs,
    partitions,
    refinements,
)

from ._referee import REFEREE_TOL, bucket_phis, phi, phi_p, row_scale

scales = {"min_exp": -8, "max_exp": 8}
any_matrix = st.one_of(gradient_matrices(K=st.integers(1, 5), D=st.integers(1, 8), **scales),
                       degenerate_matrices(D=None, min_exp=-8, max_exp=8))
stationary_kinds = st.lists(st.sampled_from([STRONG, WEAK]), min_size=1, max_size=4)


@st.composite
def matrix_and_partition(draw, matrices=any_matrix):
    G = draw(matrices)
    return G, draw(partitions(G.shape[1]))


@settings(max_examples=30)
@given(bucketed_matrices(contiguous=None, **scales))
def test_measures_vanish_exactly_on_the_stationary_classes(case):
    G, p, kinds = case
    phis = bucket_phis(G, p)
    for b, (kind, value) in enumerate(zip(kinds, phis, strict=True)):
        block_scale = row_scale(G[:, p.indices(b)])
        if kind == NON_STATIONARY:
            # The construction keeps a margin ≥ 0.1·10^e, far above the referee's noise.
            assert value > 1e-4 * block_scale, (b, kinds, phis)
        else:
            assert value <= REFEREE_TOL * block_scale, (b, kinds, phis)
    all_stationary = all(k != NON_STATIONARY for k in kinds)
    assert refined_pareto_stationarity(G, p).stationary == all_stationary
    assert (phi_p(G, p) <= REFEREE_TOL * row_scale(G)) == all_stationary


@settings(max_examples=40)
@given(matrix_and_partition())
def test_phi_p_le_phi(case):
    G, p = case
    tol = REFEREE_TOL * row_scale(G)
    assert phi_p(G, p) <= phi(G) + tol
    ours_p = float(refined_pareto_stationarity(G, p).measure)
    ours = float(pareto_stationarity(G).residual)
    assert ours_p <= ours * (1 + 1e-12) + 1e-13 * row_scale(G)


@settings(max_examples=40)
@given(matrix_and_partition())
def test_excess_decomposition(case):
    G, p = case
    lam = solve_min_norm(G @ G.T).weights
    phi_sq = float((G.T @ lam).square().sum())
    bucket_sq = [float((G[:, idx].T @ lam).square().sum()) for idx in p]
    referee = bucket_phis(G, p)
    scale = row_scale(G)
    # Each term ‖G^bᵀλ*‖² − φ(G^b)² is a sub-optimality, so it is non-negative ...
    for value, best in zip(bucket_sq, referee, strict=True):
        assert value ** 0.5 >= best - REFEREE_TOL * scale
    # ... and the terms add up to φ² − φ_P² (the coordinates split over the buckets).
    phi_p_sq = sum(b * b for b in referee)
    excess = sum(v - b * b for v, b in zip(bucket_sq, referee, strict=True))
    assert abs((phi_sq - phi_p_sq) - excess) <= 1e-12 * scale**2 * (1 + len(p))


@settings(max_examples=30)
@given(gradient_matrices(kind=st.sampled_from([STRONG, WEAK]), K=st.integers(1, 5),
                         D=st.integers(1, 8), **scales).flatmap(
    lambda G: st.tuples(st.just(G), partitions(G.shape[1]))))
def test_ps_implies_rps(case):
    G, p = case
    assert_refined_stationary(G, p)
    # The full-vector weights already cancel every bucket.
    lam = pareto_stationarity(G).weights
    for idx in p:
        block = G[:, idx]
        assert float(torch.linalg.vector_norm(block.T @ lam)) <= 1e-9 * row_scale(G)


@settings(max_examples=30)
@given(gradient_matrices(K=st.integers(1, 5), D=st.integers(1, 4), **scales),
       st.lists(st.floats(0.1, 10.0), min_size=1, max_size=4))
def test_common_minimiser_gives_equality(H, factors):
    G = torch.cat([s * H for s in factors], dim=1)
    p = Partition.from_sizes([H.shape[1]] * len(factors))
    assert abs(phi_p(G, p) - phi(G)) <= REFEREE_TOL * row_scale(G)


@settings(max_examples=30)
@given(any_matrix.flatmap(lambda G: st.tuples(st.just(G), partition_pairs(G.shape[1]))))
def test_refinement_is_monotone(case):
    G, (coarse, fine) = case
    assert fine.refines(coarse)
    D = G.shape[1]
    chain = [phi_p(G, Partition.singletons(D)), phi_p(G, fine), phi_p(G, coarse), phi(G)]
    tol = REFEREE_TOL * row_scale(G)
    for finer, coarser in zip(chain, chain[1:], strict=False):
        assert finer <= coarser + tol, chain


@settings(max_examples=25)
@given(bucketed_matrices(kinds=stationary_kinds, contiguous=None, **scales).flatmap(
    lambda case: st.tuples(st.just(case), refinements(case[1], strict=True))))
def test_rps_passes_to_refinements(pair):
    (G, coarse, _), fine = pair
    assert fine.refines(coarse)
    if max(coarse.sizes) > 1:  # strict=True splits some bucket when one can be split
        assert len(fine) > len(coarse)
    assert_refined_stationary(G, coarse)
    assert_refined_stationary(G, fine)


@settings(max_examples=30)
@given(any_matrix)
def test_singleton_measure_formula(G):
    lo, hi = G.min(0).values, G.max(0).values
    formula = torch.clamp(torch.maximum(lo, -hi), min=0.0)
    cert = refined_pareto_stationarity(G, Partition.singletons(G.shape[1]))
    tol = REFEREE_TOL * row_scale(G)
    assert torch.allclose(cert.bucket_residuals, formula, rtol=1e-12, atol=1e-14 * row_scale(G))
    referee = bucket_phis(G, Partition.singletons(G.shape[1]))
    assert max(abs(a - b) for a, b in zip(referee, formula.tolist(), strict=True)) <= tol
    mixed_signs = bool(((lo <= 0) & (hi >= 0)).all())
    assert cert.stationary == mixed_signs
