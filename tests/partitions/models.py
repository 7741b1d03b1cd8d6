"""Small models and helpers shared by the partition-builder tests."""

from __future__ import annotations

import contextlib

import pytest
import torch
from torch import nn

from refmoo.partitions import Partition, flat_parameters


class Block(nn.Module):
    """Owns a parameter of its own next to children, so that FSDP2's post-order
    (children first) differs from registration order."""

    def __init__(self, width: int) -> None:
        super().__init__()
        self.scale = nn.Parameter(torch.ones(width))
        self.lin = nn.Linear(width, width)
        self.norm = nn.LayerNorm(width)

    def forward(self, x):
        return self.norm(torch.tanh(self.lin(x * self.scale)))


class Stack(nn.Module):
    """Embedding, blocks, head: the shape of an LM without its cost."""

    def __init__(self, vocab: int = 11, width: int = 6, depth: int = 3, out: int = 5) -> None:
        super().__init__()
        self.embed = nn.Embedding(vocab, width)
        self.blocks = nn.ModuleList(Block(width) for _ in range(depth))
        self.head = nn.Linear(width, out)

    def forward(self, tokens):
        x = self.embed(tokens)
        for blk in self.blocks:
            x = blk(x)
        return self.head(x)


class Reversed(nn.Module):
    """Calls its layers in reverse registration order: backward then makes the
    *first registered* layer's gradients ready first."""

    def __init__(self, sizes=(64, 300, 200, 90)) -> None:
        super().__init__()
        pairs = zip(sizes[1:], sizes[:-1], strict=False)
        self.layers = nn.ModuleList(nn.Linear(a, b) for a, b in pairs)

    def forward(self, x):
        for layer in reversed(self.layers):
            x = torch.relu(layer(x))
        return x


def tiny_llama(layers: int = 2, tie: bool = False):
    transformers = pytest.importorskip("transformers")
    cfg = transformers.LlamaConfig(
        vocab_size=48, hidden_size=16, intermediate_size=24, num_hidden_layers=layers,
        num_attention_heads=4, num_key_value_heads=2, max_position_embeddings=16,
        tie_word_embeddings=tie)
    torch.manual_seed(0)
    return transformers.LlamaForCausalLM(cfg)


def llama_loss(model, tokens):
    return model(input_ids=tokens, labels=tokens).loss


def assert_valid(partition: Partition, model: nn.Module) -> None:
    """Every column once, no empty bucket, and the layout equals the columns."""
    spans = flat_parameters(model)
    assert partition.dim == spans[-1].stop
    counts = torch.bincount(partition.order, minlength=partition.dim)
    assert bool((counts == 1).all())
    assert all(s > 0 for s in partition.sizes)
    assert partition.layout is not None and len(partition.layout) == len(partition)
    by_name = {s.name: s for s in spans}
    for b, lay in enumerate(partition.layout):
        assert torch.equal(partition.indices(b), lay.columns())
        for piece in lay.pieces:
            span = by_name[piece.name]
            assert span.offset == piece.param_offset
            assert span.offset <= piece.start < piece.stop <= span.stop


@contextlib.contextmanager
def process_group(backend: str, world_size: int = 1, rank: int = 0):
    """A default process group inside this process; skips if one already exists."""
    import torch.distributed as dist

    if not dist.is_available():
        pytest.skip("torch.distributed is not available")
    if dist.is_initialized():
        pytest.skip("another default process group is alive in this process")
    if backend == "fake":
        fake_pg = pytest.importorskip("torch.testing._internal.distributed.fake_pg")
        store = fake_pg.FakeStore()
    else:
        store = dist.HashStore()
    dist.init_process_group(backend, store=store, rank=rank, world_size=world_size)
    try:
        yield
    finally:
        dist.destroy_process_group()
