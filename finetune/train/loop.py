"""The trainer loop: one screen, every engine.

Each step: this rank's micro-batches (a function of seed, language, step) →
``engine.gradients`` leaves the update direction in ``.grad`` → per-language
losses summed over ranks and checked → optimizer and schedule step → log line
→ checkpoint every ``save_every`` steps. Everything else (loading, resuming,
the partition) happens before the first step, so bad input fails fast.
"""

from __future__ import annotations

import json
import math
import os
import time
from dataclasses import dataclass
from pathlib import Path

import torch

from finetune.errors import ConfigError, TrainingError
from refmoo import GradientError, Partition, per_tensor

from . import checkpoint, diagnostics
from .batches import micro_batch_count, micro_loss, rank_batches
from .config import TrainConfig, differences
from .distributed import setup
from .engines import Plan, make_engine
from .loading import load_model, load_tokenizer
from .optim import make_optimizer
from .partitioning import build


@dataclass(frozen=True)
class TrainResult:
    out: Path
    final: Path
    steps: int
    resumed_from: int | None
    summary: dict


def train(config: TrainConfig, *, progress: bool = True) -> TrainResult:
    """Train, resuming from ``config.out``'s newest checkpoint; see the module docstring."""
    config.validate()
    ctx = setup(config.engine)
    try:
        return _train(config, ctx, progress)
    finally:
        ctx.close()


def _check_out(out: Path, fingerprint: dict) -> dict | None:
    """The run already in ``out`` (its run.json), or None; another run's is a ConfigError."""
    _check_writable(out)
    run = out / "run.json"
    if run.is_file():
        old = json.loads(run.read_text())["settings"]
        if old != fingerprint:
            raise ConfigError(f"--out {out} holds a run with different settings ("
                              + "; ".join(differences(old, fingerprint))
                              + "): choose another --out or delete it")
        return old
    if out.is_dir() and (checkpoint.checkpoints(out) or (out / "final").exists()):
        raise ConfigError(f"--out {out} holds checkpoints but no run.json: not a run of "
                          "this trainer")
    return None


def _check_writable(out: Path) -> None:
    """``out`` is, or can become, a directory we may write in: found before the model and
    the data load, instead of as an OSError traceback after them."""
    if out.exists() and not out.is_dir():
        raise ConfigError(f"--out {out} is a file, not a directory")
    parent = out
    while not parent.exists():
        parent = parent.parent
    if not parent.is_dir():
        raise ConfigError(f"--out {out}: {parent} is a file, not a directory")
    if not os.access(parent, os.W_OK | os.X_OK):
        raise ConfigError(f"--out {out}: {parent} is not writable")


def _make_out(out: Path) -> None:
    try:
        out.mkdir(parents=True, exist_ok=True)
    except OSError as err:  # what the early check cannot see, e.g. /proc or a full disk
        raise ConfigError(f"--out {out}: cannot create it ({err.strerror})") from err


