"""PCGrad: closed forms, an independent vector-space implementation, TorchJD, batching."""

import pytest
import torch
from torchjd.aggregation import PCGrad as TorchJDPCGrad

from refmoo import Partition, PCGrad, bucketwise

from ._helpers import cases


def _pcgrad_on_vectors(G: torch.Tensor, orders: torch.Tensor) -> torch.Tensor:
    """Algorithm 1 of Yu et al. on the vectors themselves, with the given visiting orders."""
    out = torch.zeros_like(G[0])
    for i in range(G.shape[0]):
        g = G[i].clone()
        for j in orders[i].tolist():
            inner = g @ G[j]
            if j != i and inner < 0:
                g = g - inner / (G[j] @ G[j]) * G[j]
        out += g
    return out


def test_two_conflicting_rows_closed_form():
    G = torch.tensor([[1.0, 0.0], [-1.0, 1.0]], dtype=torch.float64)
    # g1 - (-1/2) g2 = (1/2, 1/2); g2 - (-1/1) g1 = (0, 1).
    torch.testing.assert_close(PCGrad()(G), torch.tensor([0.5, 1.5], dtype=torch.float64))


def test_rows_without_conflict_are_summed():
    G = torch.tensor([[1.0, 2.0, 0.0], [0.5, 0.0, 1.0], [0.0, 1.0, 1.0]], dtype=torch.float64)
    torch.testing.assert_close(PCGrad(seed=5)(G), G.sum(0))


@pytest.mark.parametrize("label,G", cases(seed=1, count=40, K=(1, 6), exponents=(-12, 12)))
def test_gram_coefficients_equal_projecting_the_vectors(label, G):
    agg = PCGrad(seed=7)
    orders = agg.permutations(G.shape[0], torch.tensor([3]))[0]
    expected = _pcgrad_on_vectors(G, orders)
    scale = float(G.norm(dim=1).max()) * G.shape[0]
    torch.testing.assert_close(agg(G, key=3), expected, rtol=1e-9, atol=1e-9 * scale)


@pytest.mark.parametrize("K", [2, 3, 5, 8])
def test_matches_torchjd_with_the_same_orders(K, monkeypatch):
    G = torch.randn(K, 11, dtype=torch.float64, generator=torch.Generator().manual_seed(K))
    agg = PCGrad(seed=2)
    orders = iter(agg.permutations(K, torch.tensor([5]))[0])
    # TorchJD draws torch.randperm(K) once per row, rows in order: feed it ours.
    monkeypatch.setattr(torch, "randperm", lambda n, *a, **k: next(orders))
    expected = TorchJDPCGrad()(G)
    monkeypatch.undo()
    torch.testing.assert_close(agg(G, key=5), expected, rtol=1e-12, atol=1e-12)


def test_orders_are_permutations_that_depend_on_seed_key_and_row():
    agg = PCGrad(seed=0)
    orders = agg.permutations(6, torch.arange(50))
    assert torch.equal(orders.sort(-1).values, torch.arange(6).expand(50, 6, 6))
    assert len({tuple(o.tolist()) for o in orders[:, 0]}) > 10  # keys differ
    assert len({tuple(o.tolist()) for o in orders[0]}) > 1  # rows differ
    assert not torch.equal(orders, PCGrad(seed=1).permutations(6, torch.arange(50)))
    assert torch.equal(orders, PCGrad(seed=0).permutations(6, torch.arange(50)))


def test_batched_weights_equal_one_bucket_at_a_time():
    G = torch.randn(9, 5, 7, dtype=torch.float64, generator=torch.Generator().manual_seed(0))
    Q = G @ G.transpose(1, 2)
    keys = torch.tensor([4, 8, 15, 16, 23, 42, 0, 1, 2])
    agg = PCGrad(seed=3)
    batched = agg.weights_from_gram(Q, keys=keys)
    # Same operations per matrix, but reductions over K = 5 entries may be vectorised
    # differently for a batch of 9 and of 1, so the sums can round differently: each
    # weight sums K coefficients after K projection steps, each rounding by ε relative.
    K = Q.shape[-1]
    for b in range(9):
        single = agg.weights_from_gram(Q[b], keys=keys[b:b + 1])
        torch.testing.assert_close(batched[b], single, rtol=0,
                                   atol=4 * K * K * 2.0**-52 * float(single.abs().max()))


def test_bucketwise_uses_the_bucket_index_as_key():
    G = torch.randn(4, 12, dtype=torch.float64, generator=torch.Generator().manual_seed(1))
    p = Partition([[0, 5, 9], [1, 2, 3, 4], [6, 7, 8, 10, 11]], dim=12)
    agg = PCGrad(seed=11)
    out = bucketwise(agg, G, p)
    for b, idx in enumerate(p):
        torch.testing.assert_close(out[idx], agg(G[:, idx], key=b), rtol=1e-12, atol=1e-12)


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
def test_dtype_is_preserved(dtype):
    G = torch.tensor([[1.0, 0.0], [-1.0, 1.0], [0.3, -2.0]], dtype=dtype)
    assert PCGrad()(G).dtype == dtype
