"""``--engine ddp|fsdp2`` at W = 2 against ``--engine single`` on the same micro-batches
(gloo, float32, one micro-batch per rank): DDP through ``torchrun --nproc-per-node 2 -m
finetune train`` as written, the FSDP2 runs in one start-up of two forkserver ranks
(``simulate.launch.spawn``; each rank imports transformers once for all of them).

Bitwise where it holds by construction: each rank's gradient is the single engine's
micro-batch gradient, gloo's sum of two tensors is a + b, and the same aggregation runs
on the same G (DDP; FSDP2 ``standard``). FSDP2 with the Gram route (``full``) sums the
partial Grams of the two shards instead of forming GGᵀ in one pass, so Q, hence the
weights, differ by rounding: |ΔQ| ≲ n·u·Σ|g_i||g_j| (u = 2⁻²⁴), and the parameters by
lr·steps·|Δw|·max|G|, orders of magnitude below the update itself; the test allows
1e-4 of the largest parameter change.
"""

from __future__ import annotations

import pytest
from test_train_support import assert_bitwise, cli, final_params

from finetune.train import TrainConfig, train
from finetune.train.distributed import train_on_rank
from simulate.launch import spawn

pytestmark = [pytest.mark.slow, pytest.mark.usefixtures("one_thread")]






COMMON = dict(languages=("en", "de"), steps=2, batch_size=4, micro_batch_size=2,
              optimizer="sgd", lr=0.05, partition_world_size=2)


def _both(tiny, tmp_path, engine: str, **kw):
    base, data = tiny
    settings = {**COMMON, **kw}
    args = ["--model", str(base), "--data", str(data), "--languages", *settings["languages"],
            "--steps", "2", "--batch-size", "4", "--micro-batch-size", "2",
            "--optimizer", "sgd", "--lr", "0.05", "--partition-world-size", "2",
            "--method", settings["method"], "--partition", settings.get("partition", "tensor"),
            "--engine", engine, "--out", str(tmp_path / engine), "--no-progress"]
    cli(*args, torchrun=2, timeout=180)
    single = train(TrainConfig(model=str(base), data=str(data), out=str(tmp_path / "single"),
                               **settings), progress=False)
    return final_params(tmp_path / engine / "final"), final_params(single.final)


def test_ddp_bucket_level_equals_single_bitwise(tiny, tmp_path):
    dist, single = _both(tiny, tmp_path, "ddp", method="bucket", partition="tensor")
    assert_bitwise(dist, single)


def test_fsdp2_equals_single(tiny, tmp_path):
    base, data = tiny
    runs = {"standard": dict(method="standard"), "full": dict(method="full")}
    configs = [TrainConfig(model=str(base), data=str(data), out=str(tmp_path / name),
                           engine="fsdp2", **COMMON, **kw) for name, kw in runs.items()]
    spawn(train_on_rank, 2, (configs,), timeout_s=150)
    start = final_params(base)
    for name, kw in runs.items():
        single = final_params(train(TrainConfig(model=str(base), data=str(data),
                                                out=str(tmp_path / f"single-{name}"),
                                                **COMMON, **kw), progress=False).final)
        dist = final_params(tmp_path / name / "final")
        if name == "standard":  # plain reduce-scatter of a + b: bitwise
            assert_bitwise(dist, single)
            continue
        # the Gram route: Q summed from two shards' partial Grams (module docstring)
        moved = max(float((single[k] - start[k]).abs().max()) for k in start)
        err = max(float((dist[k] - single[k]).abs().max()) for k in start)
        assert moved > 1e-4 and err <= 1e-4 * moved, (err, moved)
