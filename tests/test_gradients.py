import pytest
import torch
from torch import nn

from refmoo import MGDA, GradientError, Mean, Partition, PartitionError
from refmoo.gradients import (
    flat_grad,
    language_gradients,
    reference_step,
    unflatten,
    write_flat_grad,
)
from refmoo.partitions import (
    ddp_buckets,
    flat_parameters,
    fsdp2_units,
    per_module,
    per_tensor,
    zero_buckets,
)

from .partitions.models import Block, Stack, llama_loss, tiny_llama


def _model():
    torch.manual_seed(0)
    return Stack(vocab=13, width=6, depth=2, out=4).double()


def _batches(k=3, seed=1):
    g = torch.Generator().manual_seed(seed)
    return [torch.randint(0, 13, (2, 3), generator=g) for _ in range(k)]


def _loss(model, tokens):
    return model(tokens).square().mean()


def _manual_rows(model, batches, loss_fn):
    """Reference G: one ordinary backward per language, read from .grad."""
    rows = []
    for batch in batches:
        model.zero_grad(set_to_none=True)
        loss_fn(model, batch).backward()
        rows.append(torch.cat([p.grad.reshape(-1) for p in model.parameters()]))
    model.zero_grad(set_to_none=True)
    return torch.stack(rows)


def test_rows_equal_one_backward_per_language():
    net, batches = _model(), _batches()
    G = language_gradients(net, batches, _loss)
    assert G.shape == (3, flat_parameters(net)[-1].stop) and G.dtype == torch.float64
    assert torch.equal(G, _manual_rows(net, batches, _loss))
    assert all(p.grad is None for p in net.parameters())   # .grad untouched


def test_every_input_form_gives_the_same_matrix():
    net, batches = _model(), _batches()
    G = language_gradients(net, batches, _loss)
    shared = [_loss(net, b) for b in batches]                 # one graph per loss
    def one_graph():                                          # one graph for all languages
        return net(torch.cat(batches)).square().view(3, -1).mean(1)

    forms = [
        language_gradients(net, shared),
        language_gradients(net, [lambda b=b: _loss(net, b) for b in batches]),
        language_gradients(net, dict(zip(["en", "fr", "sw"], batches, strict=True)), _loss),
        language_gradients(net, one_graph()),
        language_gradients(net, list(one_graph().unbind())),
    ]
    for other in forms:
        torch.testing.assert_close(other, G, rtol=1e-12, atol=1e-15)


def test_columns_follow_the_partitions_column_order():
    net, batches = _model(), _batches()
    G = language_gradients(net, batches, _loss)
    p = per_tensor(net)
    manual = {}
    for batch in batches:
        net.zero_grad(set_to_none=True)
        _loss(net, batch).backward()
        for n, q in net.named_parameters():
            manual.setdefault(n, []).append(q.grad.reshape(-1).clone())
    for b, name in enumerate(p.names):
        assert torch.equal(G[:, p.indices(b)], torch.stack(manual[name]))


def test_tiny_llama_gradients_match_manual_backward():
    model = tiny_llama(layers=1)
    g = torch.Generator().manual_seed(3)
    batches = [torch.randint(0, 48, (1, 5), generator=g) for _ in range(2)]
    G = language_gradients(model, batches, llama_loss)
    torch.testing.assert_close(G, _manual_rows(model, batches, llama_loss), rtol=0, atol=0)


def test_unreached_parameters_and_constant_losses_give_zeros():
    net = _model()
    only_embed = net.embed(_batches(1)[0]).sum()
    G = language_gradients(net, {"en": only_embed, "xx": torch.tensor(0.5, dtype=torch.float64)})
    span = flat_parameters(net)[0]
    assert span.name == "embed.weight"
    assert bool(G[0, span.columns].abs().sum() > 0)
    assert bool((G[0, span.stop:] == 0).all())
    assert bool((G[1] == 0).all())


def test_bad_losses_name_the_language():
    net = _model()
    good = _loss(net, _batches(1)[0])
    with pytest.raises(GradientError, match="'fr'.*nan"):
        language_gradients(net, {"en": good, "fr": good * float("nan")})
    with pytest.raises(GradientError, match="'1'.*scalar"):
        language_gradients(net, [good, torch.stack([good, good])])
    with pytest.raises(GradientError, match="K = 0"):
        language_gradients(net, [])
    with pytest.raises(ValueError, match="2 language names given for K = 1"):
        language_gradients(net, [good], names=["en", "fr"])
    with pytest.raises(TypeError, match="'sw'"):
        language_gradients(net, {"sw": 1.0})


def test_a_non_finite_gradient_names_language_and_parameter():
    net = nn.Linear(2, 1, bias=False).double()
    with torch.no_grad():
        net.weight.zero_()
    ok = net(torch.ones(1, 2, dtype=torch.float64)).sum()
    bad = net.weight.sqrt().sum()          # finite loss 0, gradient 1/(2·sqrt(0)) = inf
    with pytest.raises(GradientError, match=r"'de'.*weight\[0\]"):
        language_gradients(net, [ok, bad], names=["en", "de"])


