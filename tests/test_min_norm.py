"""The batched min-norm solver against cvxpy, KKT, and TorchJD."""

import contextlib

import numpy as np
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from refmoo import solve_min_norm
from refmoo.min_norm import min_norm_gap
from refmoo.referee import cvxpy_min_norm
from refmoo.testing import degenerate_matrices, gradient_matrices

# Large batches (at least 16·K³ problems, K ≤ 8) take their support guesses in the
# compiled kernel where it is built (refmoo.compiled), else in the eager chunks of
# min_norm._first_rounds: tests of that path run on both.
LARGE_BATCH_PATHS = ["compiled", "eager"]


@contextlib.contextmanager
def large_batch_path(path: str):
    from unittest import mock

    from refmoo import compiled

    if path == "eager":
        with mock.patch.object(compiled, "available", return_value=False):
            yield
        return
    if not compiled.available():
        pytest.skip("refmoo's compiled kernels are not built here")
    yield

any_matrix = st.one_of(
    gradient_matrices(K=st.integers(1, 8), D=st.integers(1, 12), min_exp=-12, max_exp=12),
    degenerate_matrices(min_exp=-12, max_exp=12),
)


def _scale(G):
    return float((G * G).sum(1).max())


@settings(max_examples=60)
@given(any_matrix)
def test_objective_matches_cvxpy(G):
    sol = solve_min_norm(G @ G.T)
    _, referee = cvxpy_min_norm(G)
    ours = float(sol.value)
    # Relative agreement to 1e-6, with a floor at the referee's own accuracy
    # (its tolerances are 1e-12 on the normalised problem).
    assert abs(ours - referee) <= 1e-6 * referee + 1e-11 * _scale(G)


@settings(max_examples=80)
@given(any_matrix)
def test_kkt_conditions_hold(G):
    Q = G @ G.T
    lam = solve_min_norm(Q).weights
    assert bool((lam >= 0).all())
    assert abs(float(lam.sum()) - 1.0) < 1e-12
    v = Q @ lam
    f = float(lam @ v)
    tol = 1e-12 * _scale(G)
    # Stationarity with multiplier f: (Qλ)_j ≥ f for all j, equality on the support.
    assert float(v.min()) >= f - tol
    support = lam > 1e-9
    assert float((v[support] - f).abs().max()) <= tol


@settings(max_examples=40)
@given(any_matrix)
def test_certificate_brackets_the_referee(G):
    sol = solve_min_norm(G @ G.T)
    _, referee = cvxpy_min_norm(G)
    slack = 1e-10 * _scale(G)
    assert float(sol.lower_bound) <= referee + slack
    assert referee <= float(sol.value) + slack
    assert float(sol.value) - float(sol.lower_bound) <= 2 * float(sol.gap) + 1e-15 * _scale(G)


@settings(max_examples=20)
@given(st.lists(gradient_matrices(K=4, D=st.integers(1, 6)), min_size=1, max_size=6))
def test_batched_equals_one_at_a_time(mats):
    Q = torch.stack([G @ G.T for G in mats])
    batched = solve_min_norm(Q).weights
    for b, G in enumerate(mats):
        single = solve_min_norm(G @ G.T).weights
        torch.testing.assert_close(batched[b], single, rtol=0, atol=1e-12)


def test_batch_shape_and_dtype_are_preserved():
    G = torch.randn(3, 2, 4, 6, dtype=torch.float64)
    Q = G @ G.transpose(-1, -2)
    sol = solve_min_norm(Q)
    assert sol.weights.shape == (3, 2, 4) and sol.weights.dtype == torch.float64
    assert sol.value.shape == (3, 2)
    assert solve_min_norm(Q.float()).weights.dtype == torch.float32


def test_single_objective_has_unit_weight():
    Q = torch.tensor([[[2.0]]], dtype=torch.float64)
    assert solve_min_norm(Q).weights.tolist() == [[1.0]]


def test_exact_conflict_reaches_zero():
    g = torch.tensor([1.0, -2.0, 3.0], dtype=torch.float64)
    G = torch.stack([g, -3.0 * g])
    sol = solve_min_norm(G @ G.T)
    torch.testing.assert_close(sol.weights, torch.tensor([0.75, 0.25], dtype=torch.float64))
    assert float(sol.value) < 1e-24


