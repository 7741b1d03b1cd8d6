"""zero_buckets: the IPG filling rule, rank slicing, and (if installed) real DeepSpeed."""

import pytest
import torch
from hypothesis import given
from hypothesis import strategies as st
from torch import nn

from refmoo.partitions import flat_parameters, gradient_ready_order, zero_buckets
from refmoo.partitions.flat import ParamSpan
from refmoo.partitions.zero import ipg_buckets

from .models import Stack, assert_valid, process_group, tiny_llama


@given(st.lists(st.integers(1, 50), min_size=1, max_size=20), st.integers(1, 80))
def test_ipg_buckets_are_the_greedy_fill_deepspeed_describes(numels, size):
    spans = [ParamSpan(str(i), 0, n, (n,)) for i, n in enumerate(numels)]
    buckets = ipg_buckets(spans, size)
    assert [s.name for b in buckets for s in b] == [s.name for s in spans]
    for b in buckets:
        # Never over the size, except a parameter larger than it, which travels alone.
        assert sum(s.numel for s in b) <= size or len(b) == 1
    for b, nxt in zip(buckets, buckets[1:], strict=False):
        # A bucket is only closed when the next parameter would overflow it.
        assert sum(s.numel for s in b) + nxt[0].numel > size


def test_buckets_fill_in_reverse_order_for_stage_2_and_forward_for_stage_1():
    net = Stack()
    names = [s.name for s in flat_parameters(net)]
    two = zero_buckets(net, reduce_bucket_size=40)
    one = zero_buckets(net, reduce_bucket_size=40, stage=1)
    assert_valid(two, net)
    assert_valid(one, net)
    assert [n for lay in two.layout for n in lay.params] == names[::-1]
    assert [n for lay in one.layout for n in lay.params] == names
    # The default size holds a whole small model in one bucket.
    assert len(zero_buckets(net)) == 1


def _deepspeed_owner_slices(flat_dim: int, world_size: int) -> list[torch.Tensor]:
    # Independent of refmoo: build DeepSpeed's padded flat buffer of column ids and
    # cut it into W equal partitions, as get_data_parallel_partitions does.
    align = 2 * world_size
    pad = (-flat_dim) % align
    buffer = torch.cat([torch.arange(flat_dim), torch.full((pad,), -1)])
    return list(buffer.view(world_size, -1))


@pytest.mark.parametrize("world_size", [1, 2, 3, 5])
@pytest.mark.parametrize("size", [7, 60, 10_000])
def test_rank_slices_are_the_bucket_cut_by_owner_partitions(world_size, size):
    net = Stack(vocab=7, width=5, depth=2, out=3)
    whole = zero_buckets(net, reduce_bucket_size=size)
    sliced = zero_buckets(net, reduce_bucket_size=size, world_size=world_size)
    assert_valid(sliced, net)
    owners = _deepspeed_owner_slices(whole.dim, world_size)
    expected = []
    for b, lay in enumerate(whole.layout):
        cols = whole.indices(b)
        for r in range(world_size):
            mine = cols[torch.isin(cols, owners[r])]
            if mine.numel():
                expected.append((lay.group, r, mine))
    got = [(lay.group, lay.rank, sliced.indices(b)) for b, lay in enumerate(sliced.layout)]
    assert [(g, r) for g, r, _ in got] == [(g, r) for g, r, _ in expected]
    assert all(torch.equal(a, e) for (_, _, a), (_, _, e) in zip(got, expected, strict=True))
    assert sliced.refines(whole)


def test_llama_zero_buckets_trace_back_to_parameters():
    model = tiny_llama(layers=2)
    p = zero_buckets(model, reduce_bucket_size=1500, world_size=2)
    assert_valid(p, model)
    assert {lay.rank for lay in p.layout} == {0, 1}
    first = p.layout[0]
    assert first.params[0] == "lm_head.weight"
    assert p.describe(0)[0][0] == "lm_head.weight"


def test_bad_arguments_are_rejected():
    net = nn.Linear(2, 2)
    with pytest.raises(ValueError, match="stage"):
        zero_buckets(net, stage=3)
    with pytest.raises(ValueError, match="reduce_bucket_size"):
        zero_buckets(net, reduce_bucket_size=0)
    with pytest.raises(ValueError, match="world_size"):
        zero_buckets(net, world_size=0)


def test_matches_real_deepspeed_stage_2(monkeypatch):
    """Optional: DeepSpeed is not a dependency. Runs its ZeRO-2 optimizer on CPU as
    rank 0 of a fake 3-rank group and reads back the buckets it reduces and the
    rank partitions it cuts them into."""
    monkeypatch.setenv("DS_ACCELERATOR", "cpu")
    deepspeed = pytest.importorskip("deepspeed")
    from deepspeed.runtime.zero.stage_1_and_2 import DeepSpeedZeroOptimizer

    world = 3
    for k, v in dict(RANK="0", LOCAL_RANK="0", WORLD_SIZE=str(world),
                     MASTER_ADDR="127.0.0.1", MASTER_PORT="29511").items():
        monkeypatch.setenv(k, v)
    torch.manual_seed(0)
    net = nn.Sequential(nn.Embedding(20, 8), nn.Linear(8, 16), nn.LayerNorm(16),
                        nn.Linear(16, 16), nn.Linear(16, 3))
    x = torch.randint(0, 20, (4,))
    order = gradient_ready_order(net, lambda: net(x).square().mean())
    name = {p: n for n, p in net.named_parameters()}
    reduced = []
    original = DeepSpeedZeroOptimizer.reduce_ipg_grads

    def spy(self, comm_dtype=None):
        for bucket in self.ipg_buckets.values():
            if bucket.params:
                reduced.append(tuple(name[self.bit16_groups[i][j]] for i, j, _ in bucket.params))
        return original(self, comm_dtype)

    monkeypatch.setattr(DeepSpeedZeroOptimizer, "reduce_ipg_grads", spy)
    cfg = {"train_micro_batch_size_per_gpu": 1, "gradient_clipping": 0,
           "zero_allow_untested_optimizer": True,
           "zero_optimization": {"stage": 2, "reduce_bucket_size": 200},
           "optimizer": {"type": "SGD", "params": {"lr": 0.1}}}
    with process_group("fake", world_size=world):
        engine, *_ = deepspeed.initialize(model=net, model_parameters=net.parameters(),
                                          config=cfg)
        engine.backward(engine(x).square().mean())
        opt = engine.optimizer
        owner_slices = {}   # (param name, rank) -> (start, stop) inside the parameter
        for p in opt.bit16_groups[0]:
            pid = opt.get_param_id(p)
            starts = sorted((opt.grad_start_offset[0][r][pid], r)
                            for r in opt.param_to_partition_ids[0][pid])
            for (lo, r), (hi, _) in zip(starts, [*starts[1:], (p.numel(), None)], strict=True):
                owner_slices[name[p], r] = (lo, hi)

    ours = zero_buckets(net, reduce_bucket_size=200, ready_order=order)
    assert [lay.params for lay in ours.layout] == reduced
    sliced = zero_buckets(net, reduce_bucket_size=200, world_size=world, ready_order=order)
    got = {(piece.name, lay.rank): (piece.local.start, piece.local.stop)
           for lay in sliced.layout for piece in lay.pieces}
    assert got == owner_slices