def test_unflatten_write_and_read_round_trip():
    net = _model()
    flat = torch.arange(flat_parameters(net)[-1].stop, dtype=torch.float64)
    shaped = unflatten(net, flat)
    assert [tuple(t.shape) for t in shaped.values()] == [tuple(p.shape) for p in net.parameters()]
    write_flat_grad(net, flat)
    assert torch.equal(flat_grad(net), flat)
    flat.zero_()                                       # .grad holds a copy, not a view
    assert bool(flat_grad(net)[1:].ne(0).all())
    write_flat_grad(net, torch.ones_like(flat), accumulate=True)
    assert torch.equal(flat_grad(net), torch.arange(flat.numel(), dtype=torch.float64) + 1)
    with pytest.raises(GradientError, match="D = "):
        write_flat_grad(net, flat[:-1])


def test_write_flat_grad_can_alias_the_flat_vector():
    """alias=True: every .grad is a view of its slice (DDP's gradient_as_bucket_view), so
    a change to flat shows in .grad; a parameter of another dtype gets a copy."""
    net = _model()
    flat = torch.arange(flat_parameters(net)[-1].stop, dtype=torch.float64)
    write_flat_grad(net, flat, alias=True)
    assert torch.equal(flat_grad(net), flat)
    flat.mul_(2)
    assert torch.equal(flat_grad(net), 2 * torch.arange(flat.numel(), dtype=torch.float64))
    first = next(net.parameters())
    first.data = first.data.float()  # one parameter in another dtype: copied, not viewed
    write_flat_grad(net, flat, alias=True)
    flat.zero_()
    assert bool(first.grad.ne(0).flatten()[1:].all()) and first.grad.dtype == torch.float32
    assert all(bool(p.grad.eq(0).all()) for p in list(net.parameters())[1:])
    with pytest.raises(ValueError, match="alias and accumulate"):
        write_flat_grad(net, flat, alias=True, accumulate=True)


def _per_bucket_mgda(G, partition):
    """A_P(G) without bucketwise's batching: one MGDA call per bucket."""
    out = torch.empty_like(G[0])
    for idx in partition:
        out[idx] = MGDA()(G[:, idx])
    return out


@pytest.mark.parametrize("builder", [
    lambda m: None,
    per_tensor,
    lambda m: per_module(m, depth=2),
    lambda m: ddp_buckets(m, 0.0005, 0.0002),
    lambda m: zero_buckets(m, 50, world_size=2),
    lambda m: fsdp2_units(m, Block, world_size=3),
], ids=["full", "tensor", "module", "ddp", "zero", "fsdp2"])
def test_reference_step_then_sgd_is_theta_minus_lr_times_a_p(builder):
    net, batches = _model(), _batches()
    partition = builder(net)
    G = language_gradients(net, batches, _loss)
    theta = torch.cat([p.detach().reshape(-1) for p in net.parameters()])
    lr = 0.3
    opt = torch.optim.SGD(net.parameters(), lr=lr)
    update = reference_step(net, G, MGDA(), partition)
    opt.step()
    reference = partition or Partition.single(G.shape[1])
    expected = _per_bucket_mgda(G, reference)
    torch.testing.assert_close(update, expected, rtol=1e-10, atol=1e-14)
    after = torch.cat([p.detach().reshape(-1) for p in net.parameters()])
    torch.testing.assert_close(after, theta - lr * expected, rtol=1e-10, atol=1e-14)
    # The bucket-level MGDA direction does not increase any language's loss to first order.
    assert bool(((G @ update) >= -1e-12).all())


def test_reference_step_with_mean_is_ordinary_fine_tuning():
    net, batches = _model(), _batches()
    G = language_gradients(net, batches, _loss)
    reference_step(net, G, Mean(), ddp_buckets(net))
    torch.testing.assert_close(flat_grad(net), G.mean(0), rtol=1e-14, atol=1e-16)


def test_reference_step_rejects_mismatched_shapes_and_partitions():
    net, batches = _model(), _batches()
    G = language_gradients(net, batches, _loss)
    with pytest.raises(GradientError, match="K × D"):
        reference_step(net, G[:, 1:], MGDA())
    with pytest.raises(PartitionError, match="covers"):
        reference_step(net, G, MGDA(), Partition.single(G.shape[1] + 1))
    other = Stack(vocab=13, width=6, depth=2, out=4)
    reference_step(net, G, MGDA(), per_tensor(other))   # same architecture: accepted
    p = per_tensor(nn.Sequential(nn.Linear(G.shape[1], 1, bias=False)))
    with pytest.raises(PartitionError, match="different model"):
        reference_step(net, G, MGDA(), p)
