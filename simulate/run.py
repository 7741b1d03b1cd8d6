"""Train the workload on every rank with one or more configurations; gather metrics.

:func:`train_rank` is what each rank runs (under :func:`simulate.launch.spawn` or
``torchrun``); :func:`metrics` turns the ranks' reports and the reference into
the ``metrics.json`` record.
"""

from __future__ import annotations

import statistics
import time
from collections.abc import Sequence
from fractions import Fraction
from typing import Any

import torch
import torch.distributed as dist

from .comm import Comm
from .config import RunConfig
from .engine import Engine
from .formulas import planned_calls, predicted_bytes
from .launch import RankInfo, spawn
from .reference import ReferenceResult, reference_run, shadow_config
from .schemes import build_partition
from .tolerance import bitwise_expected, meaningful, shadow_tolerance, tolerance
from .workload import build_model, language_losses, probe_loss


def train_rank(info: RankInfo, configs: Sequence[RunConfig]) -> list[dict[str, Any]]:
    """Run each configuration in turn on this rank (one process group for all)."""
    return [_train_one(info, cfg) for cfg in configs]


def _train_one(info: RankInfo, cfg: RunConfig) -> dict[str, Any]:
    wl = cfg.workload
    model = build_model(wl)
    if dist.get_backend(info.group) == "nccl":  # torchrun on GPUs: one device per rank
        model = model.to(torch.device("cuda", torch.cuda.current_device()))
    partition, owners = build_partition(cfg.partition, model, info.world_size,
                                        probe_loss(wl, model))
    if cfg.owners is not None:
        owners = list(cfg.owners)
    comm = Comm(info.group, ordered=cfg.ordered_reduction)
    # A deliberate bug (negative controls): the ranks step with lr 0, the reference does not.
    optimizer = cfg.with_(lr=0.0).make_optimizer if cfg.bug == "no-update" else cfg.make_optimizer
    engine = Engine(model, partition, cfg.strategy, cfg.make_aggregator(), optimizer,
                    comm, wl.num_languages, owners=owners)
    trace = None
    if cfg.trace_dir:
        from .trace_io import open_trace

        trace = open_trace(cfg, engine, partition, info.rank)
        engine.keep_locals()
    steps = []
    for step in range(cfg.steps):
        losses = language_losses(wl, model, step, info.rank, info.world_size)
        if cfg.fault is not None and cfg.fault == (info.rank, step):
            losses = _inject_fault(losses, cfg, info.rank, step)
        if cfg.bug == "extra-1/W":
            losses = _divide_language(losses, 1, info.world_size)
        report = engine.step(losses)
        if trace is not None:
            trace.record(step, report.trace, engine.locals)
        steps.append({
            "phases": report.phases,
            "comm": {k: (v.calls, v.elements, v.bytes, v.wire_bytes)
                     for k, v in report.comm.items()},
        })
    lay = engine.layout
    out = {
        "rank": info.rank,
        "steps": steps,
        "grad_peak_bytes": engine.memory.peak_bytes,
        "optimizer_state_bytes": _optimizer_bytes(engine),
        "dim": engine.flat.dim,
        "buckets": len(partition),
        "chunk": lay.chunk,
        "shard_sizes": lay.shard_sizes,
        "idle_ranks": lay.idle_ranks,
        "itemsize": engine.flat.grad.element_size(),
    }
    if info.rank == 0:
        out["params"] = engine.flat.read_params().cpu()
    return out


def _inject_fault(losses: list, cfg: RunConfig, rank: int, step: int) -> list:
    """Make the second language's backward fail, so the peers are already inside
    that language's collective when this rank dies."""
    def fail():
        if cfg.fault_kind == "hang":
            while True:
                time.sleep(3600)
        raise RuntimeError(f"injected fault on rank {rank} at step {step}")

    k = min(1, len(losses) - 1)
    return losses[:k] + [fail] + losses[k + 1:]


def _divide_language(losses: list, k: int, by: int) -> list:
    """Every rank's loss of language k divided by ``by``: the reduced gradient of that
    language comes out divided by W once more (a classic averaging bug)."""
    k = min(k, len(losses) - 1)
    f = losses[k]
    if f is not None:
        losses = losses[:k] + [lambda f=f: f() / by] + losses[k + 1:]
    return losses


