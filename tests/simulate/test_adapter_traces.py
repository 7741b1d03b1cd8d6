"""The adapters' own traces (``trace=AdapterTrace(...)``) of real gloo runs verify end to
end, and a reduction broken inside the engine's collective is caught and named.

Each engine trains the small mlp workload at W = 2 three times in one spawn:
untraced, traced, and traced with language 1's reduction broken in this rank
process. The bug is injected below the adapter, in ``torch.distributed`` itself
(the collective every engine ends in), so the trace must have recorded the
values the engine really reduced, not a recomputation.
"""

import pytest
import torch
import torch.distributed as dist

from refmoo import MGDA, Partition, PCGrad, zero_buckets
from refmoo.trace import Trace, TraceWriter, format_report, verify
from simulate.adapters import harness
from simulate.adapters.deepspeed import ZeroMOOOptimizer
from simulate.adapters.tracing import AdapterTrace, Tracer
from simulate.config import RunConfig
from simulate.launch import RankInfo, spawn
from simulate.schemes import build_partition
from simulate.workload import WorkloadConfig, build_model, probe_loss

LANGUAGES = ["en", "de", "sw"]
BROKEN = 1  # "de": both ranks hold data for it (batch 2), so each local is nonzero
STEPS = 2
WL = WorkloadConfig(model="mlp", width=16, layers=2, vocab=32, seq_len=6, batch=(3, 2, 1))
# engine → (harness function, strategy of its reference, partition, how language 1 is broken)
ENGINES = {
    "ddp": ("train_ddp", "bucket-replicated", "ddp:0.002:0.002", "divided"),
    "fsdp2": ("train_fsdp2", "bucket", "fsdp2", "not reduced"),
    "deepspeed": ("train_deepspeed", "bucket", "zero:600", "divided"),
}


def _config(engine: str) -> RunConfig:
    _, strategy, partition, _ = ENGINES[engine]
    return RunConfig(strategy=strategy, aggregator="pcgrad", partition=partition,
                     world_size=2, steps=STEPS, workload=WL)


# -- the injected bug, in the rank process ---------------------------------------
_current = [None]  # the language whose loss ran last


def _tag_languages() -> None:
    real = harness.language_losses

    def tagged(*args, **kwargs):
        def tag(k, loss):
            def run():
                _current[0] = k
                return loss()
            return run
        return [f if f is None else tag(k, f) for k, f in enumerate(real(*args, **kwargs))]

    harness.language_losses = tagged


def _all_reduce_divided(real, tensor, op=dist.ReduceOp.SUM, group=None, async_op=False):
    work = real(tensor=tensor, op=op, group=group, async_op=async_op)
    if work is not None:
        work.wait()  # then the future's value is this tensor, divided below
    tensor.div_(dist.get_world_size(group))
    return work


def _reduce_scatter_not_reduced(real, output, input, op=dist.ReduceOp.SUM, group=None,
                                async_op=False):
    W, r = dist.get_world_size(group), dist.get_rank(group)
    output.copy_(input.view(W, -1)[r])  # this rank's own chunk: no reduction at all


def _break_language(k: int, how: str) -> None:
    """From now on this process's reductions of language k are wrong."""
    _tag_languages()
    name, wrong = (("all_reduce", _all_reduce_divided) if how == "divided" else
                   ("reduce_scatter_single", _reduce_scatter_not_reduced))
    real = getattr(dist, name)

    def collective(*args, **kwargs):
        if _current[0] != k:
            return real(*args, **kwargs)
        return wrong(real, *args, **kwargs)

    setattr(dist, name, collective)


def _three_runs(info: RankInfo, engine: str, right: str, wrong: str) -> dict:
    fn_name, *_, how = ENGINES[engine]
    cfg = _config(engine)
    fn = getattr(harness, fn_name)
    plain, traced = fn(info, [cfg, cfg], [None, AdapterTrace(right, "pcgrad",
                                                               languages=LANGUAGES)])
    _break_language(BROKEN, how)
    fn(info, [cfg], [AdapterTrace(wrong, "pcgrad", languages=LANGUAGES)])
    return {"plain": plain["params"], "traced": traced["params"]}


def _run(engine: str, tmp_path):
    right, wrong = tmp_path / "right", tmp_path / "wrong"
    out = spawn(_three_runs, 2, (engine, str(right), str(wrong)), timeout_s=300)
    # Tracing only copies values: same operations on the same inputs, so bitwise.
    assert torch.equal(out[0]["plain"], out[0]["traced"])
    return verify(right), verify(wrong)


@pytest.mark.slow
@pytest.mark.parametrize("engine", list(ENGINES))
def test_adapter_trace_verifies_and_names_a_broken_reduction(engine, tmp_path):
    if engine == "deepspeed":
        pytest.importorskip("deepspeed", reason="optional: pip install -e .[deepspeed]")
    good, bad = _run(engine, tmp_path)
    cfg = _config(engine)
    model = build_model(WL)
    P, _ = build_partition(cfg.partition, model, 2, probe_loss(WL, model))
    assert torch.equal(Trace(tmp_path / "right").partition.order, P.order)
    M = len(P)
    assert M > 1

    # The correct run: every bucket of every step aggregated and reduced as the
    # reference says, from every rank's locals.
    assert good.ok, format_report(good)
    assert not good.incomplete and not good.locals_incomplete
    assert sorted((c.step, c.bucket) for c in good.checks) == \
        [(s, b) for s in range(STEPS) for b in range(M)]
    assert len(good.reductions) == STEPS * M and all(r.ok for r in good.reductions)

    # The broken one: it aggregated consistently what it reduced, but language 1's
    # reduction fails in every bucket of every step, named with the ranks that hold it.
    assert all(c.ok for c in bad.checks) and not bad.ok
    failed = [r for r in bad.reductions if not r.ok]
    assert sorted((r.step, r.bucket) for r in failed) == \
        [(s, b) for s in range(STEPS) for b in range(M)]
    assert all(r.failed_languages == [LANGUAGES[BROKEN]] for r in failed)
    for r in failed:
        holders = [0] if engine == "ddp" else [P.layout[r.bucket].rank]
        assert r.reduced_by == holders, (r.bucket, r.reduced_by)
        if ENGINES[engine][3] == "divided":
            assert r.diagnosis == (f"language {LANGUAGES[BROKEN]!r}: reduced = 0.5 × Σ locals "
                                   "(divided by W = 2 once more)")
        else:
            assert r.diagnosis == (f"language {LANGUAGES[BROKEN]!r}: reduced equals rank "
                                   f"{holders[0]}'s local (not reduced?)")


