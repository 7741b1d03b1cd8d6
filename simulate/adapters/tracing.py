"""Tracing inside the engine adapters: what each rank fed into the reduction, what the
reduction returned, and what the adapter handed back to the engine, in the trace
format of ``simulate/TRACE_FORMAT.md``, so that ``python -m refmoo verify DIR``
checks a real DDP, FSDP2 or DeepSpeed run end to end.

Turn it on by giving an adapter ``trace=AdapterTrace(directory, aggregator_name,
...)``; every rank builds its adapter with the same options and writes its own
files. The options are plain data (they can be handed to spawned ranks); each
adapter opens a :class:`Tracer` from them, with the partition, rank and dtype
it knows. The aggregator is named again because a trace stores a registry name
and its arguments, not an object; the adapter checks that the two agree.

Step numbers are the adapter's own count of steps, from 0; with ``every = n``
steps 0, n, 2n, ... are written and the others cost nothing.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
from torch import Tensor

from refmoo import Aggregator, Partition, get_aggregator
from refmoo.trace import TraceWriter

from ..trace_io import StepRecorder


@dataclass(frozen=True)
class AdapterTrace:
    """Where and what to trace. ``aggregator`` and ``aggregator_kwargs`` are the
    registry name and arguments of the adapter's aggregator (``"pcgrad"``,
    ``{"seed": 0}``); ``languages`` names the K rows (default ``"0"``..``"K-1"``)."""

    directory: str | Path
    aggregator: str
    aggregator_kwargs: Mapping[str, Any] = field(default_factory=dict)
    languages: Sequence[str] | None = None
    every: int = 1

    def __post_init__(self) -> None:
        if not isinstance(self.every, int) or self.every < 1:
            raise ValueError(f"every must be a positive integer, got {self.every!r}")

    def open(self, *, aggregator: Aggregator, partition: Partition, num_languages: int,
             rank: int, world_size: int, dtype: torch.dtype,
             parameters: Sequence[tuple[str, int, int, Sequence[int]]] | None,
             producer: str) -> Tracer:
        """The rank's tracer; raises ValueError when the options contradict the adapter."""
        named = get_aggregator(self.aggregator, **dict(self.aggregator_kwargs))
        # Reprs carry every constructor argument: equal reprs, same aggregation.
        if repr(named) != repr(aggregator):
            raise ValueError(f"the trace names aggregator {named!r}, the adapter runs "
                             f"{aggregator!r}: verify would recompute another aggregation")
        languages: Sequence[str] | int = num_languages
        if self.languages is not None:
            if len(self.languages) != num_languages:
                raise ValueError(f"the trace names {len(self.languages)} languages, the "
                                 f"adapter has {num_languages}")
            languages = list(self.languages)
        writer = TraceWriter(self.directory, partition=partition, aggregator=self.aggregator,
                             aggregator_kwargs=dict(self.aggregator_kwargs),
                             languages=languages, rank=rank, world_size=world_size,
                             dtype=dtype, parameters=parameters,
                             meta={"producer": producer, "every": self.every})
        return Tracer(writer, self.every)


class Tracer:
    """One rank's trace of the adapter's steps. The adapter calls :meth:`local`,
    :meth:`reduced` and :meth:`output` with flat columns as the values appear,
    and :meth:`end_step` once per step; outside traced steps they do nothing."""

    def __init__(self, writer: TraceWriter, every: int) -> None:
        self.recorder = StepRecorder(writer)
        self.every = every
        self.step = 0

    @property
    def active(self) -> bool:
        return self.step % self.every == 0

    def local(self, k: int, columns: Tensor, values: Tensor) -> None:
        if self.active:
            self.recorder.record(self.step, columns=columns, language=k, local=values)

    def reduced(self, k: int, columns: Tensor, values: Tensor) -> None:
        if self.active:
            self.recorder.record(self.step, columns=columns, language=k, reduced=values)

    def output(self, columns: Tensor, values: Tensor) -> None:
        if self.active:
            self.recorder.record(self.step, columns=columns, output=values)

    def end_step(self) -> Path | None:
        """Write the step's file (if traced) and move on to the next step."""
        path = self.recorder.flush() if self.active else None
        self.step += 1
        return path
