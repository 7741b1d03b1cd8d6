import pytest
import torch
from torch import nn

from refmoo.partitions import (
    Partition,
    PartitionError,
    flat_parameters,
    per_module,
    per_tensor,
    trainable_parameters,
)

from .models import Stack, assert_valid, tiny_llama


def test_flat_order_is_registration_order_row_major():
    net = Stack()
    spans = flat_parameters(net)
    names = [n for n, p in net.named_parameters()]
    assert [s.name for s in spans] == names
    flat = torch.cat([p.detach().reshape(-1) for p in net.parameters()])
    for s, (_, p) in zip(spans, net.named_parameters(), strict=True):
        assert torch.equal(flat[s.columns].reshape(s.shape), p.detach())
    assert all(a.stop == b.offset for a, b in zip(spans, spans[1:], strict=False))


def test_frozen_and_tied_parameters_are_left_out_once():
    net = Stack()
    net.blocks[0].lin.weight.requires_grad_(False)
    tied = nn.Sequential(nn.Embedding(5, 3), nn.Linear(3, 5, bias=False))
    tied[1].weight = tied[0].weight
    assert [s.name for s in flat_parameters(tied)] == ["0.weight"]
    assert "blocks.0.lin.weight" not in [s.name for s in flat_parameters(net)]
    assert len(trainable_parameters(net)) == len(flat_parameters(net))


def test_per_tensor_has_one_bucket_per_parameter():
    net = Stack()
    p = per_tensor(net)
    assert_valid(p, net)
    assert p.names == [n for n, _ in net.named_parameters()]
    assert p.sizes == [q.numel() for q in net.parameters()]
    assert p.is_contiguous
    assert p.describe(1) == [("blocks.0.scale", slice(66, 72))]


def test_per_module_default_groups_by_owning_module():
    net = Stack()
    p = per_module(net)
    assert_valid(p, net)
    assert p.names[:4] == ["embed", "blocks.0", "blocks.0.lin", "blocks.0.norm"]
    assert p.layout[2].params == ("blocks.0.lin.weight", "blocks.0.lin.bias")


def test_per_module_depth_gives_one_bucket_per_llama_layer():
    model = tiny_llama(layers=3)
    p = per_module(model, depth=3)
    assert_valid(p, model)
    assert p.names == ["model.embed_tokens", "model.layers.0", "model.layers.1",
                       "model.layers.2", "model.norm", "lm_head"]
    layer1 = dict(model.named_modules())["model.layers.1"]
    assert p.sizes[2] == sum(q.numel() for q in layer1.parameters())
    # A coarser depth merges: every layer under "model".
    assert per_module(model, depth=1).names == ["model", "lm_head"]


def test_per_module_prefixes_take_the_longest_whole_component_match():
    net = nn.Sequential(*[nn.Linear(2, 2) for _ in range(11)])
    p = per_module(net, prefixes=["1", "10"])
    assert_valid(p, net)
    assert p.names == ["<other>", "1", "10"]
    assert p.layout[1].params == ("1.weight", "1.bias")     # "10" is not under "1"
    assert p.sizes == [6 * 9, 6, 6]
    nested = per_module(Stack(), prefixes=["blocks", "blocks.1"])
    assert nested.names == ["<other>", "blocks", "blocks.1"]


def test_root_parameters_get_their_own_bucket():
    net = nn.Linear(3, 2)
    assert per_module(net).names == ["<root>"]


def test_per_module_rejects_bad_arguments():
    net = Stack()
    with pytest.raises(ValueError, match="match no trainable"):
        per_module(net, prefixes=["blocks.7"])
    with pytest.raises(ValueError, match="either depth or prefixes"):
        per_module(net, depth=1, prefixes=["embed"])
    with pytest.raises(ValueError, match="depth"):
        per_module(net, depth=0)


def test_describe_needs_a_layout_and_layout_must_match_sizes():
    with pytest.raises(PartitionError, match="not built from a model"):
        Partition.from_sizes([2, 3]).describe(0)
    assert Partition.from_sizes([2, 3]).layout is None
    lay = per_tensor(nn.Linear(2, 2)).layout
    with pytest.raises(PartitionError, match="layout sizes"):
        Partition([range(0, 3), range(3, 6)], layout=lay)


def test_a_model_without_trainable_elements_is_an_error():
    net = nn.Linear(2, 2).requires_grad_(False)
    with pytest.raises(ValueError, match="D = 0"):
        per_tensor(net)


def test_model_partitions_pickle_with_their_layout():
    # Simulator ranks receive partitions through (forkserver) pickling.
    import pickle

    from refmoo.partitions import ddp_buckets, fsdp2_units, zero_buckets

    net = Stack()
    for p in [per_module(net, depth=2), ddp_buckets(net, 0.0005, 0.0005),
              zero_buckets(net, 30, world_size=2), fsdp2_units(net, ["blocks.0"], 3)]:
        q = pickle.loads(pickle.dumps(p))
        assert q == p and q.names == p.names and q.layout == p.layout
        assert q.describe(len(q) - 1) == p.describe(len(p) - 1)
