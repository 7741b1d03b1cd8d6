"""Start W ranks on one machine, or join a ``torchrun`` job, and run one function on each.

Ranks are started with the forkserver method and a preloaded torch: a spawn
re-imports torch in every rank, and plain fork can hang once the parent has run
multi-threaded ops. The parent owns the rendezvous store, bound to a port the
kernel picks (port 0), so two simulators never race for the same port.

Failure contract: when a rank raises, every rank exits within the process-group
timeout (the peers' collectives fail as soon as the failed rank's sockets
close, or at the latest when the timeout fires), the parent kills any rank
still alive after that, by PID, and raises :class:`RankError` carrying the
first rank's original traceback.
"""

from __future__ import annotations

import ctypes
import datetime
import os
import pickle
import signal
import time
import traceback
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from multiprocessing.connection import wait
from typing import Any

import torch
import torch.distributed as dist
import torch.multiprocessing as mp

PRELOAD = ["torch", "torch.distributed"]
_PR_SET_PDEATHSIG = 1


class RankError(RuntimeError):
    """A rank failed; ``rank`` and ``remote_traceback`` identify the first failure."""

    def __init__(self, rank: int, remote_traceback: str, others: dict[int, str]):
        self.rank = rank
        self.remote_traceback = remote_traceback
        self.others = others
        self.pids: list[int] = []
        lines = [f"rank {rank} failed:\n{remote_traceback.rstrip()}"]
        for r, why in sorted(others.items()):
            lines.append(f"rank {r}: {why.strip().splitlines()[-1] if why.strip() else why}")
        super().__init__("\n".join(lines))


class LaunchError(RuntimeError):
    """The ranks could not be started (bad world size, port in use, ...)."""


@dataclass(frozen=True)
class RankInfo:
    """What a rank function receives: who it is and its process group."""

    rank: int
    world_size: int
    group: Any = None
    timeout_s: float = 60.0


def _die_with_parent() -> None:
    # A rank whose parent is killed (Ctrl-C, OOM) must not live on as an orphan
    # holding a socket; Linux only, a no-op elsewhere.
    try:
        libc = ctypes.CDLL("libc.so.6", use_errno=True)
        libc.prctl(_PR_SET_PDEATHSIG, signal.SIGKILL)
    except OSError:
        pass


def _send(conn, message) -> None:
    # Plain pickle copies tensors by value; multiprocessing's own pickler would
    # share their storage through a file descriptor that dies with this process.
    conn.send_bytes(pickle.dumps(message))


def _rank_entry(fn: Callable[..., Any], rank: int, world_size: int, host: str, port: int,
                timeout_s: float, backend: str, conn, args: tuple) -> None:
    _die_with_parent()
    torch.set_num_threads(1)
    try:
        store = dist.TCPStore(host, port, world_size=None, is_master=False,
                              timeout=datetime.timedelta(seconds=timeout_s))
        dist.init_process_group(backend, store=store, rank=rank, world_size=world_size,
                                timeout=datetime.timedelta(seconds=timeout_s))
        try:
            result = fn(RankInfo(rank, world_size, dist.group.WORLD, timeout_s), *args)
        finally:
            dist.destroy_process_group()
        _send(conn, ("ok", result))
    except BaseException:  # noqa: BLE001 (every failure must reach the parent)
        _send(conn, ("error", traceback.format_exc()))
        conn.close()
        os._exit(1)
    conn.close()


def spawn(fn: Callable[..., Any], world_size: int, args: Sequence[Any] = (), *,
          timeout_s: float = 60.0, backend: str = "gloo", host: str = "127.0.0.1",
          port: int = 0, grace_s: float = 10.0) -> list[Any]:
    """Run ``fn(RankInfo, *args)`` on ``world_size`` ranks; return the results in rank order.

    ``fn`` must be importable (a module-level function). ``port=0`` lets the
    kernel pick a free port; an explicit port that is taken raises
    :class:`LaunchError` at once.
    """
    if world_size < 1:
        raise LaunchError(f"world size must be at least 1, got {world_size}")
    try:
        store = dist.TCPStore(host, port, world_size=None, is_master=True,
                              wait_for_workers=False,
                              timeout=datetime.timedelta(seconds=timeout_s))
    except (dist.DistNetworkError, RuntimeError) as err:
        raise LaunchError(f"cannot listen on {host}:{port} for the rendezvous "
                          f"({err}); pass port=0 to let the kernel pick a free one") from err
    ctx = mp.get_context("forkserver")
    ctx.set_forkserver_preload(PRELOAD)
    procs, conns = [], []
    try:
        for rank in range(world_size):
            parent_end, child_end = ctx.Pipe(duplex=False)
            p = ctx.Process(target=_rank_entry, name=f"simulate-rank{rank}",
                            args=(fn, rank, world_size, host, store.port, timeout_s, backend,
                                  child_end, tuple(args)))
            p.start()
            child_end.close()
            procs.append(p)
            conns.append(parent_end)
        return _collect(procs, conns, timeout_s + grace_s, grace_s)
    except RankError as err:
        err.pids = [p.pid for p in procs]
        raise
    finally:
        _reap(procs)
        del store


