"""The trainer's step, per method: time by phase and gradient memory, on one process.

Run: ``python benchmarks/bench_finetune.py [--steps 3] [--only miniature|100m]``. For each
model (the miniature's tiny Llama shape, ~1M parameters; a ~90M-parameter Llama built
from a config) and each method it drives ``finetune.train``'s single engine, the code
the trainer runs, on synthetic token batches (K = 4 languages, B sequences each), and
reports, over the steps after the first, the fastest step's phases (the machine is
shared: the minimum is the least disturbed measurement) of:

- backward: the K forward + backward passes (MOO) or K forwards and one backward of
  the mean loss (standard), including copying each language's gradient into G;
- aggregate: bucketwise aggregation (bucket Grams, the solve, the combination) and
  writing the direction into ``.grad``;
- optimizer: the AdamW step;
- gradient memory: G (K×D) and ``.grad`` (D), float32.

Writes benchmarks/results/finetune.{md,json}. Times come from a shared 2-core CPU.
"""

from __future__ import annotations

import argparse
import json
import platform
import time
from pathlib import Path

import torch

from finetune.train.batches import MicroBatch, micro_loss
from finetune.train.engines import Plan, make_engine
from finetune.train.partitioning import build
from refmoo import get_aggregator

OUT = Path(__file__).resolve().parent / "results"
MODELS = {
    "miniature": dict(vocab_size=512, hidden_size=64, intermediate_size=176,
                      num_hidden_layers=4, num_attention_heads=4, seq=32, batch=8),
    "100m": dict(vocab_size=32000, hidden_size=640, intermediate_size=1728,
                 num_hidden_layers=10, num_attention_heads=10, seq=32, batch=2),
}
METHODS = [("standard", None), ("full", "mgda"), ("bucket", "mgda:tensor"),
           ("bucket", "mgda:zero:5000000")]
K = 4


def build_model(spec: dict):
    from transformers import LlamaConfig, LlamaForCausalLM

    torch.manual_seed(0)
    cfg = {k: v for k, v in spec.items() if k not in ("seq", "batch")}
    config = LlamaConfig(**cfg, num_key_value_heads=cfg["num_attention_heads"],
                         max_position_embeddings=128, tie_word_embeddings=False)
    return LlamaForCausalLM(config).train()


def batches(spec: dict, step: int) -> list[list[MicroBatch]]:
    g = torch.Generator().manual_seed(step)
    B, T = spec["batch"], spec["seq"]
    out = []
    for _ in range(K):
        ids = torch.randint(spec["vocab_size"], (B, T), generator=g)
        out.append([MicroBatch(ids, torch.ones_like(ids), torch.ones(B, T - 1, dtype=torch.bool),
                               1.0 / (B * (T - 1)))])
    return out


def run(name: str, spec: dict, steps: int) -> list[dict]:
    rows = []
    for method, agg in METHODS:
        model = build_model(spec)
        aggregator, _, part = (agg or "mgda:tensor").partition(":")
        probe_batch = batches(spec, 0)[0][0]
        probe = lambda m=model, b=probe_batch: micro_loss(m, b)  # noqa: E731
        partition = build(part or "tensor", model, 1, probe)
        engine = make_engine("single", torch.device("cpu"))
        engine.wrap(model, Plan(method, get_aggregator(aggregator), partition, part or "tensor",
                                tuple(f"l{k}" for k in range(K)),
                                lambda m, b=probe_batch: micro_loss(m, b)))
        optimizer = torch.optim.AdamW(engine.parameters(), lr=1e-4)
        phases = []
        for step in range(steps):
            data = batches(spec, step)
            t0 = time.perf_counter()
            grads = engine.gradients(data, diagnose=False)
            t1 = time.perf_counter()
            optimizer.step()
            optimizer.zero_grad(set_to_none=True)
            t2 = time.perf_counter()
            phases.append({"backward": t1 - t0 - grads.aggregate_s - grads.diagnostics_s,
                           "aggregate": grads.aggregate_s, "optimizer": t2 - t1,
                           "step": t2 - t0 - grads.diagnostics_s,
                           "memory": grads.grad_memory_bytes})
        keep = phases[1:] or phases
        med = dict(min(keep, key=lambda p: p["step"]))  # the least disturbed step
        label = method if agg is None else f"{method} {agg}"
        rows.append({"model": name, "method": label, "params": partition.dim,
                     "buckets": len(partition) if method == "bucket" else 1,
                     "tokens_per_step": K * spec["batch"] * spec["seq"], **med})
        print(f"{name:9s} {label:24s} step {med['step']:.3f}s  backward {med['backward']:.3f}s "
              f"aggregate {med['aggregate']:.4f}s  optimizer {med['optimizer']:.3f}s  "
              f"grad mem {med['memory'] / 2**20:.1f} MiB", flush=True)
    return rows


def table(rows: list[dict]) -> str:
    lines = ["| model | D | method | buckets | step s | backward s | aggregate s | aggregate % "
             "| optimizer s | grad memory MiB | backward ÷ standard's |",
             "|---|---|---|---|---|---|---|---|---|---|---|"]
    base = {r["model"]: r["backward"] for r in rows if r["method"] == "standard"}
    for r in rows:
        lines.append(
            f"| {r['model']} | {r['params'] / 1e6:.2f}M | {r['method']} | {r['buckets']} | "
            f"{r['step']:.3f} | {r['backward']:.3f} | {r['aggregate']:.4f} | "
            f"{100 * r['aggregate'] / r['step']:.1f} | {r['optimizer']:.3f} | "
            f"{r['memory'] / 2**20:.1f} | {r['backward'] / base[r['model']]:.2f} |")
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--steps", type=int, default=3)
    parser.add_argument("--only", choices=sorted(MODELS))
    parser.add_argument("--threads", type=int, default=1,
                        help="1 by default: on a shared, oversubscribed machine two-thread "
                             "kernels stall on each other (measured: 8 s instead of 0.5 s)")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    rows = []
    for name, spec in MODELS.items():
        if args.only in (None, name):
            rows += run(name, spec, args.steps)
    OUT.mkdir(exist_ok=True)
    meta = {"machine": platform.processor() or platform.machine(), "torch": torch.__version__,
            "threads": torch.get_num_threads(), "steps": args.steps, "K": K}
    (OUT / "finetune.json").write_text(json.dumps({"meta": meta, "rows": rows}, indent=1))
    (OUT / "finetune.md").write_text(
        "# Trainer step by method (benchmarks/bench_finetune.py)\n\n"
        f"K = {K} languages, single engine, float32, AdamW, synthetic tokens; the fastest of "
        f"the steps after the first ({args.steps} run); {meta['threads']} threads, torch "
        f"{meta['torch']}.\n\n" + table(rows) + "\n")
    print(table(rows))


if __name__ == "__main__":
    main()
