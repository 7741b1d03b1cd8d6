"""The trainer on one process: every method and aggregator, the log, resume after SIGKILL
(bitwise), and every kind of bad input with its message."""

from __future__ import annotations

import json
import signal
import subprocess
import sys
import time
from dataclasses import replace
from pathlib import Path

import pytest
import torch
from test_train_support import ROOT, assert_bitwise, env, final_params

from finetune.errors import ConfigError, TrainingError
from finetune.train import TrainConfig, train
from refmoo import AGGREGATORS

pytestmark = pytest.mark.usefixtures("one_thread")






def _config(tiny, out, **kw) -> TrainConfig:
    base, data = tiny
    settings = dict(model=str(base), data=str(data), languages=("en", "de"), out=str(out),
                    method="bucket", steps=2, batch_size=4, micro_batch_size=2, lr=1e-2)
    settings.update(kw)
    return TrainConfig(**settings)


@pytest.mark.parametrize("aggregator", sorted(AGGREGATORS))
def test_every_aggregator_trains_bucket_level(tiny, tmp_path, aggregator):
    result = train(_config(tiny, tmp_path, aggregator=aggregator, steps=1), progress=False)
    row = json.loads((tmp_path / "log.jsonl").read_text().splitlines()[0])
    assert set(row["loss"]) == {"en", "de"} and all(v > 0 for v in row["loss"].values())
    assert (result.final / "model.safetensors").is_file()
    before, after = final_params(tiny[0]), final_params(result.final)
    assert any(not torch.equal(before[k], after[k]) for k in before)  # it moved


def test_log_schema_and_summary(tiny, tmp_path):
    train(_config(tiny, tmp_path, method="full", steps=2), progress=False)
    rows = [json.loads(line) for line in (tmp_path / "log.jsonl").read_text().splitlines()]
    assert [r["step"] for r in rows] == [1, 2]
    r = rows[0]
    assert set(r) == {"step", "lr", "loss", "weights", "phi", "phi_p", "conflict", "time",
                      "grad_memory_bytes"}
    assert len(r["weights"]) == 1 and abs(sum(r["weights"][0]) - 1) < 1e-6  # MGDA: simplex
    assert 0 <= r["phi_p"] <= r["phi"] + 1e-9  # φ_P ≤ φ (proofs/, Theorem 1)
    assert {"model.layers.0", "model.layers.1", "lm_head"} <= set(r["conflict"])
    assert all(0 <= c <= n for c, n in r["conflict"].values())
    assert r["conflict"]["model.layers.0"][1] == 9  # 9 tensors per Llama block
    assert {"backward", "aggregate", "optimizer", "step"} <= set(r["time"])
    D = sum(t.numel() for t in final_params(tiny[0]).values())
    assert r["grad_memory_bytes"] == 3 * D * 4  # G (K = 2 rows) and .grad, float32
    summary = json.loads((tmp_path / "summary.json").read_text())
    assert summary["steps"] == 2 and Path(summary["final"]) == tmp_path / "final"


def test_standard_is_the_mean_gradient(tiny, tmp_path):
    """One backward of (1/K)Σ_k L_k against the `mean` aggregator on the K rows: the same
    update up to the rounding of the two summation orders (a few float32 ulps of the
    gradient, times lr after one SGD step)."""
    kw = dict(steps=1, optimizer="sgd", lr=0.1, micro_batch_size=1)
    a = train(_config(tiny, tmp_path / "a", method="standard", **kw), progress=False)
    b = train(_config(tiny, tmp_path / "b", method="full", aggregator="mean", **kw),
              progress=False)
    row = json.loads((tmp_path / "a" / "log.jsonl").read_text())
    assert row["weights"] is None and row["phi"] is not None  # diagnosed every step
    pa, pb, p0 = final_params(a.final), final_params(b.final), final_params(tiny[0])
    for k in pa:
        step = (pa[k] - p0[k]).abs().max()
        assert float((pa[k] - pb[k]).abs().max()) <= 1e-5 * float(step) + 1e-9, k


def test_micro_batches_split_the_global_mean_loss(tiny, tmp_path):
    """Loss per micro-batch = summed target loss / T_k of the whole batch: any split
    logs the same per-language loss (to float rounding)."""
    losses = []
    for mb in (1, 4):
        train(_config(tiny, tmp_path / str(mb), steps=1, micro_batch_size=mb), progress=False)
        losses.append(json.loads((tmp_path / str(mb) / "log.jsonl").read_text())["loss"])
    for lang in ("en", "de"):
        assert abs(losses[0][lang] - losses[1][lang]) < 1e-5


