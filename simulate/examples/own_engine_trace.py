"""Write a refmoo trace from your own engine, then check it with ``python -m refmoo verify``.

Run: ``python simulate/examples/own_engine_trace.py /tmp/my-trace`` and then
``python -m refmoo verify /tmp/my-trace``.

"Your engine" here is a deliberately independent implementation: K = 2
languages, bucket-level MGDA in closed form (for two gradients the min-norm
weight is λ = clip(⟨g₂ − g₁, g₂⟩ / ‖g₁ − g₂‖², 0, 1)), buckets = parameter
tensors, and two "ranks" that each own half of the buckets and write their own
trace file, as the owners of a sharded engine would, with their local
gradients (before the reduction) so that verify checks the reduction too.
Replace the marked parts with your engine's locals, reduced gradients and
outputs.
"""

from __future__ import annotations

import sys

import torch
from torch import nn

from refmoo import per_tensor
from refmoo.partitions import flat_parameters
from refmoo.trace import TraceWriter, format_report, verify

LANGUAGES = ["en", "sw"]


def mgda_two(g1: torch.Tensor, g2: torch.Tensor) -> torch.Tensor:
    diff = g1 - g2
    denom = float(diff @ diff)
    lam = 0.5 if denom == 0.0 else min(1.0, max(0.0, float((g2 - g1) @ g2) / denom))
    return lam * g1 + (1 - lam) * g2


def main(out: str, steps: int = 3, ranks: int = 2) -> bool:
    torch.manual_seed(0)
    model = nn.Sequential(nn.Embedding(16, 8), nn.Linear(8, 16)).double()
    partition = per_tensor(model)  # bucket b of the trace = what your engine calls bucket b
    spans = flat_parameters(model)
    owner = [b * ranks // len(partition) for b in range(len(partition))]
    writers = [TraceWriter(out, partition=partition, aggregator="mgda", languages=LANGUAGES,
                           rank=r, world_size=ranks, dtype=torch.float64,
                           parameters=[(s.name, s.offset, s.numel, s.shape) for s in spans],
                           meta={"producer": "own_engine_trace.py"})
               for r in range(ranks)]
    opt = torch.optim.SGD(model.parameters(), lr=0.1)
    for step in range(steps):
        # --- your engine: the reduced per-language gradients, flat [K, D] ---
        # Each "rank" holds half of every language's batch; its loss is its share
        # of the global mean loss, so the reduced (summed) gradient is the global one.
        local = [[] for _ in range(ranks)]
        for k in range(len(LANGUAGES)):
            x = torch.randint(16, (8,), generator=torch.Generator().manual_seed(step * 10 + k))
            target = (x * (k + 2)) % 16
            for r, (xr, tr) in enumerate(zip(x.chunk(ranks), target.chunk(ranks), strict=True)):
                model.zero_grad()
                (nn.functional.cross_entropy(model(xr), tr, reduction="sum") / len(x)).backward()
                local[r].append(torch.cat([p.grad.reshape(-1) for p in model.parameters()]))
        L = [torch.stack(rows) for rows in local]  # rank r's local gradients [K, D]
        G = sum(L[1:], L[0])  # --- your engine: the reduction (all-reduce, reduce-scatter) ---
        # --- your engine: each owner aggregates its buckets and writes them ---
        direction = torch.empty(G.shape[1], dtype=G.dtype)
        for r in range(ranks):
            cols = torch.cat([partition.indices(b) for b in range(len(partition))
                              if owner[b] == r])
            out_r = torch.cat([mgda_two(G[0, partition.indices(b)], G[1, partition.indices(b)])
                               for b in range(len(partition)) if owner[b] == r])
            # The locals are optional: with them, verify also checks the reduction.
            writers[r].write(step, cols, G[:, cols], out_r,
                             local_columns=torch.arange(G.shape[1]), local_grads=L[r])
            direction[cols] = out_r
        # --- your engine: the update ---
        for s, p in zip(spans, model.parameters(), strict=True):
            p.grad = direction[s.offset:s.stop].view_as(p).clone()
        opt.step()
    report = verify(out)
    print(format_report(report, worst=4))
    return report.ok


if __name__ == "__main__":
    sys.exit(0 if main(sys.argv[1] if len(sys.argv) > 1 else "own-engine-trace") else 1)
