"""Every collective the engine issues goes through :class:`Comm`, which counts it.

``ordered=True`` replaces gloo's/NCCL's reductions by an all-to-all and a
local sum in rank order, bitwise equal to the reference's plain sum at any W
(see :meth:`Comm._ordered_reduce_scatter`).

For each call the ledger records the call, the elements moved and the bytes a
rank sends under the ring algorithms of DESIGN.md (all-reduce 2(W−1)/W·N,
reduce-scatter and all-gather (W−1)/W·N, with N the full message size in
elements). gloo exposes no byte counters, so those are the "issued" bytes.
On Linux the ledger also reads the bytes the process actually wrote to its
sockets (``wchar`` in ``/proc/self/io``) around each call: the "wire" bytes,
which include gloo's headers and reveal its real algorithm (its reduce-scatter
moves as much as an all-reduce).
"""

from __future__ import annotations

from collections import defaultdict
from dataclasses import dataclass, field
from fractions import Fraction

import torch
import torch.distributed as dist
from torch import Tensor

from .timing import PhaseTimer

_IO = "/proc/self/io"


def ring_bytes(op: str, numel: int, itemsize: int, world_size: int) -> Fraction:
    """Bytes one rank sends for one ring collective over a message of ``numel`` elements.

    >>> ring_bytes("all_reduce", 1000, 4, 4)
    Fraction(6000, 1)
    >>> ring_bytes("reduce_scatter", 1000, 4, 4), ring_bytes("all_gather", 1000, 4, 1)
    (Fraction(3000, 1), Fraction(0, 1))
    """
    W = world_size
    factor = {"all_reduce": Fraction(2 * (W - 1), W),
              "reduce_scatter": Fraction(W - 1, W),
              "all_gather": Fraction(W - 1, W)}[op]
    return factor * numel * itemsize


def _wchar() -> int | None:
    try:
        with open(_IO) as f:
            for line in f:
                if line.startswith("wchar:"):
                    return int(line.split()[1])
    except OSError:
        return None
    return None


@dataclass
class CollectiveStats:
    calls: int = 0
    elements: int = 0
    bytes: Fraction = field(default_factory=Fraction)
    wire_bytes: int = 0


