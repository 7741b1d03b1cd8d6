"""Where a run executes: the process group, the device and the backend.

``single`` runs in this process on ``cuda`` when available, else the CPU.
The other engines run one process per rank under ``torchrun`` (its env://
variables must be set): NCCL and ``cuda:LOCAL_RANK`` when CUDA is available,
else gloo on the CPU, as ``simulate.launch.run_torchrun`` chooses.
"""

from __future__ import annotations

import datetime
import os
from dataclasses import dataclass

import torch
import torch.distributed as dist

from finetune.errors import ConfigError
from simulate.launch import under_torchrun


@dataclass
class Context:
    rank: int
    world_size: int
    device: torch.device
    backend: str | None
    owns_group: bool = False

    def close(self) -> None:
        if self.owns_group and dist.is_initialized():
            dist.destroy_process_group()


def setup(engine: str, timeout_s: float = 600.0) -> Context:
    if engine == "single":
        device = torch.device("cuda" if torch.cuda.is_available() else "cpu")
        return Context(0, 1, device, None)
    if dist.is_initialized():  # the caller made the group (tests, notebooks)
        device = _device()
        return Context(dist.get_rank(), dist.get_world_size(), device, dist.get_backend())
    if not under_torchrun():
        raise ConfigError(f"--engine {engine} runs one process per rank: start it with "
                          "`torchrun --standalone --nproc-per-node N -m finetune train ...`")
    backend = "nccl" if torch.cuda.is_available() else "gloo"
    device = _device()
    if backend == "nccl":
        torch.cuda.set_device(device)
    dist.init_process_group(backend, timeout=datetime.timedelta(seconds=timeout_s))
    return Context(dist.get_rank(), dist.get_world_size(), device, backend, owns_group=True)


def _device() -> torch.device:
    if torch.cuda.is_available():
        return torch.device("cuda", int(os.environ.get("LOCAL_RANK", "0")))
    return torch.device("cpu")


def train_on_rank(info, configs) -> list[str]:
    """A rank function for ``simulate.launch.spawn``: train every config on this rank of
    an already-made process group (several runs for one start-up of the ranks)."""
    from .loop import train

    return [str(train(c, progress=False).final) for c in configs]
