"""Nash-MTL: the bargaining system, its certificate, cvxpy, TorchJD, degenerate buckets."""

import pytest
import torch

from refmoo import NashMTL, Partition, bucketwise

from ._helpers import cases, cvxpy_nash_objective, nash_objective, normalised

# Non-stationary matrices, including rank-deficient ones (K > D with a common ascent direction).
SOLVABLE = cases(seed=6, count=24, K=(2, 7), D=(1, 9), exponents=(-12, 12),
                 kinds=("non-stationary",))


def test_orthogonal_rows_closed_form():
    G = torch.tensor([[2.0, 0.0, 0.0], [0.0, 0.5, 0.0], [0.0, 0.0, 4.0]], dtype=torch.float64)
    sol = NashMTL().solve((G @ G.T)[None])
    torch.testing.assert_close(sol.alpha[0], 1.0 / G.norm(dim=1))  # α_k‖g_k‖² = 1/α_k
    torch.testing.assert_close(NashMTL()(G), torch.ones(3, dtype=torch.float64))


@pytest.mark.parametrize("label,G", SOLVABLE)
def test_bargaining_system_holds_and_is_certified(label, G):
    sol = NashMTL().solve((G @ G.T)[None])
    assert not bool(sol.stationary[0])
    assert float(sol.decrement[0]) <= 1e-12
    assert float(sol.residual[0]) <= 1e-8
    d = NashMTL()(G)
    # ⟨g_k, d⟩ = 1/α_k, measured on G rather than on the Gram, and ‖d‖² = αᵀQα = K.
    torch.testing.assert_close(G @ d * sol.alpha[0], torch.ones(G.shape[0], dtype=torch.float64),
                               rtol=1e-8, atol=1e-8)
    assert abs(float(d @ d) - G.shape[0]) <= 1e-8 * G.shape[0]


@pytest.mark.parametrize("G", [
    torch.tensor([[1.0, 0.0], [-1e-7, 1e-7]], dtype=torch.float64),
    torch.tensor([[1.0, 0.0, 0.3], [-1e-12, 1e-12, 0.0], [0.0, -1e-20, 1e-20]],
                 dtype=torch.float64),
], ids=["1e-7 apart", "1e-20 apart"])
def test_rows_far_apart_are_not_taken_for_stationary(G):
    """Stationarity is judged at the scale of the rows the min-norm point combines:
    judged against the largest row, a row 1e-7 below it made the bucket pass for
    stationary, and the ridge's answer conflicted with it (cosine −0.7)."""
    sol = NashMTL().solve((G @ G.T)[None])
    assert not bool(sol.stationary[0])
    for d in (NashMTL()(G), bucketwise(NashMTL(), G, Partition.single(G.shape[1]))):
        assert bool((G @ d > 0).all())
        torch.testing.assert_close(G @ d * sol.alpha[0], torch.ones(G.shape[0],
                                   dtype=torch.float64), rtol=1e-8, atol=0)


@pytest.mark.parametrize("label,G", SOLVABLE[:10])
def test_potential_matches_cvxpy(label, G):
    A = normalised(G)
    alpha = NashMTL().solve(torch.tensor(A @ A.T)[None]).alpha[0].numpy()
    ours, reference = nash_objective(A @ A.T, alpha), cvxpy_nash_objective(A)
    assert ours <= reference + 1e-7 * max(1.0, abs(reference))


def test_scale_invariant_direction():
    G = torch.randn(4, 6, dtype=torch.float64, generator=torch.Generator().manual_seed(0))
    for c in (1e-12, 1e-3, 1e5, 1e12):
        torch.testing.assert_close(NashMTL()(c * G), NashMTL()(G), rtol=1e-9, atol=1e-9)


def test_zero_row_gets_a_finite_weight_and_leaves_the_others_alone():
    G = torch.randn(3, 5, dtype=torch.float64, generator=torch.Generator().manual_seed(1))
    G = G + torch.tensor([0.0, 0.0, 0.0, 0.0, 3.0], dtype=torch.float64)  # no conflict
    with_zero = torch.cat([G, torch.zeros(1, 5, dtype=torch.float64)])
    sol = NashMTL().solve((with_zero @ with_zero.T)[None])
    assert bool(sol.stationary[0]) and bool(torch.isfinite(sol.alpha).all())
    torch.testing.assert_close(NashMTL()(with_zero), NashMTL()(G), rtol=1e-4, atol=1e-4)