class Comm:
    """Counted wrappers of the three collectives the strategies need.

    Keys are ``"<op>:<purpose>"`` (``"reduce_scatter:grad"``, ``"all_reduce:gram"``)
    so the accounting says what each byte was for.
    """

    def __init__(self, group=None, timer: PhaseTimer | None = None, *,
                 ordered: bool = False) -> None:
        self.group = group
        self.world_size = dist.get_world_size(group)
        self.rank = dist.get_rank(group)
        self.timer = timer if timer is not None else PhaseTimer()
        self.ordered = ordered
        self.ledger: dict[str, CollectiveStats] = defaultdict(CollectiveStats)
        self.memory = None  # a GradMemory, to count the ordered reduction's receive buffer
        self._has_io = _wchar() is not None

    # -- collectives --------------------------------------------------------
    def all_reduce(self, tensor: Tensor, purpose: str) -> Tensor:
        """In-place sum over ranks."""
        with self._record("all_reduce", purpose, tensor.numel(), tensor.element_size()):
            if self.ordered:
                self._ordered_all_reduce(tensor)
            else:
                dist.all_reduce(tensor, group=self.group)
        return tensor

    def reduce_scatter(self, output: Tensor, input: Tensor, purpose: str) -> Tensor:
        """Sum ``input`` (``W·n`` elements) over ranks; this rank keeps chunk ``rank`` (``n``)."""
        if input.numel() != output.numel() * self.world_size:
            raise ValueError(f"reduce-scatter input has {input.numel()} elements, expected "
                             f"{self.world_size} × {output.numel()}")
        with self._record("reduce_scatter", purpose, input.numel(), input.element_size()):
            if self.ordered:
                self._ordered_reduce_scatter(output, input)
            else:
                _reduce_scatter(output, input, self.group)
        return output

    def all_gather(self, output: Tensor, input: Tensor, purpose: str) -> Tensor:
        """Concatenate every rank's ``input`` (``n`` elements) into ``output`` (``W·n``)."""
        if output.numel() != input.numel() * self.world_size:
            raise ValueError(f"all-gather output has {output.numel()} elements, expected "
                             f"{self.world_size} × {input.numel()}")
        with self._record("all_gather", purpose, output.numel(), output.element_size()):
            _all_gather(output, input, self.group)
        return output

    def all_reduce_async(self, tensor: Tensor, purpose: str) -> torch.futures.Future:
        """In-place sum over ranks, returning a future (for DDP comm hooks). Counted
        when issued; its time and wire bytes overlap the backward and are not."""
        s = self.ledger[f"all_reduce:{purpose}"]
        s.calls += 1
        s.elements += tensor.numel()
        s.bytes += ring_bytes("all_reduce", tensor.numel(), tensor.element_size(),
                              self.world_size)
        return dist.all_reduce(tensor, group=self.group, async_op=True).get_future()

    # -- the ordered reduction ---------------------------------------------------
    # An all-to-all brings every rank's copy of chunk r to rank r, which adds
    # them in rank order, ((t0 + t1) + t2) + ...: the order of the reference's
    # plain sum, so results are bitwise reproducible at any W. Each rank sends
    # (W−1)/W·N, exactly the ring reduce-scatter's bytes.
    def _ordered_reduce_scatter(self, output: Tensor, input: Tensor) -> None:
        recv = torch.empty_like(input)
        if self.memory is not None:
            self.memory.hold("ordered_recv", recv)
        dist.all_to_all_single(recv, input, group=self.group)
        parts = recv.view(self.world_size, -1)
        output.view(-1).copy_(parts[0])
        for r in range(1, self.world_size):
            output.view(-1).add_(parts[r])
        if self.memory is not None:
            self.memory.drop("ordered_recv")

    def _ordered_all_reduce(self, tensor: Tensor) -> None:
        W, n = self.world_size, tensor.numel()
        chunk = -(-n // W)
        padded = tensor.new_zeros(W * chunk)
        padded[:n] = tensor.reshape(-1)
        mine = tensor.new_empty(chunk)
        if self.memory is not None:
            self.memory.hold("ordered_padded", padded)
            self.memory.hold("ordered_mine", mine)
        self._ordered_reduce_scatter(mine, padded)
        _all_gather(padded, mine, self.group)
        tensor.view(-1).copy_(padded[:n])
        if self.memory is not None:
            self.memory.drop("ordered_padded")
            self.memory.drop("ordered_mine")

    # -- accounting ---------------------------------------------------------
    def _record(self, op: str, purpose: str, numel: int, itemsize: int):
        return _Recording(self, f"{op}:{purpose}", op, numel, itemsize)

    def snapshot(self) -> dict[str, CollectiveStats]:
        return {k: CollectiveStats(v.calls, v.elements, v.bytes, v.wire_bytes)
                for k, v in self.ledger.items()}

    def reset(self) -> None:
        self.ledger.clear()


class _Recording:
    def __init__(self, comm: Comm, key: str, op: str, numel: int, itemsize: int) -> None:
        self.comm, self.key, self.op, self.numel, self.itemsize = comm, key, op, numel, itemsize

    def __enter__(self):
        self.phase = self.comm.timer.phase("communication")
        self.phase.__enter__()
        self.io0 = _wchar() if self.comm._has_io else None
        return self

    def __exit__(self, *exc) -> None:
        io1 = _wchar() if self.comm._has_io else None
        self.phase.__exit__(*exc)
        if exc[0] is not None:
            return
        s = self.comm.ledger[self.key]
        s.calls += 1
        s.elements += self.numel
        s.bytes += ring_bytes(self.op, self.numel, self.itemsize, self.comm.world_size)
        if self.io0 is not None and io1 is not None:
            s.wire_bytes += io1 - self.io0


def _reduce_scatter(output: Tensor, input: Tensor, group) -> None:
    # torch 2.13 renamed the flat-tensor collectives to *_single; keep both.
    fn = getattr(dist, "reduce_scatter_single", None) or dist.reduce_scatter_tensor
    fn(output, input, group=group)


def _all_gather(output: Tensor, input: Tensor, group) -> None:
    fn = getattr(dist, "all_gather_single", None) or dist.all_gather_into_tensor
    fn(output, input, group=group)