@settings(max_examples=40)
@given(gradient_matrices(K=st.integers(2, 8), D=st.integers(2, 12)))
def test_never_worse_than_torchjd_frank_wolfe(G):
    from torchjd.aggregation import MGDA as TorchJDMGDA

    Q = G @ G.T
    ours = solve_min_norm(Q)
    theirs = TorchJDMGDA(epsilon=1e-9, max_iters=10_000)(G)
    # TorchJD stops Frank-Wolfe on a step-size threshold, so it can only be
    # as good as the exact optimum, never better.
    assert float(ours.value) <= float(theirs @ theirs) + 1e-12 * _scale(G)


def test_gap_of_foreign_weights_detects_suboptimality():
    G = torch.tensor([[1.0, 0.0], [0.0, 1.0]], dtype=torch.float64)
    Q = G @ G.T
    assert float(min_norm_gap(Q, torch.tensor([0.5, 0.5], dtype=torch.float64))) == 0.0
    assert float(min_norm_gap(Q, torch.tensor([0.9, 0.1], dtype=torch.float64))) == pytest.approx(
        0.82 - 0.1)


def test_rank_deficient_batch_matches_cvxpy():
    rng = np.random.default_rng(0)
    mats = [torch.tensor(rng.standard_normal((8, 2)) @ rng.standard_normal((2, 5)))
            for _ in range(20)]
    Q = torch.stack([G @ G.T for G in mats])
    values = solve_min_norm(Q).value
    for G, ours in zip(mats, values, strict=True):
        _, referee = cvxpy_min_norm(G)
        assert abs(float(ours) - referee) <= 1e-6 * referee + 1e-11 * _scale(G)


@settings(max_examples=30)
@given(st.lists(st.one_of(gradient_matrices(K=5, D=st.integers(1, 8)),
                          degenerate_matrices(K=5)), min_size=1, max_size=8))
def test_update_and_refactorisation_paths_agree(mats):
    from refmoo.min_norm import _InverseCorral, _SolvedCorral, _wolfe

    Q = torch.stack([G @ G.T for G in mats])
    scale = torch.diagonal(Q, dim1=-2, dim2=-1).amax(-1).clamp_min(1e-300)
    Qn = Q / scale[:, None, None]
    tol = 1e-13
    fast, unstable, _ = _wolfe(Qn, _InverseCorral, tol, 60)
    robust, _, _ = _wolfe(Qn, _SolvedCorral, tol, 60)
    value = lambda lam: (lam * (Qn @ lam.unsqueeze(-1)).squeeze(-1)).sum(-1)  # noqa: E731
    ok = ~unstable
    torch.testing.assert_close(value(fast)[ok], value(robust)[ok], rtol=0, atol=1e-12)


@pytest.mark.parametrize("unrolled", [False, True], ids=["lapack", "unrolled"])
@settings(max_examples=30)
@given(mats=st.lists(st.one_of(gradient_matrices(K=4, D=st.integers(1, 12)),
                               degenerate_matrices(K=4)), min_size=1, max_size=8))
def test_support_guesses_agree_with_wolfe(mats, unrolled):
    from unittest import mock

    import refmoo.min_norm as mn

    Qn, _ = mn._normalised(torch.stack([G @ G.T for G in mats]))
    tol = 1e-13
    # The unrolled factorisation normally starts at 16·K³ problems; forced here, so
    # small hypothesis batches run its first round, certificate and hand-over too.
    with mock.patch.object(mn, "_UNROLLED_MIN_BATCH", 0 if unrolled else 10**9):
        guessed, solved = mn._active_set_solutions(Qn, tol, rounds=4)
    wolfe, _, _ = mn._wolfe(Qn, mn._InverseCorral, tol, 60)
    value = lambda lam: (lam * (Qn @ lam.unsqueeze(-1)).squeeze(-1)).sum(-1)  # noqa: E731
    # Two certified KKT points of one convex problem: equal values, to the
    # certificate's own tolerance (gaps of 1e-13 relative to the unit diagonal).
    torch.testing.assert_close(value(guessed)[solved], value(wolfe)[solved], rtol=0, atol=1e-12)
    assert mn._certified(Qn[solved], guessed[solved], tol).all()


_TOP = torch.finfo(torch.float64).max


