"""Faults and bad input: a failing or hung rank, a taken port, impossible configurations."""

import os
import socket
import time

import pytest

from simulate.config import RunConfig
from simulate.launch import LaunchError, RankError, spawn
from simulate.run import run_many, run_ranks
from simulate.workload import WorkloadConfig

TINY = WorkloadConfig(model="mlp", width=8, layers=1, vocab=16, seq_len=6, batch=(2, 2, 2))


def _assert_all_gone(pids):
    assert pids
    for pid in pids:
        with pytest.raises(ProcessLookupError):
            os.kill(pid, 0)


@pytest.mark.slow
def test_rank_raising_mid_step_stops_every_rank_with_the_original_error():
    cfg = RunConfig(strategy="bucket", partition="chunks:100", world_size=3, steps=3,
                    workload=TINY, fault=(1, 1), timeout_s=120)
    start = time.monotonic()
    with pytest.raises(RankError) as info:
        run_ranks([cfg])
    elapsed = time.monotonic() - start
    err = info.value
    assert err.rank == 1
    assert "injected fault on rank 1 at step 1" in str(err)
    assert "RuntimeError" in err.remote_traceback
    # The peers were blocked in language 1's reduce-scatter: they fail as soon
    # as rank 1's sockets close (about 3 s here), not by the 120 s process-group
    # timeout; the margin keeps a loaded machine from deciding the test.
    assert elapsed < 120
    _assert_all_gone(err.pids)


@pytest.mark.slow
# Liveness needs some bound: far above the 3 s timeout + 2 s grace, so that a loaded
# machine never decides the test, while a launcher that waits forever still fails it.
@pytest.mark.timeout(180)
def test_hung_rank_is_named_and_killed_after_the_timeout():
    cfg = RunConfig(strategy="bucket-replicated", partition="chunks:100", world_size=2,
                    steps=2, workload=TINY, fault=(0, 1), fault_kind="hang", timeout_s=3)
    start = time.monotonic()
    with pytest.raises(RankError) as info:
        run_ranks([cfg], grace_s=2)
    elapsed = time.monotonic() - start
    assert info.value.rank == 0
    assert "hung" in str(info.value)
    print(f"hung rank stopped after {elapsed:.1f} s (timeout 3 s + grace 2 s + start-up)")
    _assert_all_gone(info.value.pids)


def test_port_in_use_is_a_clear_error():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        s.listen()
        port = s.getsockname()[1]
        with pytest.raises(LaunchError, match=f"cannot listen on 127.0.0.1:{port}"):
            spawn(print, 2, port=port)


@pytest.mark.parametrize("changes,match", [
    ({"strategy": "fsdp"}, "unknown strategy 'fsdp'"),
    ({"strategy": "full-gram", "aggregator": "graddrop"}, "full-gram needs a Gram-based"),
    ({"strategy": "standard", "trace_dir": "/tmp/x"}, "nothing per-language to trace"),
    ({"workload": WorkloadConfig(batch=(2, 0))}, r"languages \[1\] have no data at all"),
    ({"aggregator": "mgdaa"}, "unknown aggregator 'mgdaa'"),
])
def test_impossible_configurations_fail_before_spawning(changes, match):
    with pytest.raises(ValueError, match=match):
        run_ranks([RunConfig(workload=TINY).with_(**changes)])


@pytest.mark.slow
def test_more_ranks_than_buckets_leaves_ranks_idle_and_stays_exact():
    # 2 buckets, 4 ranks: ranks 2 and 3 own nothing, send padding, and the
    # result still matches the reference (float64: summation order at W = 4).
    wl = WorkloadConfig(model="mlp", width=8, layers=1, vocab=16, seq_len=6, batch=(3, 1),
                        dtype="float64")
    configs = [RunConfig(strategy=s, partition="chunks:200", world_size=4, steps=2,
                         workload=wl) for s in ("bucket", "full-gram")]
    for m in run_many(configs):
        assert m["buckets"] == 2
        assert m["idle_ranks"] == [2, 3]
        assert m["accounting_exact"]
        assert m["max_param_error_vs_reference"] <= m["tolerance"]
