"""Outputs scale exactly with G, and verdicts stay the same, over the whole finite
range of float64 and float32.

Bitwise equality is asserted only for powers of two, where it holds by
construction: 2^k·x has the same digits as x, every Gram is formed on a copy of
G rescaled by a power of two when it would leave the normal range, and the
solvers work on Q divided by a power of two (or by its largest diagonal, which
scales by the same 4^k). So the same rounded operations run on the same digits
whatever k is, as long as no number in the computation becomes subnormal; the
ranges below keep a margin of 2^60 from the subnormals for that reason. Other
factors (10^k) round G's entries first, and are compared with tolerances.
"""

import warnings

import pytest
import torch

from refmoo import (
    AGGREGATORS,
    MGDA,
    Partition,
    Sum,
    get_aggregator,
    pareto_stationarity,
    refined_pareto_stationarity,
)
from refmoo._checks import GradientError

DESIGN = [[1.0, 1.0], [-1.0, -2.0]]  # not PS; RPS for singletons; MGDA = (3, -2)/13


def _matrix(dtype, seed=0, K=4, D=7):
    G = torch.randn(K, D, dtype=torch.float64, generator=torch.Generator().manual_seed(seed))
    G[1] *= 1e-3  # rows of different norms, all well inside the range
    return G.to(dtype)


def _aggregators():
    kwargs = {"cagrad": {"c": 1.0}}
    return [get_aggregator(name, **kwargs.get(name, {})) for name in AGGREGATORS]


@pytest.mark.parametrize("aggregator", _aggregators(), ids=repr)
@pytest.mark.parametrize("dtype,exponents", [
    (torch.float64, [-960, -500, -300, -1, 1, 300, 500, 960]),
    (torch.float32, [-60, -40, -20, -1, 1, 20, 40, 60]),
])
def test_power_of_two_scaling_is_exact(aggregator, dtype, exponents):
    G = _matrix(dtype)
    reference = aggregator(G)
    # Nash-MTL's direction does not depend on the scale (A(cG) = A(G)); every other
    # aggregator is homogeneous of degree one.
    degree = 0 if type(aggregator).__name__ == "NashMTL" else 1
    for k in exponents:
        scaled = aggregator(G * 2.0**k)
        assert torch.equal(scaled, reference * 2.0 ** (degree * k)), k


@pytest.mark.parametrize("exponent", [-300, -250, -200, -170, -100, -10, 10, 100, 154, 200, 300])
def test_mgda_follows_g_across_float64(exponent):
    c = 10.0**exponent
    G = torch.tensor(DESIGN, dtype=torch.float64)
    a = MGDA()(c * G)
    expected = torch.tensor([3.0, -2.0], dtype=torch.float64) / 13
    # c·G rounds each entry by ε/2; the 2×2 solve and the combination add a few ε.
    torch.testing.assert_close(a / c, expected, rtol=16 * 2.0**-52, atol=0.0)


@pytest.mark.parametrize("exponent", [-37, -30, -23, -21, -10, 10, 20, 30, 37])
def test_mgda_follows_g_across_float32(exponent):
    c = 10.0**exponent
    G = (c * torch.tensor(DESIGN, dtype=torch.float64)).to(torch.float32)
    a = MGDA()(G).to(torch.float64)
    expected = torch.tensor([3.0, -2.0], dtype=torch.float64) / 13
    # Entries of G round by ε₃₂/2, the Gram, the cast of the weights and the
    # combination by a few ε₃₂ each; the 2×2 problem has condition number ~10.
    torch.testing.assert_close(a / c, expected, rtol=64 * 2.0**-23, atol=0.0)


@pytest.mark.parametrize("exponent", [-300, -200, -170, -154, -100, 0, 100, 154, 200, 300])
def test_verdicts_do_not_change_across_float64(exponent):
    c = 10.0**exponent
    G = torch.tensor(DESIGN, dtype=torch.float64)
    with warnings.catch_warnings():
        # At 1e-170 the margin (~φ²) is below float64's subnormals: reported, and warned.
        warnings.simplefilter("ignore", RuntimeWarning)
        ps = pareto_stationarity(c * G)
        rps = refined_pareto_stationarity(c * G, Partition.singletons(2))
    assert not ps.stationary and rps.stationary
    torch.testing.assert_close(ps.residual / c, torch.tensor(13.0**-0.5, dtype=torch.float64),
                               rtol=16 * 2.0**-52, atol=0.0)
    torch.testing.assert_close(ps.direction / c, -torch.tensor([3.0, -2.0],
                                                               dtype=torch.float64) / 13,
                               rtol=16 * 2.0**-52, atol=0.0)


def test_unrepresentable_margin_is_said_not_hidden():
    G = 1e-170 * torch.tensor(DESIGN, dtype=torch.float64)
    with pytest.warns(RuntimeWarning, match="margin .* underflows float64"):
        cert = pareto_stationarity(G)
    assert not cert.stationary  # the verdict itself was verified on the rescaled G


@pytest.mark.parametrize("exponent", [-30, -20, 0, 20, 30])
def test_verdicts_do_not_change_across_float32(exponent):
    G = (10.0**exponent * torch.tensor(DESIGN, dtype=torch.float64)).to(torch.float32)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)
        assert not pareto_stationarity(G).stationary
        assert refined_pareto_stationarity(G, Partition.singletons(2)).stationary


def test_large_finite_gradients_are_aggregated_not_refused():
    G = 1e154 * torch.tensor(DESIGN, dtype=torch.float64)  # G Gᵀ overflows float64
    torch.testing.assert_close(MGDA()(G) / 1e154,
                               torch.tensor([3.0, -2.0], dtype=torch.float64) / 13,
                               rtol=16 * 2.0**-52, atol=0.0)


def test_an_update_that_float_cannot_hold_is_reported_in_terms_of_g():
    G = torch.full((3, 2), 1.5e308, dtype=torch.float64)
    with pytest.raises(GradientError, match="aggregated update overflows torch.float64 at "
                                            "column 0: G's largest entry there is 1.500e"):
        Sum()(G)
