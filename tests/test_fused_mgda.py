"""The compiled one-pass bucketwise(MGDA) against the eager path and the exact referee.

The kernel is a shortcut: every bucket it settles must carry the eager solver's
certificate, its update must be exactly wᵀGᵇ in G's dtype, and everything else
must come out as the eager path would have it (fallback weights, errors).
"""

import math
import os
import shutil
import subprocess
import sys
import warnings
from fractions import Fraction
from unittest import mock

import pytest
import torch

from refmoo import MGDA, GradientError, Partition, UPGrad, bucketwise, compiled, fused_mgda
from refmoo.exact import exact_min_norm
from refmoo.min_norm import _certified, _normalised
from tests.test_exact_referee import EPS, _cosines, _support_scale, spread_matrix

needs_kernel = pytest.mark.skipif(
    os.environ.get(compiled.ENVIRONMENT_SWITCH) == "0", reason="REFMOO_FUSED=0")


def stacked(blocks: list[torch.Tensor]) -> tuple[torch.Tensor, Partition]:
    """Buckets side by side: G = [B_0 | B_1 | ...], one bucket per block."""
    return torch.cat(blocks, dim=1), Partition.from_sizes([b.shape[1] for b in blocks])


def kernel(G: torch.Tensor, width: int) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor,
                                                  torch.Tensor]:
    out = torch.full((G.shape[1],), math.nan, dtype=G.dtype)
    lam, e, status = fused_mgda.mgda_tiles(G, width, out)
    return out, lam, e, status


def outcome(call):
    """The result, or the GradientError's message."""
    try:
        return call()
    except GradientError as error:
        return str(error)


def eager(G: torch.Tensor, partition: Partition, **kwargs) -> torch.Tensor:
    with mock.patch.object(fused_mgda, "applies", return_value=False):
        return bucketwise(MGDA(), G, partition, **kwargs)


@pytest.mark.skipif(not (shutil.which("c++") or shutil.which("g++")) or not shutil.which("ninja"),
                    reason="no C++ compiler or ninja: bucketwise keeps its eager path")
@needs_kernel
def test_the_kernel_builds_where_a_compiler_is_found():
    assert compiled.available()


@needs_kernel
def test_bucketwise_takes_the_kernel_exactly_where_it_applies():
    G = torch.randn(4, 64, dtype=torch.float64, generator=torch.Generator().manual_seed(0))
    cases = [
        (MGDA(), Partition.from_sizes([16] * 4), True),  # equal chunks: one tile each
        (MGDA(), Partition.from_sizes([16, 48]), False),  # unequal buckets
        (MGDA(), Partition([torch.arange(16, 32), torch.arange(16), torch.arange(32, 48),
                            torch.arange(48, 64)]), False),  # equal, not in column order
        (MGDA(), Partition.from_sizes([2] * 32), False),  # fewer columns than rows
        (UPGrad(), Partition.from_sizes([16] * 4), False),  # another aggregator
        (type("MyMGDA", (MGDA,), {})(), Partition.from_sizes([16] * 4), False),  # subclass
    ]
    for aggregator, partition, expected in cases:
        with mock.patch.object(fused_mgda, "mgda_tiles", wraps=fused_mgda.mgda_tiles) as spy:
            bucketwise(aggregator, G, partition)
        assert spy.called == expected, (aggregator, partition)
    # K = 9 rows and float16 stay on the eager path.
    assert not fused_mgda.applies(MGDA(), torch.zeros(9, 90), 10)
    assert not fused_mgda.applies(MGDA(), torch.zeros(2, 8, dtype=torch.float16), 4)


@needs_kernel
def test_a_shorter_last_chunk_is_its_own_bucket():
    """Partition.chunks(D, w) with w not dividing D: the kernel takes the full chunks,
    the last one is solved as a partition of its own (bit for bit), and an error
    there names it."""
    gen = torch.Generator().manual_seed(2)
    G = torch.randn(3, 10 * 16 + 5, dtype=torch.float64, generator=gen)
    partition = Partition.chunks(G.shape[1], 16)
    with mock.patch.object(fused_mgda, "mgda_tiles", wraps=fused_mgda.mgda_tiles) as spy:
        a = bucketwise(MGDA(), G, partition)
    assert spy.called
    # Bitwise by construction: the tail is that very call on the same view of G; the
    # full chunks are settled by the kernel (checked), whose buckets read only their
    # own columns with IEEE operations in a fixed order.
    assert torch.equal(a[160:], bucketwise(MGDA(), G[:, 160:], Partition.single(5)))
    assert bool((kernel(G[:, :160].contiguous(), 16)[3] == fused_mgda.DONE).all())
    assert torch.equal(a[:160], bucketwise(MGDA(), G[:, :160], Partition.chunks(160, 16)))
    G[2, 162] = math.inf
    with pytest.raises(GradientError) as fused_error:
        bucketwise(MGDA(), G, partition)
    assert str(fused_error.value) == outcome(lambda: eager(G, partition))
    assert "bucket 10" in str(fused_error.value)


