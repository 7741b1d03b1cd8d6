"""GradDrop: sign selection, counter-based masks, vectorised bucketing, TorchJD."""

import pytest
import torch
from torchjd.aggregation import GradDrop as TorchJDGradDrop

from refmoo import GradDrop, Partition, bucketwise


def _graddrop_loop(G: torch.Tensor, U: torch.Tensor, leak) -> torch.Tensor:
    """The paper's lines 10-15, one coordinate at a time."""
    out = torch.zeros_like(G[0])
    leak = torch.as_tensor(leak, dtype=G.dtype).expand(G.shape[0])
    for j in range(G.shape[1]):
        col = G[:, j]
        mass = float(col.abs().sum())
        purity = 0.5 * (1 + float(col.sum()) / mass) if mass > 0 else 0.5
        for k in range(G.shape[0]):
            kept = (purity > U[j] and col[k] > 0) or (purity < U[j] and col[k] < 0)
            out[j] += (leak[k] + (1 - leak[k]) * float(kept)) * col[k]
    return out


def test_columns_with_one_sign_survive_whole():
    G = torch.tensor([[1.0, -2.0, 0.0], [3.0, -1.0, 2.0]], dtype=torch.float64)
    torch.testing.assert_close(GradDrop(seed=4)(G), G.sum(0), rtol=0, atol=0)


def test_full_leak_is_the_sum():
    G = torch.randn(4, 30, dtype=torch.float64, generator=torch.Generator().manual_seed(0))
    torch.testing.assert_close(GradDrop(leak=1.0)(G), G.sum(0))


@pytest.mark.parametrize("leak", [0.0, 0.3, [0.0, 0.5, 1.0]])
def test_matches_a_coordinate_loop_with_the_same_uniforms(leak):
    G = torch.randn(3, 40, dtype=torch.float64, generator=torch.Generator().manual_seed(1))
    G[:, :5] = 0.0
    agg = GradDrop(seed=9, leak=leak)
    U = agg.uniforms(torch.tensor(6), torch.arange(40))
    torch.testing.assert_close(agg(G, key=6), _graddrop_loop(G, U, leak))


def test_matches_torchjd_with_the_same_uniforms(monkeypatch):
    G = torch.randn(5, 64, dtype=torch.float64, generator=torch.Generator().manual_seed(2))
    agg = GradDrop(seed=1)
    U = agg.uniforms(torch.tensor(0), torch.arange(64))
    monkeypatch.setattr(torch, "rand", lambda *a, **k: U.clone())
    expected = TorchJDGradDrop()(G)
    monkeypatch.undo()
    torch.testing.assert_close(agg(G), expected, rtol=0, atol=0)


def test_positive_part_is_kept_with_probability_equal_to_the_purity():
    n = 20000
    G = torch.tensor([[1.0], [-3.0]], dtype=torch.float64).expand(2, n).contiguous()
    out = GradDrop(seed=0)(G)  # P = (1 + (1 - 3)/4)/2 = 1/4 in every column
    frequency = float((out > 0).double().mean())
    assert abs(frequency - 0.25) < 4 * (0.25 * 0.75 / n) ** 0.5
    assert bool(((out == 1.0) | (out == -3.0)).all())


def test_vectorised_bucketwise_equals_each_bucket_with_its_key():
    G = torch.randn(3, 23, dtype=torch.float64, generator=torch.Generator().manual_seed(3))
    perm = torch.randperm(23, generator=torch.Generator().manual_seed(4))
    p = Partition(list(torch.split(perm, [5, 1, 9, 8])), dim=23)
    agg = GradDrop(seed=2, leak=0.1)
    out = bucketwise(agg, G, p)
    for b, idx in enumerate(p):
        torch.testing.assert_close(out[idx], agg(G[:, idx], key=b), rtol=0, atol=0)


def test_seed_and_key_change_the_masks_reproducibly():
    G = torch.randn(3, 200, dtype=torch.float64, generator=torch.Generator().manual_seed(5))
    a = GradDrop(seed=0)(G, key=1)
    assert torch.equal(a, GradDrop(seed=0)(G, key=1))
    assert not torch.equal(a, GradDrop(seed=0)(G, key=2))
    assert not torch.equal(a, GradDrop(seed=1)(G, key=1))


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
def test_dtype_is_preserved(dtype):
    G = torch.tensor([[1.0, 0.0], [-1.0, 1.0], [0.3, -2.0]], dtype=dtype)
    assert GradDrop()(G).dtype == dtype


def test_bad_leak_is_rejected():
    with pytest.raises(ValueError, match="leak"):
        GradDrop(leak=1.5)
    with pytest.raises(ValueError, match="leak"):
        GradDrop(leak=[0.1, 0.2])(torch.ones(3, 2, dtype=torch.float64))