def test_resume_after_sigkill_is_bitwise(tiny, tmp_path):
    config = _config(tiny, tmp_path / "killed", steps=10, save_every=2, optimizer="adamw",
                     warmup_steps=2, diagnostics_every=0)
    whole = train(replace(config, out=str(tmp_path / "whole")), progress=False)
    code = ("import torch; torch.set_num_threads(1)\n"
            "from finetune.train import TrainConfig, train\n"
            f"train(TrainConfig(**{config.to_dict()!r}), progress=False)\n")
    proc = subprocess.Popen([sys.executable, "-c", code], cwd=ROOT, env=env(),
                            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    try:
        deadline = time.monotonic() + 300  # liveness only: generous on a loaded machine
        while not (tmp_path / "killed" / "checkpoint-2" / "state.json").exists():
            assert proc.poll() is None, proc.stderr.read().decode()[-3000:]
            assert time.monotonic() < deadline
            time.sleep(0.02)
        proc.send_signal(signal.SIGKILL)
        proc.wait(10)
    finally:
        if proc.poll() is None:
            proc.kill()
    assert not (tmp_path / "killed" / "final").exists()
    resumed = train(config, progress=False)
    assert resumed.resumed_from is not None and resumed.resumed_from >= 2
    assert_bitwise(final_params(resumed.final), final_params(whole.final))
    log = (tmp_path / "killed" / "log.jsonl").read_text().splitlines()
    steps = [json.loads(x)["step"] for x in log]
    assert steps == list(range(1, 11))
    kept = sorted(p.name for p in (tmp_path / "killed").glob("checkpoint-*"))
    assert kept == ["checkpoint-6", "checkpoint-8"]  # pruned to keep_checkpoints = 2


def test_finished_run_is_not_redone(tiny, tmp_path):
    config = _config(tiny, tmp_path, steps=1)
    train(config, progress=False)
    stamp = (tmp_path / "final" / "model.safetensors").stat().st_mtime_ns
    again = train(config, progress=False)
    assert (again.final / "model.safetensors").stat().st_mtime_ns == stamp


# -- bad input: a clear error, before any training -----------------------------------

@pytest.mark.parametrize("change,words", [
    (dict(method="sideways"), ["unknown method 'sideways'", "standard, full, bucket"]),
    (dict(aggregator="best"), ["unknown aggregator 'best'", "mgda"]),
    (dict(partition="slices:3"), ["unknown partition 'slices:3'"]),
    (dict(partition="chunks:x"), ["partition 'chunks:x'"]),
    (dict(engine="tpu"), ["unknown engine 'tpu'"]),
    (dict(micro_batch_size=3), ["micro_batch_size 3 must divide batch_size 4"]),
    (dict(keep_checkpoints=0), ["keep_checkpoints must be at least 1, got 0"]),
])
def test_bad_settings_are_named(tiny, tmp_path, change, words):
    with pytest.raises(ConfigError) as err:
        train(_config(tiny, tmp_path, **change), progress=False)
    for w in words:
        assert w in str(err.value)
    assert not (tmp_path / "log.jsonl").exists()


def test_partition_that_does_not_fit_the_model(tiny, tmp_path):
    with pytest.raises(ConfigError, match=r"partition 'fsdp2:model.layers.7' does not fit"):
        train(_config(tiny, tmp_path, partition="fsdp2:model.layers.7"), progress=False)


def test_missing_model_directory(tiny, tmp_path):
    with pytest.raises(ConfigError, match=r"model '.*nowhere/base' not found"):
        train(_config(tiny, tmp_path, model=str(tmp_path / "nowhere" / "base")),
              progress=False)


def test_out_with_different_settings(tiny, tmp_path):
    train(_config(tiny, tmp_path, steps=1), progress=False)
    with pytest.raises(ConfigError, match=r"different settings \(lr: 0.01 → 0.02\)"):
        train(_config(tiny, tmp_path, steps=1, lr=0.02), progress=False)


@pytest.mark.parametrize("where", ["file", "file/below"])
def test_out_that_cannot_be_a_directory_is_named_before_the_model_loads(tiny, tmp_path, where):
    (tmp_path / "file").write_text("not a run")
    out = tmp_path / where
    # The model does not exist either: the --out error must come first.
    config = _config(tiny, out, model=str(tmp_path / "nowhere"))
    with pytest.raises(ConfigError, match=r"--out .*file.* is a file, not a directory"):
        train(config, progress=False)


def test_final_left_without_summary_is_replaced_on_rerun(tiny, tmp_path):
    """A kill between renaming final/ into place and writing summary.json: the rerun trains
    the last steps again and must replace final/, not fail on the non-empty directory."""
    config = _config(tiny, tmp_path, steps=2)
    train(config, progress=False)
    first = final_params(tmp_path / "final")
    (tmp_path / "summary.json").unlink()
    train(config, progress=False)
    assert (tmp_path / "summary.json").is_file()
    assert not (tmp_path / ".tmp-final").exists()
    assert_bitwise(final_params(tmp_path / "final"), first)


def test_non_finite_loss_stops_naming_step_and_language(tiny, tmp_path):
    # SGD with lr = 1e30: step 1 is finite, its update overflows the logits of step 2.
    config = _config(tiny, tmp_path, steps=4, save_every=1, optimizer="sgd", lr=1e30)
    with pytest.raises(TrainingError, match=r"step 2: the loss of language 'en' is (nan|inf)"):
        train(config, progress=False)
    assert (tmp_path / "checkpoint-1" / "state.json").is_file()
    assert not (tmp_path / "final").exists()


def test_cli_as_written_on_the_miniature(prepared_miniature, tmp_path):
    """The issue's command, verbatim, on the prepared miniature; then a bad one exits 2."""
    from test_train_support import cli

    p = prepared_miniature
    out = tmp_path / "run"
    args = ["--model", str(p.base), "--data", str(p.data), "--languages", "en", "de", "ru",
            "ar", "--method", "bucket", "--aggregator", "mgda", "--partition", "tensor",
            "--steps", "2", "--save-every", "1", "--seed", "0", "--optimizer", "adamw",
            "--lr", "1e-3", "--engine", "single", "--out", str(out)]
    done = cli(*args)
    assert f"final model: {out / 'final'}" in done.stdout
    assert (out / "final" / "config.json").is_file() and (out / "checkpoint-1").is_dir()
    assert set(json.loads((out / "log.jsonl").read_text().splitlines()[-1])["loss"]) == \
        {"en", "de", "ru", "ar"}
    bad = cli(*[a if a != "mgda" else "nope" for a in args], check=False)
    assert bad.returncode == 2 and "error: unknown aggregator 'nope'" in bad.stderr