@pytest.mark.parametrize("Q,message", [
    ([[1.0, 2.0], [2.0, 1.0]], "not positive semi-definite"),  # "solved" to the maximum before
    ([[-1.0, 0.0], [0.0, -2.0]], "squared norm cannot be negative"),
    ([[1.0, 5.0], [-5.0, 1.0]], "not symmetric"),  # was silently symmetrised
    ([[0.0, 1e-3], [1e-3, 1.0]], "not positive semi-definite"),  # zero row, non-zero entry
    # Near float64's largest number the test's diagonal shift overflowed to an infinite
    # pivot, which Cholesky took for a positive one.
    ([[_TOP, _TOP / 2], [_TOP / 2, _TOP / 16]], "not positive semi-definite"),
])
def test_matrices_that_are_not_gram_matrices_are_refused(Q, message):
    from refmoo._checks import GradientError

    with pytest.raises(GradientError, match=message):
        solve_min_norm(torch.tensor(Q, dtype=torch.float64))


def test_rounding_asymmetry_and_indefiniteness_are_accepted():
    # What BLAS does to a genuine Gram: a last-bit asymmetry, and a rank-deficient
    # matrix whose smallest eigenvalue comes out slightly negative.
    G = torch.tensor([[1.0, 2.0, 3.0], [2.0, 4.0, 6.0], [0.1, 0.3, -0.2]], dtype=torch.float64)
    Q = G @ G.T
    Q[0, 1] = torch.nextafter(Q[0, 1], torch.tensor(float("inf"), dtype=torch.float64))
    Q[1, 1] -= 8 * torch.finfo(torch.float64).eps * Q[1, 1]
    assert float(torch.linalg.eigvalsh(0.5 * (Q + Q.T))[0]) < 0
    solve_min_norm(Q)


@pytest.mark.parametrize("path", LARGE_BATCH_PATHS)
@pytest.mark.parametrize("dtype", [torch.float64, torch.float32])
@pytest.mark.parametrize("K", [3, 4])
@pytest.mark.parametrize("shift", [-1e-2, -1e-6, -1e-9, 1e-12])
def test_large_batches_refuse_exactly_what_check_psd_refuses(K, shift, dtype, path):
    """Large batches run the LAPACK definiteness test only on problems whose full-support
    factorisation failed (_first_rounds); the verdict must be check_psd's, naming the
    same matrix. Matrix 2700 (third chunk at 2¹⁰ problems per chunk) has its unit-diagonal
    form shifted to the smallest eigenvalue ``shift``·K: below or above −Kδ = −K√ε of
    Q's dtype."""
    from unittest import mock

    import refmoo.min_norm as mn
    from refmoo._checks import GradientError, check_psd

    gen = torch.Generator().manual_seed(K)
    G = torch.randn(3000, K, 12, dtype=torch.float64, generator=gen)
    Q = G @ G.transpose(1, 2)
    A = torch.randn(K, K, dtype=torch.float64, generator=gen)
    C = A @ A.T
    n = torch.diagonal(C).sqrt()
    C = C / n[:, None] / n[None, :]
    C -= (float(torch.linalg.eigvalsh(C)[0]) - shift * K) * torch.eye(K, dtype=torch.float64)
    Q[2700] = C * 3.0  # a scale: the test must mean the same at any
    Q = Q.to(dtype)
    try:
        check_psd(Q)
        expected = None
    except GradientError as error:
        expected = str(error)
    assert (expected is None) == (shift * K > -K * torch.finfo(dtype).eps ** 0.5)
    with large_batch_path(path), mock.patch.object(mn, "_FIRST_ROUND_ENTRIES", K * K * 1024):
        if expected is None:
            solve_min_norm(Q)
        else:
            with pytest.raises(GradientError) as raised:
                solve_min_norm(Q)
            assert str(raised.value) == expected and "matrix 2700" in expected


@pytest.mark.parametrize("path", LARGE_BATCH_PATHS)
def test_an_empty_batch_solves_on_every_path(path):
    from unittest import mock

    import refmoo.min_norm as mn

    for threshold in (0, 16):
        with large_batch_path(path), mock.patch.object(mn, "_UNROLLED_MIN_BATCH", threshold):
            sol = solve_min_norm(torch.zeros(0, 3, 3, dtype=torch.float64))
        assert sol.weights.shape == (0, 3) and sol.value.shape == (0,)


@pytest.mark.parametrize("tol", [float("nan"), -1e-12])
def test_nan_or_negative_tol_is_an_error(tol):
    with pytest.raises(ValueError, match="tol must be a non-negative number"):
        solve_min_norm(torch.eye(2, dtype=torch.float64), tol=tol)