def _collect(procs, conns, deadline_s: float, grace_s: float) -> list[Any]:
    W = len(procs)
    results: dict[int, Any] = {}
    errors: dict[int, str] = {}
    failed_at: float | None = None
    open_conns = {c: r for r, c in enumerate(conns)}
    while len(results) + len(errors) < W:
        # After the first failure the others get the process-group timeout to
        # notice (plus grace). When the only errors are timed-out collectives and
        # every other rank is done, the one still running is the hung culprit:
        # it gets the grace alone.
        remaining = None
        if failed_at is not None:
            elapsed = time.monotonic() - failed_at
            culprit_hung = (len(results) + len(errors) >= W - 1
                            and not any(_is_primary(e) for e in errors.values()))
            remaining = (grace_s if culprit_hung else deadline_s) - elapsed
            if remaining <= 0:
                break
        pending = [p.sentinel for r, p in enumerate(procs) if r not in results and r not in errors]
        ready = wait(list(open_conns) + pending, timeout=remaining)
        for obj in ready:
            if obj in open_conns:
                r = open_conns.pop(obj)
                try:
                    status, payload = pickle.loads(obj.recv_bytes())
                except EOFError:
                    continue
                (results if status == "ok" else errors)[r] = payload
            else:
                r = next(i for i, p in enumerate(procs) if p.sentinel == obj)
                procs[r].join(0.1)
                if r in results or r in errors:
                    continue
                conn = next((c for c, rr in open_conns.items() if rr == r), None)
                if conn is not None and conn.poll():
                    continue  # its message is still in the pipe: read it next round
                errors[r] = f"exited with code {procs[r].exitcode} without reporting"
                if conn is not None:
                    open_conns.pop(conn)
        if errors and failed_at is None:
            failed_at = time.monotonic()
    if errors:
        hung = {r: f"still running {deadline_s:.0f} s after the first failure: killed (hung)"
                for r in range(W) if r not in results and r not in errors}
        origin = _origin(errors, hung)
        why = {**errors, **hung}
        raise RankError(origin, why[origin], {r: e for r, e in why.items() if r != origin})
    return [results[r] for r in range(W)]


_SECONDARY = ("Connection closed by peer", "Connection reset by peer", "Timed out",
              "timed out", "Broken pipe", "ECONNRESET", "EPIPE", "Socket Timeout")


def _is_primary(error: str) -> bool:
    return not any(s in error for s in _SECONDARY) and "without reporting" not in error


def _origin(errors: dict[int, str], hung: dict[int, str]) -> int:
    """The rank that caused the failure: peers of a failed rank only report broken
    or timed-out collectives, and a hung rank makes its peers time out."""
    primary = [r for r, e in errors.items() if _is_primary(e)]
    if primary:
        return min(primary)
    if hung:
        return min(hung)
    silent = [r for r, e in errors.items() if "without reporting" in e]
    return min(silent) if silent else min(errors)


def _reap(procs) -> None:
    for p in procs:
        p.join(timeout=0.5)
    for p in procs:
        if p.is_alive():
            p.terminate()
    for p in procs:
        p.join(timeout=2.0)
        if p.is_alive():
            os.kill(p.pid, signal.SIGKILL)
            p.join(timeout=2.0)


def under_torchrun() -> bool:
    """True inside a process started by ``torchrun`` (its env:// variables are set)."""
    return all(v in os.environ for v in ("RANK", "WORLD_SIZE", "MASTER_ADDR", "MASTER_PORT"))


def run_torchrun(fn: Callable[..., Any], args: Sequence[Any] = (), *, timeout_s: float = 300.0,
                 backend: str | None = None) -> Any:
    """Run ``fn`` as this process's rank of a ``torchrun`` job (env:// rendezvous)."""
    if backend is None:
        backend = "nccl" if torch.cuda.is_available() else "gloo"
    if backend == "nccl":
        torch.cuda.set_device(int(os.environ.get("LOCAL_RANK", "0")))
    dist.init_process_group(backend, timeout=datetime.timedelta(seconds=timeout_s))
    try:
        return fn(RankInfo(dist.get_rank(), dist.get_world_size(), dist.group.WORLD, timeout_s),
                  *args)
    finally:
        dist.destroy_process_group()
