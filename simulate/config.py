"""One run's settings, picklable so that they travel to every rank."""

from __future__ import annotations

import math
from dataclasses import dataclass, field, replace

import torch

from refmoo import Aggregator, get_aggregator

from .workload import WorkloadConfig


@dataclass(frozen=True)
class RunConfig:
    strategy: str = "bucket"
    aggregator: str = "mgda"
    aggregator_kwargs: dict = field(default_factory=dict)
    partition: str = "chunks:1024"
    world_size: int = 2
    steps: int = 3
    optimizer: str = "sgd"
    lr: float = 0.1
    momentum: float = 0.0
    workload: WorkloadConfig = field(default_factory=WorkloadConfig)
    timeout_s: float = 60.0
    trace_dir: str | None = None
    reference: bool = True
    ordered_reduction: bool = False
    """Reduce with an all-to-all and a rank-order sum: bitwise equal to the reference
    at any W (the native collectives are only at W = 2), same bytes per rank."""
    owners: tuple[int, ...] | None = None
    """Explicit bucket owners; default: the builder's (zero, fsdp2) or balanced runs."""
    fault: tuple[int, int] | None = None
    """Fault injection for tests and demos: (rank, step) at which that rank fails
    in the middle of the step, after its first language's reduction."""
    fault_kind: str = "raise"
    """``raise`` an exception, or ``hang`` (sleep forever)."""
    bug: str | None = None
    """A deliberate arithmetic bug for negative controls, on the ranks only (the
    reference stays right): ``no-update`` (the optimizer steps with lr 0) or
    ``extra-1/W`` (language 1's loss divided by W on every rank, so its reduced
    gradient comes out W times too small). The division happens before the
    backward pass, so each rank's locals are divided too and a trace stays
    self-consistent: ``refmoo verify`` passes it, and only the comparison with
    the reference run catches it (a trace checks the reduction and the
    aggregation, not the losses the engine was given)."""

    def validate(self) -> RunConfig:
        """Fail in the parent, with a clear message, on what would fail on every rank."""
        from refmoo import GramAggregator

        from .strategies import STRATEGIES

        if self.strategy not in STRATEGIES:
            raise ValueError(f"unknown strategy {self.strategy!r}; choose from "
                             f"{', '.join(STRATEGIES)}")
        if self.world_size < 1:
            raise ValueError(f"world size must be at least 1, got {self.world_size}")
        if self.steps < 1:
            raise ValueError(f"steps must be at least 1, got {self.steps}")
        if not (self.lr >= 0 and math.isfinite(self.lr)):
            raise ValueError(f"lr must be a finite number >= 0, got {self.lr}")
        if not 0 <= self.momentum < 1:
            raise ValueError(f"momentum must lie in [0, 1), got {self.momentum}")
        if not self.timeout_s > 0:
            raise ValueError(f"timeout must be positive, got {self.timeout_s}")
        if self.optimizer not in ("sgd", "adam", "adamw"):
            raise ValueError(f"unknown optimizer {self.optimizer!r}; choose sgd, adam or adamw")
        if self.bug not in (None, "no-update", "extra-1/W"):
            raise ValueError(f"bug must be None, no-update or extra-1/W, got {self.bug!r}")
        self._validate_workload()
        agg = self.make_aggregator()
        if self.strategy == "full-gram" and not isinstance(agg, GramAggregator):
            raise ValueError(f"full-gram needs a Gram-based aggregator; {agg!r} is not one")
        if self.trace_dir and STRATEGIES[self.strategy].single_backward:
            raise ValueError(f"{self.strategy!r} reduces only the mean gradient: nothing "
                             "per-language to trace")
        empty = [k for k, n in enumerate(self.workload.batch) if n < 1]
        if empty or not self.workload.batch:
            raise ValueError(f"languages {empty} have no data at all (batch {self.workload.batch}"
                             "): a language needs at least one sequence per step globally")
        if self.fault_kind not in ("raise", "hang"):
            raise ValueError(f"fault_kind must be raise or hang, got {self.fault_kind!r}")
        return self

    def _validate_workload(self) -> None:
        wl = self.workload
        if wl.model not in ("gpt2", "mlp"):
            raise ValueError(f"unknown model {wl.model!r}; choose gpt2 or mlp")
        for name in ("vocab", "width", "layers", "heads"):
            if getattr(wl, name) < 1:
                raise ValueError(f"{name} must be at least 1, got {getattr(wl, name)}")
        if wl.seq_len < 2:
            raise ValueError(f"seq-len must be at least 2 (a next-token loss), got {wl.seq_len}")
        if wl.model == "gpt2" and wl.width % wl.heads:
            raise ValueError(f"gpt2 needs width divisible by heads, got {wl.width} and "
                             f"{wl.heads}")

    def with_(self, **changes) -> RunConfig:
        return replace(self, **changes)

    def make_aggregator(self) -> Aggregator:
        return get_aggregator(self.aggregator, **self.aggregator_kwargs)

    def make_optimizer(self, params: list[torch.nn.Parameter]) -> torch.optim.Optimizer:
        if self.optimizer == "sgd":
            return torch.optim.SGD(params, lr=self.lr, momentum=self.momentum)
        if self.optimizer == "adam":
            return torch.optim.Adam(params, lr=self.lr)
        if self.optimizer == "adamw":
            return torch.optim.AdamW(params, lr=self.lr)
        raise ValueError(f"unknown optimizer {self.optimizer!r}; choose sgd, adam or adamw")