@pytest.mark.parametrize("k", [-500, -250, -1, 1, 250, 500])
def test_weights_are_bitwise_invariant_under_powers_of_four(k):
    # Q is divided by a power of two before the solve, so 4^k·Q (exact, no digit
    # changes while the entries stay normal) runs the same operations on the same digits.
    G = torch.randn(5, 9, dtype=torch.float64, generator=torch.Generator().manual_seed(5))
    Q = G @ G.T
    a, b = solve_min_norm(Q), solve_min_norm(Q * 4.0**k)
    assert torch.equal(a.weights, b.weights)
    assert torch.equal(a.value * 4.0**k, b.value)


def test_per_row_test_serves_rows_far_below_the_largest():
    # The reproducer on the Gram: rows 1e-8 and 1e-7 times the others.
    # Stopping relative to the largest row returned weights whose update
    # conflicted with the small rows; the per-row test must not.
    G = torch.randn(6, 20, dtype=torch.float64, generator=torch.Generator().manual_seed(0))
    G[0] *= 1e-8
    G[1] *= 1e-7
    Q = G @ G.T
    sol = solve_min_norm(Q)
    v = Q @ sol.weights
    f = sol.value
    norms = torch.diagonal(Q).sqrt()
    # (Qλ)_j ≥ f − tol·‖g_j‖·√f − rounding: as a cosine, at least −1e-9 (see module doc).
    assert bool(((v - f) / (norms * f.sqrt()) >= -1e-9).all()), ((v - f) / (norms * f.sqrt()))


@settings(max_examples=40)
@given(st.lists(st.one_of(gradient_matrices(K=5, D=st.integers(1, 10)),
                          degenerate_matrices(K=5)), min_size=1, max_size=8),
       st.integers(0, 2**31 - 1))
def test_unrolled_cholesky_agrees_with_lu_on_every_support(mats, seed):
    """The element-wise factorisation used for K ≤ 8 finds the affine minimiser of the
    LU solve it replaces, wherever the support's system is well conditioned."""
    from refmoo.min_norm import _entries, _Equilibrated, _normalised, _UnrolledCholesky

    Qn, _ = _normalised(torch.stack([G @ G.T for G in mats]))
    gen = torch.Generator().manual_seed(seed)
    S = torch.rand(Qn.shape[0], 5, generator=gen) < 0.6
    S[torch.arange(S.shape[0]), torch.randint(0, 5, (S.shape[0],), generator=gen)] = True
    fast, info = _UnrolledCholesky(_entries(Qn)).solve(S)
    lu, lu_info = _Equilibrated(Qn).solve(S)
    # Rows outside the support get weight 0 exactly (where the support was solvable;
    # elsewhere the weights are documented as meaningless).
    assert not fast[~S & (info == 0).unsqueeze(-1)].any()
    # Compare where the equilibrated C_SS is well conditioned (cond ≤ 1e6): there
    # both solves are accurate to about cond·eps of the weights.
    sd = torch.diagonal(Qn, dim1=-2, dim2=-1).sqrt()
    r = torch.where(sd > 0, 1 / sd.clamp_min(1e-300), 1.0)
    C = Qn * r.unsqueeze(-1) * r.unsqueeze(-2)
    Cs = torch.where(S.unsqueeze(-1) & S.unsqueeze(-2), C, torch.eye(5, dtype=C.dtype))
    cond = torch.linalg.cond(Cs)
    good = (cond <= 1e6) & (lu_info == 0)
    assert (info[good] == 0).all()
    torch.testing.assert_close(fast[good], lu[good], rtol=0, atol=1e6 * 64 * 2.3e-16)


@settings(max_examples=20)
@given(st.lists(gradient_matrices(K=4, D=st.integers(1, 8)), min_size=2, max_size=6))
def test_unrolled_cholesky_is_independent_of_the_batch(mats):
    """Bitwise by construction: only correctly rounded element-wise operations, applied
    to each problem's own entries (see _UnrolledCholesky)."""
    from refmoo.min_norm import _entries, _normalised, _UnrolledCholesky

    Qn, _ = _normalised(torch.stack([G @ G.T for G in mats]))
    S = torch.ones(Qn.shape[0], 4, dtype=torch.bool)
    S[0, 1] = False
    batched, info = _UnrolledCholesky(_entries(Qn)).solve(S)
    for b in range(Qn.shape[0]):
        alone, alone_info = _UnrolledCholesky(_entries(Qn[b:b + 1])).solve(S[b:b + 1])
        assert alone_info[0] == info[b]
        # Bit for bit, NaN included (a singular support's weights are left as they come).
        torch.testing.assert_close(alone[0], batched[b], rtol=0, atol=0, equal_nan=True)


