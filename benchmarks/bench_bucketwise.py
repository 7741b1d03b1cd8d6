"""bucketwise(MGDA) against one Gram pass on a GPT-2-style model, for every builder.

The model is GPT-2 from a ``transformers`` config (no hub access: the weights are
random, only the parameter shapes matter): vocab 32,000, 512 positions, width
512, 6 layers, 8 heads, tied LM head — 35,561,472 parameters, 76 tensors. G is a
K × D float32 matrix of Gaussian rows (K = 4).

For each partition the script interleaves, ``--repeats`` times: one ``G @ G.T``
(the reference Gram pass), one tiled Gram pass (``bmm`` over 4096-column views:
what one pass over G costs when BLAS runs on every core), and one
``bucketwise(MGDA(), G, partition)``. Ratios are taken per repetition (the three
calls run back to back, so they share the machine's load at that moment) and
their median is reported, in wall-clock and in process CPU time (the latter is
less sensitive to other users of a shared machine). The first call, which builds
and caches the column tiling, is timed separately.

Equal chunks of at most 4096 columns (``chunks:N``) go through the compiled kernel
of ``refmoo.fused_mgda`` (one pass over G: each bucket's Gram, weights and update
while it is in cache); for those rows each repetition also times the eager path
(the kernel switched off), and its stage split (grams / solve / combine) is the
eager path's. The first call of a fresh machine also builds the kernel (about 10 s,
then cached); run once before timing.

Returning the update means writing a fresh D-vector, and on a VM the first touch
of fresh pages is slow: each configuration also times ``torch.empty(D).fill_(0)``
against a fill of memory already resident, so the allocation's share is visible.
PyTorch's allocator asks for transparent huge pages when ``THP_MEM_ALLOC_ENABLE=1``
is set, which removes most of that cost; a training loop avoids it altogether by
passing a resident buffer as ``out=``, which each repetition also times. The
same holds for the temporaries of one call (Grams, the solver's batch vectors):
in a process as large as this one, glibc maps them afresh on every call unless
``MALLOC_MMAP_THRESHOLD_`` and ``MALLOC_TRIM_THRESHOLD_`` keep them on the heap.

Run: ``python benchmarks/bench_bucketwise.py [--repeats 5] [--threads 1] [--only per_tensor,...]
[--append]``. Writes benchmarks/results/bucketwise.{json,md}; ``--append`` adds this
configuration to the runs already there (same model and partitions).
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import platform
import statistics
import sys
import time
from pathlib import Path
from unittest import mock

import torch

from refmoo import MGDA, Partition, bucketwise, fused_mgda
from refmoo.partitions import (
    ddp_buckets,
    fsdp2_units,
    gradient_ready_order,
    per_module,
    per_tensor,
    zero_buckets,
)
from refmoo.partitions._partition import column_tiling, equal_chunk_width

bw = sys.modules["refmoo.bucketwise"]  # the module (refmoo exports the function)

K = 4
# glibc malloc settings that keep a large process's temporaries on the heap (recorded
# in the run's heading when set; see RESULTS.md on page faults).
MALLOC_SETTINGS = ("MALLOC_MMAP_THRESHOLD_", "MALLOC_TRIM_THRESHOLD_")
ZERO_BUCKET = 5_000_000


def gpt2_model():
    from transformers import GPT2Config, GPT2LMHeadModel
    from transformers.models.gpt2.modeling_gpt2 import GPT2Block

    logging.getLogger("transformers").setLevel(logging.ERROR)
    torch.manual_seed(0)
    config = GPT2Config(vocab_size=32_000, n_positions=512, n_embd=512, n_layer=6, n_head=8,
                        bos_token_id=0, eos_token_id=0)
    return GPT2LMHeadModel(config), GPT2Block


def measured_ready_order(model) -> list[str]:
    """The gradient-ready order of one real backward (what DDP and ZeRO-2 see)."""
    gen = torch.Generator().manual_seed(0)
    ids = torch.randint(0, model.config.vocab_size, (1, 32), generator=gen)
    order = gradient_ready_order(model, lambda: model(ids, labels=ids).loss)
    model.zero_grad(set_to_none=True)
    return order


def partitions(model, block, D):
    ready = measured_ready_order(model)
    yield "per_tensor", lambda: per_tensor(model)
    yield "per_module", lambda: per_module(model)
    yield "zero_buckets(5e6) (stage 2, reverse order)", lambda: zero_buckets(model, ZERO_BUCKET)
    yield "zero_buckets(5e6, stage=1) (registration order)", \
        lambda: zero_buckets(model, ZERO_BUCKET, stage=1)
    yield "zero_buckets(5e6, ready order)", \
        lambda: zero_buckets(model, ZERO_BUCKET, ready_order=ready)
    yield "zero_buckets(5e6, world_size=4)", \
        lambda: zero_buckets(model, ZERO_BUCKET, world_size=4)
    yield "zero_buckets(5e6, world_size=4, ready order)", \
        lambda: zero_buckets(model, ZERO_BUCKET, world_size=4, ready_order=ready)
    yield "ddp_buckets (reverse order)", lambda: ddp_buckets(model)
    yield "ddp_buckets (ready order)", lambda: ddp_buckets(model, ready_order=ready)
    yield "fsdp2_units(GPT2Block)", lambda: fsdp2_units(model, block)
    yield "fsdp2_units(GPT2Block, world_size=4)", lambda: fsdp2_units(model, block, world_size=4)
    yield "single", lambda: Partition.single(D)
    for size in (4096, 1024, 256, 64):
        yield f"chunks:{size}", lambda size=size: Partition.chunks(D, size)


def timed(fn):
    """(wall seconds, process CPU seconds, result)."""
    w, c = time.perf_counter(), time.process_time()
    out = fn()
    return time.perf_counter() - w, time.process_time() - c, out


def tiled_gram(G: torch.Tensor, width: int = 4096) -> torch.Tensor:
    """One pass over G as a batched product of [K, width] views (the floor)."""
    T = G.shape[1] // width
    tiles = G[:, :T * width].view(G.shape[0], T, width).transpose(0, 1)
    Q = torch.bmm(tiles, tiles.transpose(1, 2)).sum(0)
    rest = G[:, T * width:]
    return Q + rest @ rest.T


def components(G, p, repeats):
    """Median wall ms of the three stages of bucketwise(MGDA)."""
    agg, keys = MGDA(), torch.arange(len(p))
    tiling = column_tiling(p)
    Q, e = bw.scaled_bucket_grams(G, p)
    w = bw._weights(agg, Q, e, keys)  # the path bucketwise takes (no Gram check)
    stages = {"grams": lambda: bw.scaled_bucket_grams(G, p),
              "solve": lambda: bw._weights(agg, Q, e, keys),
              "combine": lambda: bw._combine_tiles(G, w, tiling)}
    return {name: 1e3 * statistics.median(timed(fn)[0] for _ in range(repeats))
            for name, fn in stages.items()}


def loop_agreement(G, p, out) -> float:
    """max |bucketwise - per-bucket MGDA| / max |G|, over every bucket (builders only)."""
    worst = 0.0
    for idx in p:
        worst = max(worst, float((out[idx] - MGDA()(G[:, idx])).abs().max()))
    return worst / float(G.abs().max())


def eager_bucketwise(G, p):
    """bucketwise(MGDA) with the compiled kernel switched off (its eager path)."""
    with mock.patch.object(fused_mgda, "applies", return_value=False):
        return bucketwise(MGDA(), G, p)


def measure(name, build, G, repeats):
    t_build, _, p = timed(build)
    first, _, out = timed(lambda: bucketwise(MGDA(), G, p))
    width = equal_chunk_width(p)
    fused = width is not None and fused_mgda.applies(MGDA(), G, width)
    rows, into, eager = [], [], []
    resident = torch.zeros(G.shape[1])
    # One untimed round first: on this VM the host pages idle memory out, and the
    # first partition measured otherwise pays for bringing G back (seen: 3.2× medians).
    G @ G.T, tiled_gram(G), bucketwise(MGDA(), G, p, out=resident)
    for _ in range(repeats):
        g = timed(lambda: G @ G.T)
        f = timed(lambda: tiled_gram(G))
        b = timed(lambda: bucketwise(MGDA(), G, p))
        o = timed(lambda: bucketwise(MGDA(), G, p, out=resident))
        if fused:
            eager.append(timed(lambda: eager_bucketwise(G, p))[0] / g[0])
        rows.append((g, f, b))
        into.append(o[0] / g[0])
    med = statistics.median
    tiling = column_tiling(p)
    result = {
        "partition": name,
        "path": "fused" if fused else "eager",
        "ratio_eager_path": med(eager) if eager else None,
        "buckets": len(p),
        "tile_width": tiling.width,
        "mixed_tiles": int(tiling.mixed_bucket.shape[0]),
        "build_s": t_build,
        "first_call_s": first,
        "gram_ms": 1e3 * med(g[0] for g, _, _ in rows),
        "tiled_gram_ms": 1e3 * med(f[0] for _, f, _ in rows),
        "bucketwise_ms": 1e3 * med(b[0] for _, _, b in rows),
        "ratio_wall": med(b[0] / g[0] for g, _, b in rows),
        "ratio_wall_range": [min(b[0] / g[0] for g, _, b in rows),
                             max(b[0] / g[0] for g, _, b in rows)],
        "ratio_cpu": med(b[1] / g[1] for g, _, b in rows),
        "ratio_into_out": med(into),
        "ratio_into_out_range": [min(into), max(into)],
        "ratio_to_tiled_wall": med(b[0] / f[0] for _, f, b in rows),
        "stages_ms": components(G, p, max(3, repeats // 2)),
    }
    if len(p) <= 200:
        result["loop_agreement"] = loop_agreement(G, p, out)
    if fused:  # the kernel's answer against the eager path's, relative to max |G|
        result["eager_agreement"] = float((out - eager_bucketwise(G, p)).abs().max()
                                          / G.abs().max())
    return result


def output_write_ms(D: int, repeats: int) -> dict:
    """Median ms to write a fresh D-vector versus one already resident."""
    resident = torch.empty(D)
    fresh = [timed(lambda: torch.empty(D).fill_(0))[0] for _ in range(repeats)]
    again = [timed(lambda: resident.fill_(0))[0] for _ in range(repeats)]
    return {"fresh_ms": 1e3 * statistics.median(fresh),
            "resident_ms": 1e3 * statistics.median(again)}


def markdown(runs) -> str:
    meta = runs[0]["meta"]
    lines = [
        "# bucketwise(MGDA) on a GPT-2-style model",
        "",
        f"Model: {meta['model']}; G is K × D = {K} × {meta['D']:,} float32 (Gaussian rows). "
        "Reference: one `G @ G.T`. Tiled pass: the same Gram as one batched product over "
        "4096-column views, i.e. one read of G on every core (the floor of any bucket pass). "
        "Machine: shared, so wall times vary by tens of percent between runs; every figure "
        "is a median over interleaved repetitions, ratios taken per repetition.",
        "",
    ]
    for run in runs:
        lines += run_table(run["meta"], run["results"])
    lines += [
        "*ratio*: bucketwise(MGDA) / `G @ G.T`, wall clock. *into `out=`*: the same with the "
        "update written into a resident D-vector (`bucketwise(..., out=buffer)`, as in a "
        "training loop), so without the first touch of fresh pages. *CPU-time ratio*: the same in "
        "process CPU time. *first call*: builds and caches the tiling (once per partition). "
        "*vs per-bucket loop*: max |bucketwise − MGDA()(G^b)| / max|G| (float32). *path*: "
        "`fused` where `refmoo.fused_mgda`'s compiled kernel takes the call (equal chunks of "
        "at most 4096 columns), with the eager path's ratio, stage times and agreement (max "
        "|fused − eager| / max|G|) alongside.",
        "",
    ]
    return "\n".join(lines)


def run_table(meta, results) -> list[str]:
    write = meta["output_write"]
    lines = [
        f"## {meta['config']}",
        "",
        f"{meta['machine']}, torch {meta['torch']} ({meta['threads']} threads), Python "
        f"{meta['python']}, {meta['repeats']} repetitions; load average (1 min) "
        f"{meta['load_before']:.1f} before, {meta['load_after']:.1f} after. Writing a fresh "
        f"D-vector: {write['fresh_ms']:.0f} ms (resident memory: {write['resident_ms']:.0f} ms).",
        "",
        "| partition | buckets | path | tile width (mixed tiles) | `G @ G.T` ms | tiled pass ms "
        "| bucketwise ms | **ratio** (min–max) | into `out=` (min–max) | CPU-time ratio "
        "| vs tiled pass | eager path: ratio, grams / solve / combine ms | first call s "
        "| vs per-bucket loop (vs eager path) |",
        "|---|---:|---|---|---:|---:|---:|---:|---:|---:|---:|---|---:|---:|",
    ]
    for r in results:
        s = r["stages_ms"]
        agree = f"{r['loop_agreement']:.1e}" if "loop_agreement" in r else "–"
        if "eager_agreement" in r:
            agree += f" ({r['eager_agreement']:.1e})"
        lo, hi = r["ratio_wall_range"]
        into = "–"
        if "ratio_into_out" in r:  # runs saved before bucketwise took out=
            olo, ohi = r["ratio_into_out_range"]
            into = f"{r['ratio_into_out']:.2f}× ({olo:.2f}–{ohi:.2f})"
        path = r.get("path", "eager")  # runs saved before the kernel existed: eager
        eager = f"{r['ratio_eager_path']:.2f}×, " if r.get("ratio_eager_path") else ""
        lines.append(
            f"| `{r['partition']}` | {r['buckets']:,} | {path} "
            f"| {r['tile_width']} ({r['mixed_tiles']}) "
            f"| {r['gram_ms']:.0f} | {r['tiled_gram_ms']:.0f} | "
            f"{r['bucketwise_ms']:.0f} | **{r['ratio_wall']:.2f}×** ({lo:.2f}–{hi:.2f}) | "
            f"{into} | {r['ratio_cpu']:.2f}× | {r['ratio_to_tiled_wall']:.2f}× | "
            f"{eager}{s['grams']:.0f} / {s['solve']:.0f} / {s['combine']:.0f} | "
            f"{r['first_call_s']:.2f} | {agree} |")
    return lines + [""]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--only", default="", help="comma-separated substrings of partition names")
    parser.add_argument("--threads", type=int, default=0, help="torch threads (0: default)")
    parser.add_argument("--append", action="store_true", help="keep the runs already saved")
    parser.add_argument("--out", default=str(Path(__file__).parent / "results"))
    args = parser.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    model, block = gpt2_model()
    D = sum(p.numel() for p in model.parameters())
    G = torch.randn(K, D, generator=torch.Generator().manual_seed(1))
    meta = {
        "machine": f"{platform.machine()}, {os.cpu_count()} cores",
        "torch": torch.__version__, "threads": torch.get_num_threads(),
        "python": platform.python_version(), "repeats": args.repeats, "D": D,
        "model": "GPT-2 (transformers config: vocab 32000, 512 positions, width 512, "
                 "6 layers, 8 heads, tied head), 35.6M parameters, 76 tensors",
        "load_before": os.getloadavg()[0],
        "config": f"{torch.get_num_threads()} thread(s), "
                  f"THP_MEM_ALLOC_ENABLE={os.environ.get('THP_MEM_ALLOC_ENABLE', 'unset')}"
                  + "".join(f", {k}={os.environ[k]}" for k in MALLOC_SETTINGS if k in os.environ),
        "output_write": output_write_ms(D, args.repeats),
    }
    wanted = [w for w in args.only.split(",") if w]
    results = []
    for name, build in partitions(model, block, D):
        if wanted and not any(w in name for w in wanted):
            continue
        r = measure(name, build, G, args.repeats)
        results.append(r)
        s = r["stages_ms"]
        print(f"{name:48s} M={r['buckets']:>7,} {r['path']} ratio {r['ratio_wall']:.2f}x "
              f"(cpu {r['ratio_cpu']:.2f}x, vs tiled {r['ratio_to_tiled_wall']:.2f}x)  "
              f"gram {r['gram_ms']:.0f} ms  grams/solve/combine "
              f"{s['grams']:.0f}/{s['solve']:.0f}/{s['combine']:.0f} ms", flush=True)
    meta["load_after"] = os.getloadavg()[0]
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    saved = out / "bucketwise.json"
    runs = json.loads(saved.read_text())["runs"] if args.append and saved.exists() else []
    runs.append({"meta": meta, "results": results})
    saved.write_text(json.dumps({"runs": runs}, indent=1))
    (out / "bucketwise.md").write_text(markdown(runs))
    print(f"wrote {out / 'bucketwise.md'}")


if __name__ == "__main__":
    main()
