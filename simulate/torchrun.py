"""The ``torchrun`` path: this process is one rank; rank 0 gathers and reports.

Every rank trains, the reports are gathered to rank 0 (``gather_object``, off
the accounted collectives), and rank 0 runs the single-process reference (and
its float64 shadow for float32 runs, :mod:`simulate.tolerance`) and computes
the metrics. With NCCL the model lives on ``cuda:LOCAL_RANK``; the
reference then runs on rank 0's device too.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import torch.distributed as dist

from .config import RunConfig
from .launch import RankInfo, run_torchrun


def _rank(info: RankInfo, configs: Sequence[RunConfig]) -> list[dict[str, Any]] | None:
    from .run import metrics, references, train_rank

    mine = train_rank(info, configs)
    gathered: list[Any] | None = [None] * info.world_size if info.rank == 0 else None
    dist.gather_object(mine, gathered, dst=0)
    if info.rank != 0:
        return None
    out = []
    cache: dict = {}
    for i, cfg in enumerate(configs):
        ranks = [gathered[r][i] for r in range(info.world_size)]
        refs = references(cfg, cache) if cfg.reference else (None, None)
        out.append(metrics(cfg, ranks, *refs))
    return out


def run_torchrun_many(configs: Sequence[RunConfig]) -> list[dict[str, Any]] | None:
    import os

    W = int(os.environ["WORLD_SIZE"])
    configs = [c.with_(world_size=W) for c in configs]
    return run_torchrun(_rank, (configs,), timeout_s=configs[0].timeout_s)