def test_unrolled_cholesky_reports_singular_supports():
    """A zero row or two parallel rows in the support make C_SS singular: reported,
    never returned as weights."""
    from refmoo.min_norm import _entries, _normalised, _UnrolledCholesky

    G = torch.tensor([[[1.0, 0.0], [0.0, 0.0], [0.0, 1.0]],      # zero row
                      [[1.0, 2.0], [2.0, 4.0], [0.0, 1.0]]],     # parallel rows
                     dtype=torch.float64)
    Qn, _ = _normalised(G @ G.transpose(1, 2))
    first_two = torch.tensor([[True, True, False]] * 2)
    first_and_last = torch.tensor([[True, False, True]] * 2)
    _, info = _UnrolledCholesky(_entries(Qn)).solve(first_two)
    assert (info != 0).all()
    lam, info = _UnrolledCholesky(_entries(Qn)).solve(first_and_last)
    assert (info == 0).all() and torch.allclose(lam.sum(-1), torch.ones(2, dtype=torch.float64))


def test_unrolled_factorisation_starts_at_16_k_cubed_problems_for_k_up_to_8():
    # The comment above _UNROLLED_MAX_K (and benchmarks/RESULTS.md): "at least 16·K³
    # problems, K ≤ 8".
    import refmoo.min_norm as mn

    for K in range(1, 9):
        assert not mn._unrolled_pays(16 * K**3 - 1, K)
        assert mn._unrolled_pays(16 * K**3, K)
    assert not mn._unrolled_pays(10**9, 9)
    # benchmarks/RESULTS.md: first-round chunks of 2¹⁷ entries, "8192 problems of K = 4"
    # (2048 of K = 8, the min_norm.py comment).
    assert mn._chunk_size(4) == 8192 and mn._chunk_size(8) == 2048


@pytest.mark.parametrize("path", LARGE_BATCH_PATHS)
@settings(max_examples=15)
@given(st.lists(st.one_of(gradient_matrices(K=4, D=st.integers(1, 12), min_exp=-12, max_exp=12),
                          degenerate_matrices(K=4)), min_size=2, max_size=12),
       st.integers(1, 5))
def test_first_round_chunks_change_no_bit(path, mats, chunk):
    """Large batches take their support guesses in chunks (_first_rounds). Every
    problem's guesses read only its own entries and, with the unrolled path forced
    for every size, run the same operations wherever they run (a problem left by its
    chunk carries its next guess and budget), so the chunk size changes no bit of the
    solution; the certificate it reports is the one computed from Q directly, to
    rounding."""
    from unittest import mock

    import refmoo.min_norm as mn

    Q = torch.stack([G @ G.T for G in mats])
    with large_batch_path(path), mock.patch.object(mn, "_UNROLLED_MIN_BATCH", 0):
        whole = solve_min_norm(Q)
        with mock.patch.object(mn, "_FIRST_ROUND_ENTRIES", 16 * chunk):  # K = 4
            chunked = solve_min_norm(Q)
    for name in ("weights", "value", "gap", "lower_bound"):
        assert torch.equal(getattr(whole, name), getattr(chunked, name)), name
    scale = torch.diagonal(Q, dim1=-2, dim2=-1).amax(-1)
    value = (whole.weights * (Q @ whole.weights.unsqueeze(-1)).squeeze(-1)).sum(-1)
    rounding = 8 * 4 * torch.finfo(torch.float64).eps * scale
    assert bool(((whole.value - value).abs() <= rounding).all())
    assert bool(((whole.gap - min_norm_gap(Q, whole.weights)).abs() <= rounding).all())