def _optimizer_bytes(engine: Engine) -> int:
    opt = getattr(engine.strategy._update, "optimizer", None)
    if opt is None:
        return 0
    return sum(t.numel() * t.element_size() for st in opt.state.values()
               for t in st.values() if isinstance(t, torch.Tensor) and t.dim() > 0)


def _per_step(values: list[Any]) -> Any:
    return statistics.fmean(values) if values else 0.0


def metrics(cfg: RunConfig, ranks: list[dict[str, Any]], ref: ReferenceResult | None,
            shadow: ReferenceResult | None = None) -> dict[str, Any]:
    """The metrics.json record of one run (``ranks`` in rank order); ``shadow`` is
    the reference in float64 (:func:`references`), for float32 runs."""
    r0 = ranks[0]
    W, K = cfg.world_size, cfg.workload.num_languages
    plan = planned_calls(cfg.strategy, dim=r0["dim"], languages=K, world_size=W,
                         chunk=r0["chunk"])
    predicted = predicted_bytes(cfg.strategy, dim=r0["dim"], languages=K, world_size=W,
                                chunk=r0["chunk"], itemsize=r0["itemsize"])
    sent: dict[str, list[float]] = {}
    calls: dict[str, list[float]] = {}
    wire: dict[str, list[float]] = {}
    exact = True
    for r in ranks:
        for s in r["steps"]:
            keys = set(s["comm"]) | set(plan)
            for key in keys:
                c, n, b, w = s["comm"].get(key, (0, 0, Fraction(0), 0))
                exact &= (c, Fraction(b)) == (plan.get(key, (0, 0))[0], predicted.get(key, 0))
                if c:
                    exact &= n == c * plan.get(key, (0, -1))[1]
                sent.setdefault(key, []).append(float(b))
                calls.setdefault(key, []).append(c)
                wire.setdefault(key, []).append(w)
    timed = [sum(s["phases"].values()) for s in r0["steps"]]
    warm = timed[1:] if len(timed) > 1 else timed
    phases = {}
    for r in ranks:
        steps = r["steps"][1:] if len(r["steps"]) > 1 else r["steps"]
        for s in steps:
            for name, t in s["phases"].items():
                phases.setdefault(name, []).append(t)
    out: dict[str, Any] = {
        "strategy": cfg.strategy,
        "world_size": W,
        "steps": cfg.steps,
        "aggregator": cfg.aggregator if cfg.strategy != "standard" else "mean",
        "aggregator_requested": cfg.aggregator,
        "partition": cfg.partition,
        "ordered_reduction": cfg.ordered_reduction,
        "languages": K,
        "dim": r0["dim"],
        "buckets": r0["buckets"],
        "dtype": cfg.workload.dtype,
        "shard_sizes": r0["shard_sizes"],
        "idle_ranks": r0["idle_ranks"],
        "bytes_sent_per_rank": {k: _per_step(v) for k, v in sorted(sent.items())},
        "bytes_predicted_per_rank": {k: float(v) for k, v in sorted(predicted.items())},
        "calls_per_rank": {k: _per_step(v) for k, v in sorted(calls.items())},
        "wire_bytes_per_rank": {k: _per_step(v) for k, v in sorted(wire.items())},
        "accounting_exact": bool(exact),
        "bytes_per_step": float(sum(predicted.values())),
        "grad_peak_bytes_per_rank": [r["grad_peak_bytes"] for r in ranks],
        "optimizer_state_bytes_per_rank": [r["optimizer_state_bytes"] for r in ranks],
        "step_time_s": statistics.median(warm),
        "phase_time_s": {k: statistics.fmean(v) for k, v in sorted(phases.items())},
    }
    if ref is not None:
        out |= _check(cfg, r0, ref, shadow)
    else:
        out["max_param_error_vs_reference"] = None
    out["check"] = check_status(out)
    return out


