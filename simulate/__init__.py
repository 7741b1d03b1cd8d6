"""simulate: bucket-level MOO over real torch.distributed collectives.

The engine (:class:`Engine`) runs one of five strategies on every rank; the
simulator (:func:`spawn`, :func:`run_many`) starts W ranks on one machine with
gloo, and the same engine runs under ``torchrun`` across machines (NCCL on
GPUs). Every collective is counted (:class:`Comm`) and compared with the ring
formulas (:mod:`simulate.formulas`); results are compared with the
single-process refmoo reference (:func:`reference_run`). Adapters for DDP,
FSDP2 and DeepSpeed ZeRO-2 live in :mod:`simulate.adapters`.
"""

from .comm import Comm, ring_bytes
from .config import RunConfig
from .engine import Engine, StepReport
from .launch import LaunchError, RankError, RankInfo, spawn
from .layout import ShardLayout, balanced_owners
from .reference import reference_run
from .run import metrics, run_many, run_ranks
from .strategies import STRATEGIES
from .workload import WorkloadConfig

__all__ = [
    "STRATEGIES",
    "Comm",
    "Engine",
    "LaunchError",
    "RankError",
    "RankInfo",
    "RunConfig",
    "ShardLayout",
    "StepReport",
    "WorkloadConfig",
    "balanced_owners",
    "metrics",
    "reference_run",
    "ring_bytes",
    "run_many",
    "run_ranks",
    "spawn",
]