@needs_kernel
@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
@pytest.mark.parametrize("K", [2, 3, 4, 5, 8])
def test_settled_buckets_are_certified_and_combined_exactly(K, dtype):
    """Every settled bucket's λ passes the eager solver's per-row and vertex tests on
    the float64 Gram, and its update is Σ_k w_k g_k in G's dtype added in order
    (bitwise: each step is one correctly rounded operation, in both computations)."""
    gen = torch.Generator().manual_seed(K)
    width, T = 3 * K + 1, 300
    G = torch.randn(K, width * T, dtype=dtype, generator=gen)
    G[:, : width * T // 2] += 2 * torch.randn(1, width * T // 2, dtype=dtype, generator=gen)
    out, lam, _, status = kernel(G, width)
    done = status == fused_mgda.DONE
    assert int(done.sum()) > T // 2  # aligned and independent buckets are mostly settled
    tiles = G.view(K, T, width).transpose(0, 1)[done].to(torch.float64)
    Qn, _ = _normalised(tiles @ tiles.transpose(1, 2))
    tol = 10 * K * EPS
    assert bool(_certified(Qn, lam[done], tol).all())
    # Bitwise by construction: separate torch multiplications and additions, each one
    # correctly rounded IEEE operation (never fused), in the kernel's order.
    w = lam[done].to(dtype)
    X = G.view(K, T, width).transpose(0, 1)[done]
    expected = w[:, 0:1] * X[:, 0]
    for k in range(1, K):
        expected = expected + w[:, k:k + 1] * X[:, k]
    assert torch.equal(out.view(T, width)[done], expected)


@needs_kernel
@pytest.mark.parametrize("seed", range(8))
def test_fused_buckets_meet_the_exact_referee_at_every_row_ratio(seed):
    """The issue's bar on the kernel's buckets: rows spanning 20 orders of magnitude in
    one bucket, MGDA's value within 1e-9 of the exact optimum plus rounding at the
    support's scale, and no conflict beyond rounding (allowances derived in
    tests/test_exact_referee.py; here D = width)."""
    K, width = 2 + seed % 4, 8
    blocks = [spread_matrix(1000 * seed + i, K, width, leaning=i % 2 == 0) for i in range(12)]
    G, partition = stacked(blocks)
    _, _, _, status = kernel(G, width)
    assert int((status == fused_mgda.DONE).sum()) >= 3
    a = bucketwise(MGDA(), G, partition)
    for b, block in enumerate(blocks):
        d = a[b * width:(b + 1) * width]
        exact = exact_min_norm(block)
        s = _support_scale(block, exact.weights)
        f = sum(Fraction(x) ** 2 for x in d.tolist())
        assert abs(float(f - exact.value)) <= \
            1e-9 * float(exact.value) + (5 * K + 2 * width) * EPS * s * s, (b, int(status[b]))
        if bool(d.any()):
            rho = s / math.sqrt(float(exact.value)) if exact.value > 0 else math.inf
            allowance = 1e-9 + (5 * K + 2 * width) * EPS * rho * (1 + rho)
            assert min(_cosines(block, d)) >= -allowance, (b, int(status[b]))


@needs_kernel
@pytest.mark.parametrize(("dtype", "powers"), [
    (torch.float64, (-990, -600, -300, -1, 1, 300, 600, 990)),
    (torch.float32, (-90, -60, -20, -1, 1, 20, 60, 90)),
])
def test_the_update_scales_exactly_with_g(dtype, powers):
    """Bitwise 2^k scaling over the dtype's range: a float64 bucket's Gram is formed
    from 2^-e·Gᵇ (its largest entry in [2^474, 2^475)), a float32 one exactly in float64."""
    gen = torch.Generator().manual_seed(3)
    K, width, T = 4, 16, 64
    G = torch.randn(K, width * T, dtype=torch.float64, generator=gen)
    G = G.clamp(-4, 4).where(G.abs() > 1e-3, torch.full_like(G, 1e-3)).to(dtype)
    partition = Partition.from_sizes([width] * T)
    base = bucketwise(MGDA(), G, partition)
    # Bitwise by construction: 2^k scales every entry exactly (no subnormals here), a
    # float64 bucket is scaled by its own 2^-e into the same numbers before anything
    # is summed, and a float32 bucket's products are exact in float64 either way.
    e = kernel(G, width)[2]
    assert bool((e == 0).all()) if dtype == torch.float32 else bool((e != 0).any())
    for k in powers:
        scaled = torch.ldexp(G, torch.tensor(k))
        if dtype == torch.float64:  # every bucket scaled by its largest entry's 2^-e
            assert torch.equal(kernel(scaled, width)[2], e + k), k
        expected = torch.ldexp(base, torch.tensor(k))
        assert torch.equal(bucketwise(MGDA(), scaled, partition), expected)


@needs_kernel
def test_a_row_far_below_the_others_is_not_lost_at_a_small_scale():
    """Rows 1e-35 apart with entries near 1e-145 (all normal numbers): formed as they
    are, the small row's squares underflow to 0 and it passes for a zero row, whose
    weight 1 then gives an update conflicting with the other row (audit: cosine
    −0.5). Scaled first, the bucket gets the bits of its unit-scale copy, times 2^k."""
    gen = torch.Generator().manual_seed(8)
    u, v = torch.randn(2, 8, dtype=torch.float64, generator=gen)
    u = u / u.norm()
    v = v - (v @ u) * u
    v = v / v.norm()
    B = torch.stack([u, 1e-35 * (-0.5 * u + 0.75 ** 0.5 * v)])
    G = torch.cat([B, B], 1)
    partition = Partition.chunks(16, 8)
    unit = bucketwise(MGDA(), G, partition)
    small = bucketwise(MGDA(), torch.ldexp(G, torch.tensor(-482)), partition)
    assert torch.equal(small, torch.ldexp(unit, torch.tensor(-482)))
    assert min(_cosines(B, unit[:8])) >= -1e-9


@needs_kernel
def test_a_bucket_does_not_depend_on_the_others_or_on_threads():
    gen = torch.Generator().manual_seed(5)
    K, width, T = 5, 24, 400
    G = torch.randn(K, width * T, generator=gen)
    G[:2, ::3] *= 1e-6
    partition = Partition.from_sizes([width] * T)
    threads = torch.get_num_threads()
    try:
        torch.set_num_threads(1)
        one = bucketwise(MGDA(), G, partition)
        torch.set_num_threads(2)
        two = bucketwise(MGDA(), G, partition)
    finally:
        torch.set_num_threads(threads)
    assert torch.equal(one, two)
    part = G[:, 37 * width:91 * width].contiguous()
    assert torch.equal(bucketwise(MGDA(), part, Partition.from_sizes([width] * 54)),
                       one[37 * width:91 * width])


@needs_kernel
@pytest.mark.parametrize("K", [2, 4, 8])
def test_problems_solved_side_by_side_get_the_single_problems_bits(K):
    """The kernel solves kGroup tiles' problems side by side, one per lane; each lane
    must do exactly the scalar solver's operations. With width = 4 columns (one per
    partial sum of the kernel's Gram) the Gram is reproducible here: products of
    float32 entries are exact in float64, and the four partial sums are added in
    order. The scalar solver (``min_norm_guesses``) then gets the same Grams and must
    return the same weights bit for bit, for buckets that need several guesses (rows
    in conflict, so that the optimum is on a face) and a last group left partial."""
    gen = torch.Generator().manual_seed(K)
    T, width = 8 * 37 + 3, max(4, K)
    G = torch.randn(K, width * T, generator=gen)
    G[1] = -0.7 * G[0] + 0.3 * G[1]  # conflicting rows: faces of every size
    G[:, ::5] *= 1e-3
    out = torch.empty(G.shape[1])
    lam, _, status = fused_mgda.mgda_tiles(G, width, out)
    X = G.view(K, T, width).transpose(0, 1).to(torch.float64)  # [T, K, width]
    products = X.unsqueeze(2) * X.unsqueeze(1)  # exact: [T, K, K, width]
    # The kernel's partial sums: column c goes to lane c mod 4 (width 8: two each),
    # and the lanes are added in order.
    lanes = [products[..., c] + products[..., c + 4] if width > 4 else products[..., c]
             for c in range(4)]
    Q = ((lanes[0] + lanes[1]) + lanes[2]) + lanes[3]
    scalar, _, scalar_status = compiled.ops().min_norm_guesses(
        Q.contiguous(), 10 * K * torch.finfo(torch.float64).eps, fused_mgda._GUESS_ROUNDS)
    done = status == fused_mgda.DONE
    assert int(done.sum()) > T // 2
    assert torch.equal(scalar_status[done], torch.zeros(int(done.sum()), dtype=torch.uint8))
    assert torch.equal(lam[done], scalar[done])
    supports = (lam[done] > 0).sum(1)
    assert int(supports.min()) < K  # faces were found, not only the full support


@needs_kernel
@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
def test_a_zero_row_is_settled_by_the_kernel_with_the_eager_update(dtype):
    """A language absent from a bucket (a zero row), or a bucket with no gradient at
    all: the optimum is that row's vertex and the update is 0. The kernel settles
    such buckets itself (the full support's Cholesky cannot), with weights e_k and
    the update the eager path gives; a row far below the others but not zero is not
    taken for one."""
    gen = torch.Generator().manual_seed(11)
    K, width, T = 4, 16, 24
    G = torch.randn(K, width * T, dtype=dtype, generator=gen)
    G[2, : width * 8] = 0  # row 2 absent from buckets 0-7
    G[:, width * 8: width * 12] = 0  # buckets 8-11: no gradient
    G[1, width * 12: width * 14] = -0.0
    G[3, width * 14: width * 16] *= 1e-30  # tiny, not zero
    out, lam, _, status = kernel(G, width)
    assert bool((status == fused_mgda.DONE).all())
    assert torch.equal(lam[:8], torch.eye(K, dtype=torch.float64)[2].expand(8, K))
    assert torch.equal(lam[8:12], torch.eye(K, dtype=torch.float64)[0].expand(4, K))
    plain = eager(G, Partition.chunks(G.shape[1], width))
    # Exact by construction: every one of these buckets has a zero row, so both paths'
    # updates are exactly 0 (zeros of either sign compare equal).
    assert torch.equal(out[: width * 14], plain[: width * 14])
    assert not bool(out[: width * 12].any())
    assert bool(out[width * 14: width * 16].any())  # the tiny row is a row
    for b in range(14, 16):
        cols = slice(b * width, (b + 1) * width)
        assert min(_cosines(G[:, cols].double(), out[cols].double())) >= -1e-6


BASELINE_BUILD = '''
import sys, torch
from refmoo import fused_mgda
from refmoo import compiled
compiled._vector_flags = lambda: ("baseline", [])  # SSE2 only, another build
G = torch.load(sys.argv[1])
out = torch.empty(G.shape[1], dtype=G.dtype)
lam, _, status = fused_mgda.mgda_tiles(G, int(sys.argv[2]), out)
torch.save((out, lam, status), sys.argv[3])
'''


@needs_kernel
@pytest.mark.skipif(compiled._vector_flags()[0] == "baseline", reason="no AVX2 build here")
def test_the_vector_build_gives_the_baseline_builds_bits(tmp_path):
    """The claim that the bits do not depend on the CPU: the AVX2 build (4 lanes per
    instruction) against the SSE2 baseline build, in a process of its own."""
    gen = torch.Generator().manual_seed(4)
    G = torch.randn(6, 37 * 200, generator=gen)
    G[2] = 0.9 * G[1] + 0.1 * G[2]
    torch.save(G, tmp_path / "G.pt")
    subprocess.run([sys.executable, "-c", BASELINE_BUILD, str(tmp_path / "G.pt"), "37",
                    str(tmp_path / "baseline.pt")], check=True, timeout=600)
    out, lam, status = torch.load(tmp_path / "baseline.pt")
    here = kernel(G, 37)
    assert torch.equal(status, here[3]) and bool((status == fused_mgda.DONE).all())
    assert torch.equal(lam, here[1]) and torch.equal(out, here[0])


@needs_kernel
def test_buckets_the_kernel_leaves_get_the_eager_weights():
    """Parallel rows (singular on the full support) and a face that needs Wolfe's
    method are left UNSOLVED by the kernel and solved by the eager solver; a zero
    bucket is settled (update 0, see the zero-row test)."""
    gen = torch.Generator().manual_seed(7)
    K, width = 4, 8
    independent = torch.randn(K, width, dtype=torch.float64, generator=gen)
    zero = torch.zeros(K, width, dtype=torch.float64)
    parallel = independent.clone()
    parallel[1] = 3 * parallel[0]
    parallel[2] = -parallel[3]
    blocks = [independent, zero, parallel]
    G, partition = stacked(blocks)
    out, _, _, status = kernel(G, width)
    assert status.tolist() == [fused_mgda.DONE, fused_mgda.DONE, fused_mgda.UNSOLVED]
    a = bucketwise(MGDA(), G, partition)
    assert torch.equal(a[:width], out[:width])
    assert torch.equal(a[width:2 * width], zero[0])
    # A left bucket's update is its eager weights' ordered sum as well (not BLAS's).
    X = parallel.unsqueeze(0)
    from refmoo.min_norm import _solve_weights
    w = _solve_weights(X @ X.transpose(1, 2))
    assert torch.equal(a[2 * width:], sum((w[0, k] * parallel[k] for k in range(1, K)),
                                          w[0, 0] * parallel[0]))
    # The parallel bucket: g₃ = −g₄, so the optimum is 0; the eager path finds it too.
    assert float(a[2 * width:].abs().max()) < 1e-15
    assert float(eager(G, partition)[2 * width:].abs().max()) < 1e-15


@needs_kernel
def test_non_finite_and_overflowing_buckets_raise_as_the_eager_path_does():
    gen = torch.Generator().manual_seed(9)
    G = torch.randn(3, 60, generator=gen)
    partition = Partition.from_sizes([6] * 10)
    bad = G.clone()
    bad[1, 40] = math.nan
    with pytest.raises(GradientError) as fused_error:
        bucketwise(MGDA(), bad, partition)
    with pytest.raises(GradientError) as eager_error:
        eager(bad, partition)
    assert str(fused_error.value) == str(eager_error.value)
    assert kernel(bad, 6)[3][6] == fused_mgda.NON_FINITE
    # Three rows equal to float32's largest number in a column, weights whose float32
    # roundings add up to more than 1: that column's update overflows in the kernel.
    big = (2 * torch.rand(3, 12, generator=torch.Generator().manual_seed(21)) - 1)
    big = big * torch.finfo(torch.float32).max
    big[:, ::6] = torch.finfo(torch.float32).max
    partition = Partition.from_sizes([6, 6])
    assert kernel(big, 6)[3].tolist() == [fused_mgda.OVERFLOW, fused_mgda.DONE]
    fused = outcome(lambda: bucketwise(MGDA(), big, partition))
    reference = outcome(lambda: eager(big, partition))  # here: no overflow in BLAS's order
    assert type(fused) is type(reference)
    assert fused == reference if isinstance(fused, str) else torch.equal(fused, reference)


@needs_kernel
@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
def test_fused_and_eager_paths_agree_to_rounding(dtype):
    gen = torch.Generator().manual_seed(11)
    K, width, T = 6, 32, 500
    G = torch.randn(K, width * T, dtype=dtype, generator=gen)
    G[3] = 0.8 * G[2] + 0.2 * G[3]
    partition = Partition.from_sizes([width] * T)
    out = torch.empty(width * T, dtype=dtype)
    fused = bucketwise(MGDA(), G, partition, out=out)
    assert fused.data_ptr() == out.data_ptr()
    reference = eager(G, partition)
    # Both are certified optima of Grams that differ by rounding in G's dtype: the
    # updates agree to that rounding times the bucket's conditioning, far below 1e-3.
    scale = G.view(K, T, width).abs().amax((0, 2)).repeat_interleave(width)
    assert float(((fused - reference).abs() / scale).max()) < 1e3 * torch.finfo(dtype).eps


def test_a_failed_build_warns_and_keeps_the_eager_path(monkeypatch):
    monkeypatch.setattr(compiled, "_built", None)
    monkeypatch.setattr(compiled, "_registered", lambda: False)
    monkeypatch.delenv(compiled.ENVIRONMENT_SWITCH, raising=False)

    def no_compiler(**kwargs):
        raise OSError("c++: not found")

    monkeypatch.setattr(compiled, "_load_extension", no_compiler)
    G = torch.randn(2, 16, dtype=torch.float64, generator=torch.Generator().manual_seed(1))
    partition = Partition.from_sizes([4] * 4)
    message = "could not build its compiled kernels.*c\\+\\+: not found"
    with pytest.warns(RuntimeWarning, match=message):
        a = bucketwise(MGDA(), G, partition)
    assert torch.equal(a, eager(G, partition))
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # once only
        bucketwise(MGDA(), G, partition)


def test_the_switch_keeps_the_eager_path(monkeypatch):
    monkeypatch.setattr(compiled, "_built", None)
    monkeypatch.setenv(compiled.ENVIRONMENT_SWITCH, "0")
    assert not compiled.available()
    with mock.patch.object(fused_mgda, "mgda_tiles") as spy:
        bucketwise(MGDA(), torch.eye(2, 8), Partition.from_sizes([4, 4]))
    assert not spy.called
    with pytest.raises(RuntimeError, match="kernels are not available here \\(REFMOO_FUSED='0'"):
        fused_mgda.mgda_tiles(torch.eye(2, 8), 4, torch.empty(8))