def _train(config: TrainConfig, ctx, progress: bool) -> TrainResult:
    out = Path(config.out)
    fingerprint = config.fingerprint(ctx.world_size)
    _check_out(out, fingerprint)
    if (out / "final").is_dir() and (out / "summary.json").is_file():
        summary = json.loads((out / "summary.json").read_text())
        return TrainResult(out, out / "final", config.steps, config.steps, summary)
    n_micro = micro_batch_count(config.batch_size, config.micro_batch_size, ctx.world_size)
    tokenizer = load_tokenizer(config.model)

    from finetune.data import load_languages

    examples = load_languages(config.data, config.languages, tokenizer, split="train",
                              max_length=config.max_length, chat_template=config.chat_template)
    # Every rank creates it (idempotent): had only rank 0 tried, its failure would have
    # left the other ranks waiting at the barrier below until the collective timed out.
    _make_out(out)
    if ctx.rank == 0:
        checkpoint.clean_temporary(out)
    engine = make_engine(config.engine, ctx.device)
    engine.rank, engine.world_size = ctx.rank, ctx.world_size
    engine.barrier()
    saved = checkpoint.checkpoints(out)
    resume = saved[-1][1] if saved else None
    model = load_model(resume or config.model, config.dtype, ctx.device)

    def batches_at(step: int) -> list[list]:
        mbs = rank_batches(examples, config.seed, step, config.batch_size, n_micro,
                           ctx.rank, ctx.world_size)
        return [[mb.to(ctx.device) for mb in mbs[lang]] for lang in config.languages]

    probe_mb = batches_at(0)[0][0]
    partition = build(config.partition, model, config.partition_world_size or ctx.world_size,
                      lambda: micro_loss(model, probe_mb))
    tensors = per_tensor(model)
    plan = Plan(config.method, config.make_aggregator(), partition, config.partition,
                config.languages, lambda m: micro_loss(m, probe_mb))
    engine.wrap(model, plan)
    optimizer, scheduler = make_optimizer(config, engine.parameters())
    start = checkpoint.load(resume, engine, optimizer, scheduler) if resume else 0
    optimizer = engine.attach(optimizer)
    log_path = out / "log.jsonl"
    if ctx.rank == 0:
        checkpoint.write_atomic(out / "run.json", json.dumps({"settings": fingerprint,
                                                              "config": config.to_dict()},
                                                             indent=1))
        _truncate_log(log_path, start)
    bar = _progress(progress and ctx.rank == 0, config.steps, start)
    times, peak = [], 0
    for step in range(start, config.steps):
        t0 = time.perf_counter()
        diagnose = config.diagnostics_every > 0 and (step + 1) % config.diagnostics_every == 0
        try:
            grads = engine.gradients(batches_at(step), diagnose)
        except GradientError as err:
            _check_finite(step, config.languages, engine.losses)  # names the language
            raise TrainingError(f"step {step + 1}: {err}; stopped, the last checkpoint is "
                                "kept") from err
        losses = engine.all_reduce(grads.losses.to(ctx.device)).cpu()
        _check_finite(step, config.languages, losses)
        t1 = time.perf_counter()
        lr = scheduler.get_last_lr()[0]
        optimizer.step()
        scheduler.step()
        optimizer.zero_grad(set_to_none=True)
        t2 = time.perf_counter()
        diag = _diagnostics(grads, partition, tensors) if diagnose and ctx.rank == 0 else {}
        t3 = time.perf_counter()
        phase = {"backward": t1 - t0 - grads.aggregate_s - grads.diagnostics_s,
                 "aggregate": grads.aggregate_s, "optimizer": t2 - t1,
                 "step": t2 - t0 - grads.diagnostics_s,
                 "diagnostics": grads.diagnostics_s + t3 - t2}
        times.append(phase)
        peak = max(peak, grads.grad_memory_bytes)
        if ctx.rank == 0:
            row = {"step": step + 1, "lr": lr,
                   "loss": dict(zip(config.languages, losses.tolist(), strict=True)),
                   "weights": diagnostics.weights_row(grads.weights),
                   "phi": diag.get("phi"), "phi_p": diag.get("phi_p"),
                   "conflict": diag.get("conflict"), "time": phase,
                   "grad_memory_bytes": grads.grad_memory_bytes}
            with log_path.open("a") as f:
                f.write(json.dumps(row) + "\n")
            bar.update(1)
            bar.set_postfix(loss=f"{sum(losses.tolist()) / len(losses):.4f}")
        if config.save_every and (step + 1) % config.save_every == 0 and step + 1 < config.steps:
            checkpoint.save(out, step + 1, engine, tokenizer, optimizer, scheduler, fingerprint,
                            config.keep_checkpoints)
    bar.close()
    return _finish(config, ctx, engine, tokenizer, out, times, peak, fingerprint,
                   resumed_from=start or None)


def _check_finite(step: int, languages, losses) -> None:
    for lang, value in zip(languages, losses.tolist(), strict=True):
        if not math.isfinite(value):
            raise TrainingError(f"step {step + 1}: the loss of language {lang!r} is {value}; "
                                "stopped, the last checkpoint is kept")


def _diagnostics(grads, partition: Partition, tensors: Partition) -> dict:
    if grads.G is not None:
        return diagnostics.from_matrix(grads.G, partition, tensors)
    if grads.grams:
        return diagnostics.from_grams(grads.grams["tensor"], grads.grams["run"], tensors.names)
    return {}


def _finish(config, ctx, engine, tokenizer, out: Path, times, peak, fingerprint,
            resumed_from) -> TrainResult:
    final = out / "final"
    tmp = out / ".tmp-final"
    if ctx.rank == 0 and tmp.exists():
        import shutil
        shutil.rmtree(tmp)
    engine.barrier()
    checkpoint.save_model(engine, tokenizer, tmp)
    peak_all = engine.all_reduce(torch.tensor(float(peak), device=ctx.device)) / ctx.world_size
    summary = {"config": config.to_dict(), "settings": fingerprint, "steps": config.steps,
               "final": str(final), "engine": config.engine, "world_size": ctx.world_size,
               "resumed_from": resumed_from,
               "time": {k: sum(t[k] for t in times) / len(times) for k in times[0]}
               if times else {},
               "grad_memory_bytes": peak, "grad_memory_bytes_mean_over_ranks": float(peak_all)}
    if ctx.rank == 0:
        if final.exists():
            # A run killed between this rename and summary.json left its final/ behind; the
            # rerun has retrained the last steps into tmp, and rename cannot replace a
            # non-empty directory.
            import shutil
            shutil.rmtree(final)
        os.rename(tmp, final)
        checkpoint.write_atomic(out / "summary.json", json.dumps(summary, indent=1))
    engine.barrier()
    return TrainResult(out, final, config.steps, resumed_from, summary)


def _truncate_log(path: Path, step: int) -> None:
    """Drop log lines past the checkpoint a run resumes from (a killed run may have
    logged steps it never saved)."""
    if not path.exists():
        return
    keep = [line for line in path.read_text().splitlines()
            if line.strip() and json.loads(line)["step"] <= step]
    checkpoint.write_atomic(path, "".join(line + "\n" for line in keep))


def _progress(enabled: bool, total: int, initial: int):
    from tqdm.auto import tqdm

    return tqdm(total=total, initial=initial, disable=not enabled, desc="train", unit="step")
