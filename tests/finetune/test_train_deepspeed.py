"""``--engine deepspeed`` (ZeRO-2) at W = 2 against ``--engine single`` (gloo, float32,
one micro-batch per rank, ``--partition-world-size 2`` so both cut the same ``zero``
buckets). DeepSpeed is an optional extra: skipped where it is not installed. The first
run JIT-builds DeepSpeed's CPU comm op (ninja; cached afterwards).

``standard`` is bitwise by construction: each rank backpropagates its loss ·2, DeepSpeed
divides its gradient by 2 (exact: powers of two), the reduce-scatter of two tensors is
a + b, and SGD on the fp32 partition is the single engine's SGD elementwise.

``bucket`` (MGDA on ``zero:1000``): the reduced per-language gradients are the same bits
(as above), but each rank solves only the buckets it owns, so ``bucketwise`` batches a
different subset of buckets than the single engine's whole partition and the weights
may differ by solver rounding (|Δw| ~ u·κ, u = 2⁻²⁴); the parameters then differ by at
most lr·steps·|Δw|·max|G|. The test allows 1e-4 of the largest parameter change (the
same bound as the FSDP2 Gram route in test_train_distributed.py).
"""

from __future__ import annotations

import pytest
from test_train_support import assert_bitwise, cli, final_params

from finetune.errors import ConfigError
from finetune.train import TrainConfig, train

pytest.importorskip("deepspeed")
pytestmark = [pytest.mark.slow, pytest.mark.usefixtures("one_thread")]






COMMON = dict(languages=("en", "de"), steps=2, batch_size=4, micro_batch_size=2,
              optimizer="sgd", lr=0.05, partition_world_size=2)


def _both(tiny, tmp_path, name: str, method: str, partition: str):
    base, data = tiny
    out = tmp_path / name
    cli("--model", str(base), "--data", str(data), "--languages", "en", "de",
        "--steps", "2", "--batch-size", "4", "--micro-batch-size", "2",
        "--optimizer", "sgd", "--lr", "0.05", "--partition-world-size", "2",
        "--method", method, "--partition", partition, "--engine", "deepspeed",
        "--out", str(out), "--no-progress", torchrun=2, timeout=900)
    single = train(TrainConfig(model=str(base), data=str(data), out=str(tmp_path / f"s-{name}"),
                               method=method, partition=partition, **COMMON), progress=False)
    return final_params(out / "final"), final_params(single.final)


def test_deepspeed_standard_equals_single_bitwise(tiny, tmp_path):
    ds, single = _both(tiny, tmp_path, "standard", "standard", "tensor")
    assert_bitwise(ds, single)


def test_deepspeed_bucket_zero_equals_single(tiny, tmp_path):
    ds, single = _both(tiny, tmp_path, "bucket", "bucket", "zero:1000")
    start = final_params(tiny[0])
    moved = max(float((single[k] - start[k]).abs().max()) for k in start)
    err = max(float((ds[k] - single[k]).abs().max()) for k in start)
    assert moved > 1e-4 and err <= 1e-4 * moved, (err, moved)


def test_deepspeed_refuses_save_every(tiny, tmp_path):
    base, data = tiny
    with pytest.raises(ConfigError, match="save-every"):
        TrainConfig(model=str(base), data=str(data), out=str(tmp_path / "x"), engine="deepspeed",
                    save_every=1, method="standard", **COMMON).validate()
