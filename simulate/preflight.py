"""What the parent checks before any rank starts, and the waste it warns about.

A bad configuration must cost a one-line ``error:``, not a spawned world and a
traceback per rank: :func:`preflight` validates the settings
(:meth:`RunConfig.validate`), builds the model and the partition exactly as
every rank will (so ``chunks:0``, ``zero:-5`` or an unknown FSDP2 unit fail
here), lays the buckets out over the ranks, and returns warnings about
traffic the partition wastes. :func:`check_out` makes sure results can be
written before the run, not after it.

Padding: the sharded strategies (``bucket``, ``full-naive``, ``full-gram``)
pad every rank's shard to the largest one, ``chunk``, so each flat
reduce-scatter and all-gather moves W·chunk elements where D would do. With
one bucket at W ranks, W·chunk = W·D: every collective moves W times the
gradient.
"""

from __future__ import annotations

import os
from pathlib import Path

from .config import RunConfig
from .formulas import predicted_bytes
from .layout import ShardLayout
from .schemes import build_partition
from .workload import build_model, probe_loss


class ConfigError(ValueError):
    """Settings that no rank could run: reported as one ``error:`` line, exit 2."""


SHARDED = ("bucket", "full-naive", "full-gram")
PADDING_WARN = 1.5
"""Warn when padding makes the sharded collectives move this many times the gradient."""


def check_out(out: Path) -> None:
    """``out`` exists as a writable directory afterwards, or ConfigError says why not."""
    try:
        out.mkdir(parents=True, exist_ok=True)
    except OSError as err:
        raise ConfigError(f"--out {out}: cannot create the directory ({err.strerror})") from None
    probe = out / f".simulate-write-test-{os.getpid()}"
    try:
        probe.write_text("")
        probe.unlink()
    except OSError as err:
        raise ConfigError(f"--out {out}: cannot write there ({err.strerror})") from None


def preflight(cfg: RunConfig) -> list[str]:
    """Validate ``cfg`` as the ranks would (ConfigError); return warnings about waste."""
    try:
        cfg.validate()
        model = build_model(cfg.workload)
        partition, owners = build_partition(cfg.partition, model, cfg.world_size,
                                            probe_loss(cfg.workload, model))
        if cfg.owners is not None:
            owners = list(cfg.owners)
        layout = ShardLayout(partition, cfg.world_size, owners)
    except ValueError as err:
        raise ConfigError(str(err)) from None
    if cfg.strategy not in SHARDED:
        return []
    return waste(cfg, layout, model_itemsize=next(model.parameters()).element_size())


def waste(cfg: RunConfig, layout: ShardLayout, *, model_itemsize: int) -> list[str]:
    """Idle ranks and padding of a sharded strategy, one line each."""
    W, D, K = cfg.world_size, layout.dim, cfg.workload.num_languages
    out = []
    idle = layout.idle_ranks
    if idle:
        out.append(f"partition {cfg.partition} has {len(layout.partition)} bucket(s) for "
                   f"W = {W} ranks: rank(s) {_ranks(idle)} own no bucket and only send padding")
    factor = W * layout.chunk / D
    if factor >= PADDING_WARN:
        def mb(chunk: int) -> float:
            return sum(predicted_bytes(cfg.strategy, dim=D, languages=K, world_size=W,
                                       chunk=chunk, itemsize=model_itemsize).values()) / 1e6

        even = -(-D // W)
        out.append(f"partition {cfg.partition}: shards are padded to the largest "
                   f"({layout.chunk:,} of D = {D:,} columns), so {cfg.strategy}'s collectives "
                   f"move {factor:.1f}x the gradient: {mb(layout.chunk):.2f} MB per rank per "
                   f"step against {mb(even):.2f} MB with even shards (try a finer partition, "
                   "e.g. chunks:N or fsdp2)")
    return out


def _ranks(ranks: list[int]) -> str:
    if len(ranks) > 2 and ranks == list(range(ranks[0], ranks[-1] + 1)):
        return f"{ranks[0]}-{ranks[-1]}"
    return ", ".join(map(str, ranks))