@pytest.mark.parametrize("path", LARGE_BATCH_PATHS)
def test_chunks_change_no_bit_where_normalised_entries_are_subnormal(path):
    """A matrix 1e-320 in scale needs the two-factor power of two (|e| > 1000) while its
    batch neighbour needs one; the factors are chosen per matrix, so the neighbour's
    subnormal entries (rows 1e-153 of its largest) round the same alone or together."""
    from unittest import mock

    import refmoo.min_norm as mn

    t = 1e-153
    A = torch.tensor([[5.0, 0, 0], [-0.3 * t, 0.7 * t, 0], [-0.5 * t, 0, 0.9 * t]],
                     dtype=torch.float64)
    B = 1e-160 * torch.tensor([[1.0, 2, 0], [0, 1, 3], [2, 0, 1]], dtype=torch.float64)
    Q = torch.stack([A @ A.T, B @ B.T])
    with large_batch_path(path), mock.patch.object(mn, "_UNROLLED_MIN_BATCH", 0):
        together = solve_min_norm(Q)
        with mock.patch.object(mn, "_FIRST_ROUND_ENTRIES", 9):  # one matrix per chunk
            apart = solve_min_norm(Q)
    for name in ("weights", "value", "gap", "lower_bound"):
        assert torch.equal(getattr(together, name), getattr(apart, name)), name


@pytest.mark.parametrize("path", LARGE_BATCH_PATHS)
def test_rows_below_the_gram_range_still_get_finite_optimal_weights(path):
    """Rows 1e-158 of the largest make Gram entries subnormal. The large-batch guesses
    cannot certify such a matrix and Wolfe's rank-one updates broke down into NaN,
    which a NaN comparison then kept; the fresh factorisations' answer must win."""
    from unittest import mock

    import refmoo.min_norm as mn

    t = 1e-158
    G = torch.tensor([[5.0, 0, 0], [-0.3 * t, 0.7 * t, 0], [-0.5 * t, 0, 0.9 * t]],
                     dtype=torch.float64)
    Q = G @ G.T
    alone = solve_min_norm(Q).weights
    with large_batch_path(path), mock.patch.object(mn, "_UNROLLED_MIN_BATCH", 0):
        batched = solve_min_norm(Q.expand(3, 3, 3).contiguous()).weights
    assert bool(torch.isfinite(batched).all())
    torch.testing.assert_close(batched, alone.expand(3, 3), rtol=0, atol=1e-12)


@pytest.mark.parametrize("rounds", [0, 1, 2, 4])
@pytest.mark.parametrize("stop", [1, 2])
def test_support_guesses_resume_where_they_stopped(rounds, stop):
    """_guess_supports stopped early (fewer than ``min_active`` problems left) hands over
    each pending problem's next guess and remaining budget; resuming from them gives
    bit for bit what one uninterrupted call gives, which solves at most ``rounds``
    guessed supports after the full one."""
    import refmoo.min_norm as mn

    gen = torch.Generator().manual_seed(11)
    B, K = 300, 6
    G = 0.3 * torch.randn(B, K, 20, dtype=torch.float64, generator=gen) \
        + torch.randn(B, 1, 20, dtype=torch.float64, generator=gen)
    Qn, _ = mn._normalised(G @ G.transpose(1, 2))
    tol = 10 * K * torch.finfo(torch.float64).eps

    def system(idx):
        return mn._UnrolledCholesky(mn._entries(Qn[idx]))

    counted = system(slice(None))
    solves = []
    solve = counted.solve
    counted.solve = lambda S: solves.append(S) or solve(S)
    whole, solved, (pending, nxt, left) = mn._guess_supports(counted, tol, rounds, B, K)
    assert len(solves) <= rounds + 1  # the full support, then at most ``rounds`` guesses
    lam = torch.zeros(B, K, dtype=torch.float64)
    done = torch.zeros(B, dtype=torch.bool)
    idx, S, budget = torch.arange(B), None, None
    for _ in range(stop):  # stop after the first round each time, then resume
        part, ok, (later, S, budget) = mn._guess_supports(
            system(idx), tol, rounds, idx.numel(), K, S=S, budget=budget,
            min_active=idx.numel() + 1)
        lam[idx], done[idx] = part, ok
        idx = idx[later]
        if not idx.numel():
            break
    early = int(done.sum())
    if idx.numel():
        part, ok, (later, S, budget) = mn._guess_supports(
            system(idx), tol, rounds, idx.numel(), K, S=S, budget=budget)
        lam[idx], done[idx] = part, ok
        idx = idx[later]
    assert torch.equal(done, solved) and torch.equal(lam, whole)
    assert torch.equal(idx, pending)
    assert rounds < stop or int(solved.sum()) > early  # some settle after resuming


