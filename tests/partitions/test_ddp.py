"""ddp_buckets against torch's own bucketing function and a real DDP reducer."""

import pytest
import torch
import torch.distributed as dist
from hypothesis import given, settings
from hypothesis import strategies as st
from torch import nn

from refmoo.partitions import ddp_buckets, flat_parameters, gradient_ready_order
from refmoo.partitions.ddp import MIB, assign_by_size
from refmoo.partitions.flat import ParamSpan

from .models import Reversed, Stack, assert_valid, llama_loss, process_group, tiny_llama

DTYPES = [torch.float32, torch.float64, torch.float16]


def torch_assignment(tensors, limits, sparse=None, indices=None):
    buckets, _ = dist._compute_bucket_assignment_by_size(
        tensors, limits, sparse or [False] * len(tensors), indices or [])
    return [list(b) for b in buckets]


@settings(max_examples=60)
@given(st.lists(st.tuples(st.integers(0, 40), st.sampled_from(DTYPES), st.booleans()),
                min_size=1, max_size=14),
       st.integers(1, 120), st.integers(1, 300), st.randoms(use_true_random=False))
def test_assignment_rule_equals_torch_on_random_tensors(specs, first, cap, rnd):
    # Tensors arrive in a shuffled "ready" order, as after DDP's rebuild.
    order = list(range(len(specs)))
    rnd.shuffle(order)
    tensors = [torch.empty(specs[i][0], dtype=specs[i][1]) for i in order]
    sparse = [s[2] for s in specs]
    expected = torch_assignment(tensors, [first, cap], sparse, order)
    spans = [ParamSpan(str(i), 0, specs[i][0], (specs[i][0],), specs[i][1]) for i in order]
    got = assign_by_size(spans, [first, cap], {str(i) for i, s in enumerate(specs) if s[2]})
    got = [[int(s.name) for s in b] for b in got]
    if len({s[1] for s in specs}) == 1:
        assert got == expected
    else:
        # c10d flushes the still-open buckets of several dtypes in hash-map order.
        assert sorted(got) == sorted(expected)


def test_the_default_caps_are_torchs():
    assert dist._DEFAULT_FIRST_BUCKET_BYTES == 1 * MIB
    from torch.nn.parallel.distributed import _DEFAULT_BUCKET_CAP_MB
    assert _DEFAULT_BUCKET_CAP_MB == 25


def test_a_bucket_closes_when_it_reaches_the_limit_exactly():
    tensors = [torch.empty(4) for _ in range(5)]          # 16 bytes each
    spans = [ParamSpan(str(i), 0, 4, (4,)) for i in range(5)]
    expected = torch_assignment(tensors, [16, 32], indices=list(range(5)))
    assert expected == [[0], [1, 2], [3, 4]]
    assert [[int(s.name) for s in b] for b in assign_by_size(spans, [16, 32])] == expected


@pytest.mark.parametrize("cap_mb, first_mb", [(25, 1), (0.002, 0.0005), (0.005, None)])
def test_ddp_buckets_equal_torch_in_reverse_registration_order(cap_mb, first_mb):
    net = Stack(vocab=40, width=24)
    params = [p for p in net.parameters()]
    rev = list(range(len(params)))[::-1]
    cap = int(cap_mb * MIB)
    first = cap if first_mb is None else int(first_mb * MIB)
    expected = torch_assignment([params[i] for i in rev], [first, cap], indices=rev)
    p = ddp_buckets(net, cap_mb, first_mb)
    assert_valid(p, net)
    names = [s.name for s in flat_parameters(net)]
    assert [[names.index(n) for n in lay.params] for lay in p.layout] == expected
    assert len(p) > 1 or cap_mb == 25


def _rebuilt_ddp_buckets(model, loss_fn, bucket_cap_mb=None):
    """Parameter names per bucket, as a real DDP reducer holds them at step 1."""
    name = {p: n for n, p in model.named_parameters()}
    seen: dict[int, list] = {}
    step = [0]

    def hook(_, bucket):
        seen.setdefault(step[0], []).append(
            (bucket.index(), tuple(name[p] for p in bucket.parameters())))
        fut = torch.futures.Future()
        fut.set_result(bucket.buffer())
        return fut

    ddp = nn.parallel.DistributedDataParallel(model, bucket_cap_mb=bucket_cap_mb)
    ddp.register_comm_hook(None, hook)
    for step[0] in range(2):
        loss_fn(ddp).backward()
    assert [i for i, _ in seen[1]] == list(range(len(seen[1])))
    return [params for _, params in seen[1]], len(seen[0])


def test_real_ddp_default_caps_with_observed_ready_order():
    torch.manual_seed(0)
    net = Stack(vocab=300, width=300, depth=3)       # ~3.6 MB: the 1 MiB first bucket matters
    tokens = torch.randint(0, 300, (2, 3))
    loss = lambda m: m(tokens).square().mean()       # noqa: E731
    order = gradient_ready_order(net, lambda: loss(net))
    assert order != [s.name for s in flat_parameters(net)][::-1]   # LayerNorm: weight first
    with process_group("gloo"):
        real, step0_buckets = _rebuilt_ddp_buckets(net, loss)
    assert step0_buckets == 1                          # before the rebuild: one bucket
    p = ddp_buckets(net, ready_order=order)
    assert [lay.params for lay in p.layout] == real
    assert len(real) == 2


def test_real_ddp_explicit_cap_on_an_out_of_order_model():
    torch.manual_seed(0)
    net = Reversed()
    x = torch.randn(2, 90)
    loss = lambda m: m(x).sum()                        # noqa: E731
    with process_group("gloo"):
        real, _ = _rebuilt_ddp_buckets(net, loss, bucket_cap_mb=0.1)
    # DDP(bucket_cap_mb=X) uses X for the first bucket as well.
    p = ddp_buckets(net, 0.1, first_bucket_cap_mb=0.1,
                    ready_order=gradient_ready_order(net, lambda: loss(net)))
    assert [lay.params for lay in p.layout] == real and len(real) == 2
    # Assuming reverse registration order here gets the buckets wrong: the
    # layers are called in reverse, so their gradients are ready in forward order.
    assert [lay.params for lay in ddp_buckets(net, 0.1, 0.1).layout] != real


def test_real_ddp_on_a_tiny_llama():
    model = tiny_llama(layers=2)
    tokens = torch.randint(0, 48, (2, 6), generator=torch.Generator().manual_seed(1))
    loss = lambda m: llama_loss(m, tokens)             # noqa: E731
    order = gradient_ready_order(model, lambda: loss(model))
    with process_group("gloo"):
        real, _ = _rebuilt_ddp_buckets(model, loss, bucket_cap_mb=0.004)
    p = ddp_buckets(model, 0.004, 0.004, ready_order=order)
    assert_valid(p, model)
    assert [lay.params for lay in p.layout] == real and len(real) > 4


def test_sparse_embeddings_get_their_own_bucket():
    net = nn.Sequential(nn.Embedding(10, 4, sparse=True), nn.Linear(4, 4))
    p = ddp_buckets(net)
    assert [lay.params for lay in p.layout] == [("0.weight",), ("1.bias", "1.weight")]


def test_bad_ready_order_and_caps_are_rejected():
    net = nn.Linear(2, 2)
    with pytest.raises(ValueError, match="missing"):
        ddp_buckets(net, ready_order=["weight"])
    with pytest.raises(ValueError, match="unknown"):
        ddp_buckets(net, ready_order=["weight", "bias", "nope"])
    with pytest.raises(ValueError, match="positive"):
        ddp_buckets(net, bucket_cap_mb=0)
