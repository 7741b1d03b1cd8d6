"""fsdp2_units against torch.chunk and against real fully_shard shards."""

import pytest
import torch
from torch import nn

from refmoo.partitions import flat_parameters, fsdp2_units, per_module
from refmoo.partitions.fsdp import chunk_rows

from .models import Block, Stack, assert_valid, process_group, tiny_llama


@pytest.mark.parametrize("n0", [0, 1, 4, 5, 7, 12])
@pytest.mark.parametrize("world_size", [1, 2, 3, 4, 8])
def test_chunk_rows_are_torch_chunk_rows(n0, world_size):
    rows = torch.arange(n0)
    chunks = torch.chunk(rows, world_size) if n0 else ()
    for r in range(world_size):
        lo, hi = chunk_rows(n0, world_size, r)
        expected = chunks[r] if r < len(chunks) else torch.empty(0, dtype=torch.long)
        assert torch.equal(rows[lo:hi], expected)


def _numbered(model):
    """Every parameter's elements set to their own flat column index."""
    with torch.no_grad():
        for s, p in zip(flat_parameters(model), model.parameters(), strict=True):
            p.copy_(torch.arange(s.offset, s.stop, dtype=p.dtype).reshape(s.shape))
    return model


@pytest.mark.parametrize("world_size", [1, 2, 3, 4])
def test_rank_buckets_are_torch_chunks_of_each_unit_parameter(world_size):
    net = _numbered(Stack(vocab=9, width=5, depth=2, out=3).double())
    p = fsdp2_units(net, Block, world_size)
    assert_valid(p, net)
    modules = dict(net.named_modules())
    for b, lay in enumerate(p.layout):
        params = [dict(net.named_parameters())[n] for n in lay.params]
        chunks = [torch.chunk(q.detach(), world_size, dim=0) for q in params]
        expected = torch.cat([c[lay.rank].reshape(-1) for c in chunks if lay.rank < len(c)])
        assert torch.equal(p.indices(b), expected.long())
        if lay.group != "<root>":
            unit = modules[lay.group]
            assert set(lay.params) <= {f"{lay.group}.{n}" for n, _ in unit.named_parameters()}


def test_units_follow_fsdp2_post_order_and_the_root_takes_the_rest():
    net = Stack(depth=2)
    p = fsdp2_units(net, ["blocks.0", "blocks.1"], world_size=1)
    assert p.names == ["<root>@r0", "blocks.0@r0", "blocks.1@r0"]
    # Children before the parent's own parameter: scale comes last.
    assert p.layout[1].params == ("blocks.0.lin.weight", "blocks.0.lin.bias",
                                  "blocks.0.norm.weight", "blocks.0.norm.bias", "blocks.0.scale")
    assert p.layout[0].params == ("embed.weight", "head.weight", "head.bias")
    # At W = 1 the units are per_module buckets at the block level, reordered.
    assert sorted(p.sizes) == sorted(per_module(net, prefixes=["blocks.0", "blocks.1"]).sizes)


def test_nested_units_claim_their_own_parameters():
    net = Stack(depth=1)
    p = fsdp2_units(net, ["blocks.0", "blocks.0.lin"], world_size=1)
    by_unit = {lay.group: lay.params for lay in p.layout}
    assert by_unit["blocks.0.lin"] == ("blocks.0.lin.weight", "blocks.0.lin.bias")
    assert "blocks.0.lin.weight" not in by_unit["blocks.0"]


def test_ranks_without_rows_are_dropped_not_empty():
    net = nn.Sequential(nn.Linear(3, 2), nn.LayerNorm(2))
    p = fsdp2_units(net, ["1"], world_size=4)
    assert_valid(p, net)
    assert [(lay.group, lay.rank) for lay in p.layout] == [
        ("<root>", 0), ("<root>", 1), ("1", 0), ("1", 1)]


def test_bad_units_and_scalar_parameters_are_rejected():
    net = Stack()
    with pytest.raises(ValueError, match="no submodule named"):
        fsdp2_units(net, ["blocks.9"], 2)
    with pytest.raises(ValueError, match="root module"):
        fsdp2_units(net, [""], 2)
    with pytest.raises(ValueError, match="no submodule of class"):
        fsdp2_units(net, nn.Conv1d, 2)
    with pytest.raises(ValueError, match="world_size"):
        fsdp2_units(net, Block, 0)
    scalar = nn.Module()
    scalar.t = nn.Parameter(torch.tensor(1.0))
    with pytest.raises(ValueError, match="0-d"):
        fsdp2_units(scalar, [], 2)


def _real_shards(model, unit_names, world_size, rank):
    """Flat column ids of each unit's rank-``rank`` shard, read from real FSDP2 state."""
    fsdp = pytest.importorskip("torch.distributed.fsdp")
    from torch.distributed.device_mesh import init_device_mesh

    _numbered(model)
    modules = dict(model.named_modules())
    with process_group("fake", world_size=world_size, rank=rank):
        mesh = init_device_mesh("cpu", (world_size,))
        for n in unit_names:          # bottom-up, as FSDP2 requires
            fsdp.fully_shard(modules[n], mesh=mesh)
        fsdp.fully_shard(model, mesh=mesh)
        shards = {}
        for n in ["<root>", *unit_names]:
            group = (model if n == "<root>" else modules[n])._get_fsdp_state()._fsdp_param_group
            parts = [fp._sharded_param_data[:fp.sharded_size.numel()] for fp in group.fsdp_params]
            shards[n] = torch.cat(parts).long() if parts else torch.empty(0, dtype=torch.long)
    return shards


@pytest.mark.parametrize("world_size, rank", [(2, 0), (2, 1), (3, 2)])
def test_shards_equal_real_fully_shard(world_size, rank):
    units = ["blocks.0", "blocks.1"]
    ours = fsdp2_units(Stack(vocab=9, width=5, depth=2, out=3).double(), units, world_size)
    real = _real_shards(Stack(vocab=9, width=5, depth=2, out=3).double(), units,
                        world_size, rank)
    mine = {lay.group: ours.indices(b) for b, lay in enumerate(ours.layout) if lay.rank == rank}
    for unit, cols in real.items():
        assert torch.equal(mine.get(unit, torch.empty(0, dtype=torch.long)), cols), unit


def test_llama_decoder_layers_as_units_match_real_fully_shard():
    transformers = pytest.importorskip("transformers")
    layer_cls = transformers.models.llama.modeling_llama.LlamaDecoderLayer
    model = tiny_llama(layers=2).double()
    p = fsdp2_units(model, layer_cls, world_size=2)
    assert_valid(p, model)
    assert {lay.group for lay in p.layout} == {"<root>", "model.layers.0", "model.layers.1"}
    real = _real_shards(tiny_llama(layers=2).double(), ["model.layers.0", "model.layers.1"], 2, 1)
    mine = {lay.group: p.indices(b) for b, lay in enumerate(p.layout) if lay.rank == 1}
    assert real.keys() == mine.keys()
    assert all(torch.equal(mine[u], real[u]) for u in real)