def _gram_traced(info: RankInfo, directory: str) -> None:
    from torch.distributed.device_mesh import init_device_mesh
    from torch.distributed.fsdp import fully_shard

    from refmoo import fsdp2_units
    from simulate.adapters.fsdp2 import FSDP2GramMOO
    from simulate.workload import block_names, language_losses

    W, model = info.world_size, build_model(WL)
    units = block_names(model)
    shards = fsdp2_units(model, units, W)
    mesh = init_device_mesh("cpu", (W,))
    modules = dict(model.named_modules())
    for name in units:
        fully_shard(modules[name], mesh=mesh)
    fully_shard(model, mesh=mesh)
    moo = FSDP2GramMOO(model, units, MGDA(), shards, Partition.single(shards.dim), 3,
                       info.rank, W, trace=AdapterTrace(directory, "mgda"))
    optimizer = torch.optim.SGD(model.parameters(), lr=0.1)
    for step in range(STEPS):
        optimizer.zero_grad(set_to_none=True)
        moo.backward(language_losses(WL, model, step, info.rank, W, zero_if_empty=True))
        moo.finish()
        optimizer.step()


@pytest.mark.slow
def test_fsdp2_gram_trace_of_the_full_vector_verifies(tmp_path):
    # Full-vector MGDA from partial Grams: no rank holds the bucket, each writes its
    # shards' reduced values and direction, and verify assembles the one bucket.
    spawn(_gram_traced, 2, (str(tmp_path),), timeout_s=120)
    report = verify(tmp_path)
    assert report.ok, format_report(report)
    assert [(c.step, c.bucket) for c in report.checks] == [(s, 0) for s in range(STEPS)]
    assert [(r.step, r.ok, r.reduced_by) for r in report.reductions] == \
        [(s, True, [0, 1]) for s in range(STEPS)]


# -- the options, without spawning ------------------------------------------------

def test_adapter_trace_options_that_contradict_the_adapter_are_refused(tmp_path):
    where = dict(partition=Partition.from_sizes([2, 3]), num_languages=3, rank=0,
                 world_size=2, dtype=torch.float32, parameters=None, producer="test")
    with pytest.raises(ValueError, match="every must be a positive integer"):
        AdapterTrace(tmp_path, "pcgrad", every=0)
    with pytest.raises(ValueError, match="unknown aggregator 'pcgrd'"):
        AdapterTrace(tmp_path, "pcgrd").open(aggregator=PCGrad(), **where)
    with pytest.raises(ValueError, match=r"names aggregator PCGrad\(seed=1\), the adapter "
                                         r"runs PCGrad\(seed=0\)"):
        AdapterTrace(tmp_path, "pcgrad", {"seed": 1}).open(aggregator=PCGrad(), **where)
    with pytest.raises(ValueError, match="names 2 languages, the adapter has 3"):
        AdapterTrace(tmp_path, "pcgrad", languages=["en", "de"]).open(aggregator=PCGrad(),
                                                                      **where)
    assert not (tmp_path / "manifest.json").exists()  # nothing written before the checks


def test_zero_optimizer_trace_needs_float32_and_the_partition_of_its_parameters(tmp_path):
    net = torch.nn.Sequential(torch.nn.Linear(4, 4), torch.nn.Linear(4, 3))  # D = 35
    partition = zero_buckets(net, 16, world_size=2)
    trace = AdapterTrace(tmp_path, "mgda")
    with pytest.raises(ValueError, match="have 20 elements, the partition 35"):
        ZeroMOOOptimizer(torch.optim.SGD(net[0].parameters(), lr=0.1), MGDA(), partition, 3,
                         0, 2, trace=trace)
    with pytest.raises(ValueError, match="tracing needs float32 parameters"):
        ZeroMOOOptimizer(torch.optim.SGD(net.double().parameters(), lr=0.1), MGDA(),
                         partition, 3, 0, 2, trace=trace)


def test_tracer_writes_every_nth_step_and_nothing_in_between(tmp_path):
    P = Partition.from_sizes([2, 3])
    tracer = Tracer(TraceWriter(tmp_path, partition=P, aggregator="sum", languages=2),
                    every=2)
    cols = torch.arange(5)
    for step in range(5):
        G = torch.full((2, 5), float(step + 1))
        for k in range(2):
            tracer.local(k, cols, G[k])
            tracer.reduced(k, cols, G[k])
        tracer.output(cols, G.sum(0))
        tracer.end_step()
    assert Trace(tmp_path).steps() == [0, 2, 4]
    report = verify(tmp_path)
    assert report.ok and len(report.checks) == 3 * 2 and len(report.reductions) == 3 * 2