def _check(cfg: RunConfig, r0: dict[str, Any], ref: ReferenceResult,
           shadow: ReferenceResult | None) -> dict[str, Any]:
    """The comparison with the reference (see :mod:`simulate.tolerance`)."""
    W, K = cfg.world_size, cfg.workload.num_languages
    err = float((r0["params"].double() - ref.params.double()).abs().max())
    bitwise = bitwise_expected(cfg.strategy, W, cfg.ordered_reduction)
    gap = None
    if bitwise:
        tol, method = 0.0, "bitwise"
    elif shadow is not None:
        gap = float((shadow.params - ref.params.double()).abs().max())
        tol, method = shadow_tolerance(gap, steps=cfg.steps, param_magnitude=ref.param_magnitude,
                                       dtype=ref.params.dtype), "float64 shadow"
    else:
        tol = tolerance(cfg.strategy, world_size=W, ordered=cfg.ordered_reduction,
                        languages=K, dim=r0["dim"], steps=cfg.steps, lr=cfg.lr,
                        momentum=cfg.momentum, optimizer=cfg.optimizer,
                        dtype=ref.params.dtype, input_magnitude=ref.input_magnitude,
                        param_magnitude=ref.param_magnitude)
        method = "a priori" if tol is not None else None
    return {
        "max_param_error_vs_reference": err,
        "bitwise_equal_to_reference": bool(torch.equal(r0["params"], ref.params)),
        "bitwise_expected": bitwise,
        "tolerance": tol,
        "tolerance_method": method,
        "reference_float32_vs_float64": gap,
        "param_movement": ref.movement,
        "tolerance_meaningful": meaningful(tol, ref.movement),
        "within_tolerance": None if tol is None else err <= tol,
        "reference_input_magnitude": ref.input_magnitude,
        "reference_update_magnitude": ref.update_magnitude,
    }


def check_status(m: dict[str, Any]) -> str:
    """``passed``, ``failed`` (accounting, or over a tolerance, even a loose one),
    ``not meaningful`` (no tolerance, or one above 1% of the movement) or
    ``skipped`` (no reference)."""
    if not m["accounting_exact"] or m.get("within_tolerance") is False:
        return "failed"
    if m["max_param_error_vs_reference"] is None:
        return "skipped"
    return "passed" if m["tolerance_meaningful"] else "not meaningful"


def run_ranks(configs: Sequence[RunConfig], **launch) -> list[list[dict[str, Any]]]:
    """Spawn the ranks once and run every configuration; ``[config][rank]`` reports."""
    W = configs[0].world_size
    if any(c.world_size != W for c in configs):
        raise ValueError("one launch runs one world size; split the configurations")
    for c in configs:
        c.validate()
    torch.set_num_threads(1)
    launch.setdefault("timeout_s", configs[0].timeout_s)
    per_rank = spawn(train_rank, W, (list(configs),), **launch)
    return [[per_rank[r][i] for r in range(W)] for i in range(len(configs))]


def run_many(configs: Sequence[RunConfig], *, reference: bool = True, **launch
             ) -> list[dict[str, Any]]:
    """Metrics of every configuration, each compared with its reference."""
    out = []
    cache: dict[Any, ReferenceResult] = {}
    for cfg, ranks in zip(configs, run_ranks(configs, **launch), strict=True):
        refs = references(cfg, cache) if reference and cfg.reference else (None, None)
        out.append(metrics(cfg, ranks, *refs))
    return out


def references(cfg: RunConfig, cache: dict[Any, ReferenceResult] | None = None
               ) -> tuple[ReferenceResult, ReferenceResult | None]:
    """The reference of ``cfg`` and, where the check needs it (below float64 and not
    bitwise), its float64 shadow; ``cache`` shares them between configurations."""
    cache = {} if cache is None else cache

    def get(c: RunConfig) -> ReferenceResult:
        key = _reference_key(c)
        if key not in cache:
            cache[key] = reference_run(c)
        return cache[key]

    ref = get(cfg)
    needs = (ref.params.dtype != torch.float64
             and not bitwise_expected(cfg.strategy, cfg.world_size, cfg.ordered_reduction))
    return ref, get(shadow_config(cfg)) if needs else None


def _reference_key(cfg: RunConfig) -> Any:
    """Configurations whose reference trajectories coincide (``bucket`` and
    ``bucket-replicated``; ``full-naive`` and ``full-gram``; the reduction mode)."""
    from .strategies import STRATEGIES

    s = STRATEGIES[cfg.strategy]
    kind = "mean" if s.single_backward else ("full" if s.full_vector else "bucket")
    neutral = cfg.with_(strategy="bucket", ordered_reduction=False, trace_dir=None, owners=None,
                        bug=None, fault=None,
                        aggregator=cfg.aggregator if kind != "mean" else "mean",
                        partition=cfg.partition if kind == "bucket" else "single")
    return kind, repr(neutral)
