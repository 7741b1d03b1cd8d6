"""Which rank owns which bucket, and how a flat gradient is laid out for the collectives.

Ownership is by whole bucket, so an owner can aggregate its buckets without
seeing anyone else's columns. The default assignment cuts the bucket sequence
into W contiguous runs of near-equal size (ZeRO's flat partitioning at bucket
granularity); builders that know the engine's own ownership (ZeRO, FSDP2)
pass it explicitly. Shards are padded to the largest one, because the flat
reduce-scatter and all-gather need equal chunks; the padding is sent and
therefore counted.

>>> from refmoo import Partition
>>> lay = ShardLayout(Partition.from_sizes([3, 2, 4]), world_size=2)
>>> lay.owner.tolist(), lay.shard_sizes, lay.chunk
([0, 0, 1], [5, 4], 5)
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import Tensor

from refmoo import Partition


class LayoutError(ValueError):
    """An ownership map that does not fit the partition or the world size."""


def balanced_owners(sizes: Sequence[int], world_size: int) -> list[int]:
    """Contiguous runs of buckets, one per rank, minimising the largest shard.

    The smallest feasible capacity is found by bisection with greedy packing;
    runs are then split until every rank owns a bucket (when there are enough),
    which never raises the largest shard.

    >>> balanced_owners([1, 1, 1, 1], 2), balanced_owners([10, 1, 1], 3)
    ([0, 0, 1, 1], [0, 1, 2])
    """
    def pack(cap: int) -> list[list[int]]:
        runs: list[list[int]] = [[]]
        load = 0
        for b, s in enumerate(sizes):
            if runs[-1] and load + s > cap:
                runs.append([])
                load = 0
            runs[-1].append(b)
            load += s
        return runs

    lo, hi = max(sizes), sum(sizes)
    while lo < hi:
        mid = (lo + hi) // 2
        if len(pack(mid)) <= world_size:
            hi = mid
        else:
            lo = mid + 1
    runs = pack(lo)
    while len(runs) < world_size and any(len(r) > 1 for r in runs):
        i = max((i for i, r in enumerate(runs) if len(r) > 1),
                key=lambda i: sum(sizes[b] for b in runs[i]))
        run = runs[i]
        total, acc, cut = sum(sizes[b] for b in run), 0, 1
        for j, b in enumerate(run[:-1]):
            acc += sizes[b]
            if 2 * acc >= total:
                cut = j + 1
                break
        runs[i:i + 1] = [run[:cut], run[cut:]]
    return [r for r, run in enumerate(runs) for _ in run]


class ShardLayout:
    """Bucket ownership and the padded, owner-major order of the flat gradient."""

    def __init__(self, partition: Partition, world_size: int,
                 owners: Sequence[int] | Tensor | None = None) -> None:
        if world_size < 1:
            raise LayoutError(f"world size must be at least 1, got {world_size}")
        if owners is None:
            owners = balanced_owners(partition.sizes, world_size)
        owner = torch.as_tensor(list(owners) if not isinstance(owners, Tensor) else owners,
                                dtype=torch.long).reshape(-1)
        if owner.numel() != len(partition):
            raise LayoutError(f"{owner.numel()} owners given for {len(partition)} buckets")
        if owner.numel() and (int(owner.min()) < 0 or int(owner.max()) >= world_size):
            raise LayoutError(f"owners must lie in 0..{world_size - 1}, got "
                              f"[{int(owner.min())}, {int(owner.max())}]")
        self.partition = partition
        self.world_size = world_size
        self.owner = owner
        self.owned: list[list[int]] = [(owner == r).nonzero().reshape(-1).tolist()
                                       for r in range(world_size)]
        none = torch.empty(0, dtype=torch.long)
        self.indices: list[Tensor] = [
            torch.cat([partition.indices(b) for b in bs]) if bs else none for bs in self.owned]
        self.shard_sizes = [int(i.numel()) for i in self.indices]
        self.chunk = max(self.shard_sizes)
        D = partition.dim
        # Index into the flat gradient extended by one zero (position D) so that
        # one index_select fills the padded send buffer, padding included.
        gather = torch.full((world_size, self.chunk), D, dtype=torch.long)
        for r, idx in enumerate(self.indices):
            gather[r, :idx.numel()] = idx
        self.gather_index = gather.reshape(-1)
        self.valid = self.gather_index < D
        self._scatter: tuple[Tensor, Tensor] | None = None
        self.is_identity = (world_size * self.chunk == D
                            and bool(torch.equal(self.gather_index, torch.arange(D))))

    @property
    def dim(self) -> int:
        return self.partition.dim

    @property
    def idle_ranks(self) -> list[int]:
        """Ranks that own no bucket (more ranks than buckets, or a skewed map)."""
        return [r for r, s in enumerate(self.shard_sizes) if s == 0]

    def local_partition(self, rank: int) -> Partition | None:
        """The owned buckets as a contiguous partition of the rank's shard."""
        bs = self.owned[rank]
        if not bs:
            return None
        return Partition.from_sizes([self.partition.sizes[b] for b in bs],
                                    names=[self.partition.names[b] for b in bs])

    def to_owner_major(self, flat_ext: Tensor, out: Tensor | None = None) -> Tensor:
        """``[W·chunk]`` send buffer from a flat vector extended by one trailing zero."""
        if self.is_identity:
            return flat_ext[:self.dim]
        if self.gather_index.device != flat_ext.device:
            self.gather_index = self.gather_index.to(flat_ext.device)
        return torch.index_select(flat_ext, 0, self.gather_index, out=out)

    def from_owner_major(self, gathered: Tensor, flat: Tensor) -> Tensor:
        """Scatter a gathered ``[..., W·chunk]`` buffer back into flat order ``[..., D]``."""
        if self.is_identity:
            flat.copy_(gathered[..., :self.dim])
            return flat
        if self._scatter is None or self._scatter[0].device != flat.device:
            src = self.valid.nonzero().reshape(-1)
            self._scatter = (self.gather_index[src].to(flat.device), src.to(flat.device))
        dest, src = self._scatter
        flat.index_copy_(-1, dest, gathered.index_select(-1, src))
        return flat
