"""``python -m simulate run|compare``, traces, and ``python -m refmoo verify``."""

import json
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file, save_file

from refmoo.__main__ import main as refmoo_main
from refmoo.trace import Trace, verify
from simulate.__main__ import main as simulate_main

SMALL = ["--model", "mlp", "--width", "8", "--layers", "1", "--vocab", "16", "--seq-len", "6",
         "--batch", "3,2,1", "--steps", "2"]
REPO = Path(__file__).resolve().parents[2]


@pytest.fixture(scope="module")
def traced_run(tmp_path_factory):
    out = tmp_path_factory.mktemp("run")
    rc = simulate_main(["run", "--world-size", "2", "--strategy", "bucket", "--aggregator",
                        "pcgrad", "--partition", "chunks:60", "--trace", "--out", str(out),
                        *SMALL])
    return rc, out


@pytest.mark.slow
def test_run_writes_metrics_with_the_required_keys(traced_run):
    rc, out = traced_run
    assert rc == 0
    m = json.loads((out / "metrics.json").read_text())
    for key in ("strategy", "world_size", "steps", "max_param_error_vs_reference",
                "bytes_sent_per_rank", "bytes_predicted_per_rank", "step_time_s"):
        assert key in m
    assert (m["strategy"], m["world_size"], m["steps"]) == ("bucket", 2, 2)
    assert m["bytes_sent_per_rank"] == m["bytes_predicted_per_rank"]
    assert set(m["bytes_sent_per_rank"]) == {"reduce_scatter:grad", "all_gather:param"}
    assert m["max_param_error_vs_reference"] == 0.0
    assert set(m["phase_time_s"]) == {"backward", "communication", "aggregation", "update"}


@pytest.mark.slow
def test_simulator_trace_verifies(traced_run, capsys):
    _, out = traced_run
    trace = Trace(out / "trace")
    assert trace.steps() == [0, 1]
    assert trace.manifest["aggregator"]["name"] == "pcgrad"
    assert len(list((out / "trace" / "steps").iterdir())) == 4  # 2 steps × 2 owners
    report = verify(out / "trace")
    assert report.ok and report.max_abs_error == 0.0
    assert len(report.checks) == 2 * len(trace.partition)
    assert refmoo_main(["verify", str(out / "trace")]) == 0
    assert "OK" in capsys.readouterr().out


@pytest.mark.slow
def test_verify_fails_on_a_corrupted_output(traced_run, tmp_path, capsys):
    _, out = traced_run
    import shutil

    bad = tmp_path / "bad"
    shutil.copytree(out / "trace", bad)
    f = bad / "steps" / "step000001.rank00001.safetensors"
    t = load_file(str(f))
    t["output"][3] += 1e-3 * t["output"].abs().max()
    save_file(t, str(f), metadata={"step": "1", "rank": "1"})
    report = verify(bad)
    assert not report.ok
    failed = [c for c in report.checks if not c.ok]
    assert [(c.step, c.bucket) for c in failed] == [(1, int(Trace(bad).partition.bucket_of[
        int(t["columns"][3])]))]
    assert refmoo_main(["verify", str(bad)]) == 1
    assert "FAIL" in capsys.readouterr().out


def test_verify_rejects_what_is_not_a_trace(tmp_path):
    assert refmoo_main(["verify", str(tmp_path)]) == 2


def test_partial_trace_checks_complete_buckets_only(tmp_path):
    from refmoo import MGDA, Partition, bucketwise
    from refmoo.trace import TraceWriter

    G = torch.randn(3, 10, dtype=torch.float64)
    P = Partition.from_sizes([4, 3, 3])
    out = bucketwise(MGDA(), G, P)
    w = TraceWriter(tmp_path, partition=P, aggregator="mgda", languages=3, dtype=torch.float64)
    cols = torch.tensor([4, 5, 6, 0])  # bucket 1 whole, bucket 0 partly
    w.write(0, cols, G[:, cols], out[cols])
    report = verify(tmp_path)
    assert report.ok and [c.bucket for c in report.checks] == [1]
    assert report.incomplete == {0: [0]}


@pytest.mark.slow
def test_compare_prints_and_writes_table_and_plot(tmp_path, capsys):
    rc = simulate_main(["compare", "--world-size", "2", "--partition", "chunks:60",
                        "--out", str(tmp_path), *SMALL])
    assert rc == 0
    printed = capsys.readouterr().out
    for s in ("standard", "bucket", "bucket-replicated", "full-naive", "full-gram"):
        assert s in printed
    md = (tmp_path / "compare.md").read_text()
    assert md.count("\n| ") == 6  # header + five strategies
    assert (tmp_path / "compare.png").read_bytes()[:4] == b"\x89PNG"
    rows = json.loads((tmp_path / "compare.json").read_text())
    assert [r["strategy"] for r in rows] == ["standard", "bucket", "bucket-replicated",
                                             "full-naive", "full-gram"]
    assert all(r["accounting_exact"] for r in rows)


def test_own_engine_example_runs_and_verifies(tmp_path):
    script = REPO / "simulate" / "examples" / "own_engine_trace.py"
    done = subprocess.run([sys.executable, str(script), str(tmp_path / "t")],
                          capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stdout + done.stderr
    verified = subprocess.run([sys.executable, "-m", "refmoo", "verify", str(tmp_path / "t")],
                              capture_output=True, text=True, timeout=120)
    assert verified.returncode == 0 and "OK" in verified.stdout
