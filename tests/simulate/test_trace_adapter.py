"""A trace written by hand around an engine, with :class:`simulate.trace_io.StepRecorder`
(the route for an engine without a built-in ``trace=`` option; the adapters' own
traces are tested in test_adapter_traces.py): a real gloo DDP run through the
comm-hook adapter, with the locals computed *independently* of the engine, by
``refmoo.language_gradients`` on each rank's share of the loss. ``refmoo verify``
checks it end to end: the reduction against those locals and the aggregation
against the reference.

Independent locals catch what the adapter's own trace cannot: a wrong loss
convention. ``average=True`` on per-rank shares of the loss divides the global
gradient by W once more; the built-in trace records what the engine fed in (the
bucket divided by W under ``average=True``), which sums correctly, while the
locals here are the true shares, so the bug is caught and named."""

import pytest
import torch

from refmoo import language_gradients
from refmoo.partitions import flat_parameters, trainable_parameters
from refmoo.trace import TraceWriter, verify
from simulate.comm import Comm
from simulate.config import RunConfig
from simulate.launch import RankInfo, spawn
from simulate.schemes import build_partition
from simulate.trace_io import StepRecorder
from simulate.workload import WorkloadConfig, build_model, language_losses, probe_loss

CFG = RunConfig(strategy="bucket-replicated", aggregator="pcgrad", partition="ddp:0.002:0.002",
                world_size=2, steps=2,
                workload=WorkloadConfig(model="mlp", width=16, layers=2, vocab=32, seq_len=6,
                                        batch=(3, 2, 1)))


def _ddp_traced(info: RankInfo, cfg: RunConfig, trace_dir: str, average: bool) -> None:
    from torch.nn.parallel import DistributedDataParallel as DDP

    from simulate.adapters.ddp import DDPBucketMOO
    from simulate.adapters.harness import ddp_cap_mb

    wl, W, K = cfg.workload, info.world_size, cfg.workload.num_languages
    model = build_model(wl)
    partition, _ = build_partition(cfg.partition, model, W, probe_loss(wl, model))
    ddp = DDP(model, bucket_cap_mb=ddp_cap_mb(cfg.partition))
    moo = DDPBucketMOO(ddp, cfg.make_aggregator(), partition, K, comm=Comm(info.group),
                       average=average)
    params = [p for _, p in trainable_parameters(model)]
    optimizer = cfg.make_optimizer(params)
    writer = TraceWriter(trace_dir, partition=partition, aggregator=cfg.aggregator,
                         languages=K, rank=info.rank, world_size=W, dtype=torch.float32,
                         parameters=[(s.name, s.offset, s.numel, s.shape)
                                     for s in flat_parameters(model)])
    recorder = StepRecorder(writer)
    columns = torch.arange(partition.dim)
    for step in range(cfg.steps):
        # This rank's locals: its share of each language's loss, differentiated on the
        # unwrapped module (DDP's hook does not fire), from the same parameters.
        L = language_gradients(model, [f or (lambda: torch.zeros(())) for f in
                                       language_losses(wl, model, step, info.rank, W)])
        optimizer.zero_grad(set_to_none=True)
        moo.backward(language_losses(wl, ddp, step, info.rank, W, zero_if_empty=True))
        for k in range(K):
            recorder.record(step, columns=columns, language=k, local=L[k],
                            reduced=moo.G[k] if info.rank == 0 else None)
        if info.rank == 0:  # every rank holds the same reduced values and output
            output = torch.cat([p.grad.reshape(-1) for p in params])
            recorder.record(step, columns=columns, output=output)
        recorder.flush()
        optimizer.step()


def _both(info: RankInfo, cfg: RunConfig, right: str, wrong: str) -> None:
    _ddp_traced(info, cfg, right, average=False)
    _ddp_traced(info, cfg, wrong, average=True)


@pytest.mark.slow
def test_ddp_adapter_trace_verifies_reduction_and_aggregation(tmp_path):
    right, wrong = tmp_path / "right", tmp_path / "wrong"
    spawn(_both, 2, (CFG, str(right), str(wrong)))

    report = verify(right)
    M = len(report.checks) // CFG.steps
    assert report.ok and M > 1
    assert len(report.reductions) == CFG.steps * M and all(r.ok for r in report.reductions)

    bad = verify(wrong)
    assert all(c.ok for c in bad.checks)  # it aggregated consistently what it reduced
    assert not bad.ok
    failed = [r for r in bad.reductions if not r.ok]
    assert len(failed) == CFG.steps * M
    assert all(r.failed_languages == ["0", "1", "2"] for r in failed)
    assert "reduced = 0.5 × Σ locals (divided by W = 2 once more)" in failed[0].diagnosis