@pytest.mark.parametrize("path", LARGE_BATCH_PATHS)
@pytest.mark.parametrize("aligned", [False, True], ids=["independent", "aligned"])
def test_guessed_answers_do_not_depend_on_the_batch(aligned, path):
    """A problem that the support guesses settle (independent rows much longer than K:
    full support; aligned rows: one to three guesses more, some in the chunk, some
    after it) reads only its own entries, so it gets the same bits alone as in any
    batch (RESULTS.md, _first_rounds). Here every problem is settled by guesses:
    Wolfe's method, whose batched products may round by batch, never runs."""
    from unittest import mock

    import refmoo.min_norm as mn

    gen = torch.Generator().manual_seed(3)
    G = torch.randn(24, 4, 64, dtype=torch.float64, generator=gen)
    if aligned:
        G = 0.3 * G + torch.randn(24, 1, 64, dtype=torch.float64, generator=gen)
    G[::5] *= 1e-6  # matrices of very different scales in one batch, some of them
    G[1::5] *= 0.7  # shifted by odd powers of two against the others
    Q = G @ G.transpose(1, 2)
    with large_batch_path(path), mock.patch.object(mn, "_UNROLLED_MIN_BATCH", 0), \
            mock.patch.object(mn, "_wolfe", side_effect=AssertionError("Wolfe ran")):
        together = solve_min_norm(Q)
        for b in range(Q.shape[0]):
            alone = solve_min_norm(Q[b:b + 1])
            assert torch.equal(alone.weights[0], together.weights[b])
            assert torch.equal(alone.value[0], together.value[b])


@pytest.mark.parametrize("dtype", [torch.float64, torch.float32])
def test_the_compiled_guesses_give_the_eager_bits(dtype):
    """The kernel (refmoo/csrc/kernels.cpp, min_norm_guesses) runs the eager unrolled
    path's element-wise operations in the same order, so with the unrolled path
    forced everywhere (its pooled rounds included) both return the same bits: every
    field, on a batch of independent and aligned rows, rows 1e-6 of the others,
    scales apart by odd powers of two, zero and duplicated rows (singular on the full
    support, then Wolfe's method, given the same problems in the same order)."""
    from unittest import mock

    import refmoo.min_norm as mn

    gen = torch.Generator().manual_seed(13)
    B, K = 2000, 5
    G = torch.randn(B, K, 24, dtype=torch.float64, generator=gen)
    G[B // 2:] = 0.2 * G[B // 2:] + torch.randn(B // 2, 1, 24, dtype=torch.float64,
                                                   generator=gen)
    G[::7, 1] *= 1e-6
    G[1::11] *= 0.7 * 2.0 ** 41
    G[2::13, 3] = 0.0
    G[3::17, 4] = G[3::17, 0]
    Q = (G @ G.transpose(1, 2)).to(dtype)
    with mock.patch.object(mn, "_UNROLLED_MIN_BATCH", 0):
        with large_batch_path("compiled"):
            compiled_solution = solve_min_norm(Q)
        with large_batch_path("eager"):
            eager_solution = solve_min_norm(Q)
    for name in ("weights", "value", "gap", "lower_bound"):
        assert torch.equal(getattr(compiled_solution, name), getattr(eager_solution, name)), name
    assert compiled_solution.iterations == eager_solution.iterations > 1  # Wolfe ran


def test_the_solvers_square_root_is_correctly_rounded():
    """min_norm._sqrt against the exact midpoints of its neighbours (Fractions): the
    value torch.sqrt got 1 ulp wrong, then uniform samples over many binades."""
    import math
    from fractions import Fraction

    import refmoo.min_norm as mn

    gen = torch.Generator().manual_seed(5)
    x = torch.cat([torch.tensor([0.6557538954102683], dtype=torch.float64),
                   torch.rand(2999, dtype=torch.float64, generator=gen)
                   * torch.exp2(torch.randint(-60, 60, (2999,), generator=gen)).double()])
    roots = mn._sqrt(x.view(2, -1).T).T.reshape(-1)  # a strided view, as in the solver
    for value, root in zip(x.tolist(), roots.tolist(), strict=True):
        low = (Fraction(math.nextafter(root, 0.0)) + Fraction(root)) / 2
        high = (Fraction(root) + Fraction(math.nextafter(root, math.inf))) / 2
        assert low * low <= Fraction(value) <= high * high, value
    assert mn._sqrt(x[:1]).item() == 0.8097863270087168