@pytest.mark.parametrize("c", [1.0, 0.25, 7.0])
def test_exact_conflict_cancels_along_the_conflict(c):
    g = torch.tensor([1.0, -2.0, 0.5], dtype=torch.float64)
    h = torch.tensor([0.0, 1.0, 4.0], dtype=torch.float64)
    h = h - (h @ g) / (g @ g) * g  # orthogonal to g
    G = torch.stack([g, -c * g, h])
    d = NashMTL()(G)
    assert bool(torch.isfinite(d).all())
    assert abs(float(d @ g)) <= 1e-4 * float(g.norm()) * float(d.norm())
    torch.testing.assert_close(d, h / h.norm(), rtol=1e-4, atol=1e-4)  # Nash of h alone


def test_all_zero_gradients_give_zero():
    assert torch.equal(NashMTL()(torch.zeros(3, 4, dtype=torch.float64)),
                       torch.zeros(4, dtype=torch.float64))


def test_max_norm_clips_the_direction():
    G = torch.randn(4, 6, dtype=torch.float64, generator=torch.Generator().manual_seed(2))
    G = G + torch.tensor([0, 0, 0, 0, 0, 4.0], dtype=torch.float64)
    d = NashMTL(max_norm=1.0)(G)  # the exact solution has ‖d‖ = √4 = 2
    torch.testing.assert_close(d, NashMTL()(G) / 2)


@pytest.mark.filterwarnings("ignore:You are solving a parameterized problem")
@pytest.mark.parametrize("K,D", [(2, 5), (3, 7), (5, 10)])
def test_matches_torchjd(K, D):
    pytest.importorskip("ecos")
    from torchjd.aggregation import NashMTL as TorchJDNashMTL

    G = torch.randn(K, D, dtype=torch.float64, generator=torch.Generator().manual_seed(K + D))
    expected = TorchJDNashMTL(n_tasks=K, max_norm=0.0, optim_niter=100)(G)
    torch.testing.assert_close(NashMTL()(G), expected, rtol=1e-6, atol=1e-6)


def test_batched_equals_unbatched():
    G = torch.randn(6, 4, 7, dtype=torch.float64, generator=torch.Generator().manual_seed(3))
    Q = G @ G.transpose(1, 2)
    batched = NashMTL().weights_from_gram(Q)
    for b in range(6):
        torch.testing.assert_close(batched[b], NashMTL().weights_from_gram(Q[b]), rtol=1e-12,
                                   atol=1e-12)


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
def test_dtype_is_preserved(dtype):
    G = torch.tensor([[1.0, 0.0], [-1.0, 1.0], [0.3, 2.0]], dtype=dtype)
    assert NashMTL()(G).dtype == dtype


def test_invalid_parameters_are_rejected():
    with pytest.raises(ValueError):
        NashMTL(ridge=0.0)
    with pytest.raises(ValueError):
        NashMTL(max_norm=-1.0)



def test_float32_singleton_buckets_near_stationarity_get_a_finite_update():
    """One column per bucket: a bucket whose entries differ in sign is Pareto stationary,
    but its float32 Gram is indefinite by rounding (1e-8 of the diagonal, above the
    1e-10 ridge) and its min-norm value is rounding (1e-10, above the 1e-12 tolerance).
    Newton's iterates then turned NaN and LAPACK's lstsq failed an internal assert.
    Stationarity is judged above K·eps of Q's dtype and such Grams are shifted to a
    positive definite ridge; buckets whose entries share a sign are unaffected."""
    torch.manual_seed(1)
    G = torch.randn(4, 100)
    update = bucketwise(NashMTL(), G, Partition.singletons(100))
    assert bool(torch.isfinite(update).all())
    one_sign = (G > 0).all(0) | (G < 0).all(0)
    alone = torch.cat([NashMTL()(G[:, j:j + 1]) for j in range(100)])
    torch.testing.assert_close(update[one_sign], alone[one_sign], rtol=1e-5, atol=0)
