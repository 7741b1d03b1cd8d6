"""``refmoo verify``: the reduction check against the ranks' locals, and errors that
say what is wrong with a trace. Traces are written by hand here, as an engine
outside the project would write them (no ranks are spawned)."""

import json

import pytest
import torch
from safetensors.torch import load_file, save_file

from refmoo import MGDA, Partition, bucketwise
from refmoo.__main__ import main as refmoo_main
from refmoo.trace import TraceError, TraceWriter, verify

W, K = 4, 3
P = Partition.from_sizes([5, 4, 3], names=["a", "b", "c"])


def _write(d, *, bug=None, dtype=torch.float32, steps=2):
    """A W-rank trace: rank r's locals L^r on every column, the reduced sum and the
    aggregation of buckets it owns (bucket b on rank b). ``bug`` breaks language 1's
    reduction in bucket 1 at step 1, and the engine then aggregates what it got."""
    g = torch.Generator().manual_seed(0)
    writers = [TraceWriter(d, partition=P, aggregator="mgda", languages=["en", "de", "sw"],
                           rank=r, world_size=W, dtype=dtype) for r in range(W)]
    for step in range(steps):
        L = torch.randn(W, K, P.dim, generator=g, dtype=torch.float64).to(dtype)
        G = L[0].clone()
        for r in range(1, W):  # a ring in rank order; verify sums in float64
            G += L[r]
        cols = P.indices(1)
        if bug == "extra-1/W" and step == 1:
            G[1, cols] /= W
        elif bug == "not reduced" and step == 1:
            G[1, cols] = L[2, 1, cols]
        out = bucketwise(MGDA(), G, P)
        for r, w in enumerate(writers):
            own = P.indices(r) if r < len(P) else torch.empty(0, dtype=torch.long)
            w.write(step, own, G[:, own], out[own], local_columns=torch.arange(P.dim),
                    local_grads=L[r])


def test_correct_reduction_passes_within_the_bound(tmp_path):
    _write(tmp_path)
    report = verify(tmp_path)
    assert report.ok
    assert len(report.reductions) == 2 * len(P)
    # float32 ring vs float64 sum: inside the bound, and not trivially (the check is tight).
    worst = max(r.max_error_over_bound for r in report.reductions)
    assert 0 < worst <= 1


@pytest.mark.parametrize("bug,diagnosis", [
    ("extra-1/W", f"reduced = 0.25 × Σ locals (divided by W = {W} once more)"),
    ("not reduced", "reduced equals rank 2's local (not reduced?)"),
])
def test_reduction_bug_is_caught_and_named(tmp_path, capsys, bug, diagnosis):
    _write(tmp_path, bug=bug)
    report = verify(tmp_path)
    # The engine aggregated what it reduced, so only the reduction check can see it.
    assert all(c.ok for c in report.checks)
    assert not report.ok
    [bad] = [r for r in report.reductions if not r.ok]
    assert (bad.step, bad.bucket, bad.name, bad.failed_languages) == (1, 1, "b", ["de"])
    assert bad.reduced_by == [1]
    assert diagnosis in bad.diagnosis
    assert refmoo_main(["verify", str(tmp_path)]) == 1
    out = capsys.readouterr().out
    assert "REDUCTION FAIL step 1 bucket 1 (b), language(s) de" in out
    assert "reduced written by rank(s) 1" in out and diagnosis in out


def test_locals_from_too_few_ranks_are_not_checked(tmp_path):
    _write(tmp_path, steps=1)
    # rank 3 owns no bucket: only its locals are lost, every bucket stays complete
    (tmp_path / "steps" / "step000000.rank00003.safetensors").unlink()
    report = verify(tmp_path)
    assert report.reductions == [] and report.locals_incomplete == {0: [0, 1, 2]}


def _simple(d, dtype=torch.float64, **kw):
    G = torch.randn(K, P.dim, dtype=torch.float64).to(dtype)
    w = TraceWriter(d, partition=P, aggregator="mgda", languages=K, dtype=dtype, **kw)
    w.write(0, torch.arange(P.dim), G, bucketwise(MGDA(), G, P))
    return d / "steps" / "step000000.rank00000.safetensors"


def test_dtype_differing_from_the_manifest_is_a_format_error(tmp_path, capsys):
    f = _simple(tmp_path)
    t = load_file(str(f))
    t["grads"] = t["grads"].float()
    save_file(t, str(f))
    with pytest.raises(TraceError, match="grads is float32, the manifest says float64"):
        verify(tmp_path)
    assert refmoo_main(["verify", str(tmp_path)]) == 2
    assert capsys.readouterr().err.startswith("error: step000000.rank00000.safetensors")


def test_writer_refuses_a_dtype_other_than_the_traces(tmp_path):
    w = TraceWriter(tmp_path, partition=P, aggregator="mgda", languages=K, dtype=torch.float64)
    with pytest.raises(TraceError, match="grads is torch.float32, the trace is torch.float64"):
        w.write(0, torch.arange(P.dim), torch.zeros(K, P.dim), torch.zeros(P.dim))


def test_step_file_names_must_be_zero_padded(tmp_path):
    f = _simple(tmp_path)
    f.rename(f.with_name("step0.rank0.safetensors"))
    with pytest.raises(TraceError, match="stepTTTTTT.rankRRRRR.safetensors, zero-padded"):
        verify(tmp_path)


@pytest.mark.parametrize("edit,match", [
    (lambda lay: lay[0].__setitem__(0, ["nope", 0, 5]), r"parameter 'nope' is not in"),
    (lambda lay: lay[0].__setitem__(0, ["w", 3, 3]), r"needs 0 <= start < stop <= 12"),
    (lambda lay: lay[1].__setitem__(0, ["w", 5, 8]), r"pieces add up to 3 columns, the bucket "
                                                     r"has 4"),
    (lambda lay: lay[1].__setitem__(0, ["w", 5, 10]), r"leaves parameter 'w'"),
    (lambda lay: lay.pop(), r"buckets.layout has 2 buckets, the partition 3"),
    (lambda lay: lay.__setitem__(1, [["w", 5, 7], ["v", 9, 10], ["v", 11, 12]]),
     r"not the bucket's columns in partition order"),
])
def test_layout_is_validated(tmp_path, edit, match):
    _simple(tmp_path, parameters=[("w", 0, 9, [9]), ("v", 9, 3, [3])])
    m = json.loads((tmp_path / "manifest.json").read_text())
    m["buckets"]["layout"] = [[["w", 0, 5]], [["w", 5, 9]], [["v", 9, 12]]]
    verify_ok = tmp_path / "manifest.json"
    verify_ok.write_text(json.dumps(m))
    assert verify(tmp_path).ok  # the layout as written is valid
    edit(m["buckets"]["layout"])
    verify_ok.write_text(json.dumps(m))
    with pytest.raises(TraceError, match=match):
        verify(tmp_path)


def test_columns_written_twice_names_files_columns_bucket_and_difference(tmp_path):
    G = torch.randn(K, P.dim, dtype=torch.float64)
    out = bucketwise(MGDA(), G, P)
    for r in (0, 1):
        w = TraceWriter(tmp_path, partition=P, aggregator="mgda", languages=K, rank=r,
                        world_size=2, dtype=torch.float64)
        H = G.clone()
        if r == 1:
            H[2, 6] += 0.5
        w.write(0, torch.arange(4, 8), H[:, 4:8], out[4:8])
    with pytest.raises(TraceError) as info:
        verify(tmp_path)
    msg = str(info.value)
    for part in ("step 0: columns written twice with different values",
                 "step000000.rank00001.safetensors and step000000.rank00000.safetensors",
                 "disagree on 1 columns (6)", "bucket(s) 1 ('b')",
                 "max |difference| 5.000e-01 in grads, 0.000e+00 in output"):
        assert part in msg, (part, msg)


def test_published_counter_hash_reproduces_pcgrad_and_graddrop():
    """TRACE_FORMAT.md's pure-Python hash is what refmoo draws, so an engine can
    reproduce PCGrad's orders and GradDrop's uniforms without importing refmoo."""
    from pathlib import Path

    from refmoo import GradDrop, PCGrad

    text = (Path(__file__).resolve().parents[1] / "simulate" / "TRACE_FORMAT.md").read_text()
    block = text.split("```python\nMASK = ")[1].split("```")[0]
    ns: dict = {}
    exec("MASK = " + block, ns)  # noqa: S102 (the documentation's own code)
    K = 5
    for seed in (0, 7, -3):
        for bucket in (0, 5, 123456):
            perms = PCGrad(seed=seed).permutations(K, torch.tensor([bucket]))[0].tolist()
            assert perms == [ns["pcgrad_order"](seed, bucket, i, K) for i in range(K)]
            U = GradDrop(seed=seed).uniforms(torch.tensor(bucket), torch.arange(20)).tolist()
            assert U == [ns["graddrop_uniform"](seed, bucket, j) for j in range(20)]


def test_a_write_that_fails_midway_leaves_no_file(tmp_path, monkeypatch):
    # The step file appears whole or not at all (written aside, then renamed), so an
    # interrupted rank never leaves a truncated file that verify would reject.
    import refmoo.trace

    w = TraceWriter(tmp_path, partition=P, aggregator="mgda", languages=K)

    def dies_midway(tensors, path, metadata=None):
        with open(path, "wb") as f:
            f.write(b"\x08\x00\x00\x00")  # the start of a header, no more
        raise OSError("disk full")

    monkeypatch.setattr(refmoo.trace, "save_file", dies_midway)
    G = torch.zeros(K, P.dim)
    with pytest.raises(OSError, match="disk full"):
        w.write(0, torch.arange(P.dim), G, G[0])
    assert list((tmp_path / "steps").iterdir()) == []
    assert sorted(p.name for p in tmp_path.iterdir()) == \
        ["manifest.json", "partition.safetensors", "steps"]


def _trace_format_text() -> str:
    from pathlib import Path

    return (Path(__file__).resolve().parents[1] / "simulate" / "TRACE_FORMAT.md").read_text()


def test_trace_format_lists_every_aggregator_with_its_defaults():
    """TRACE_FORMAT.md's table of aggregators and kwargs defaults is the registry's."""
    import inspect
    import re

    from refmoo import AGGREGATORS

    table = _trace_format_text().split("| name | kwargs (default) |")[1].split("\n\n")[0]
    documented: dict[str, dict[str, str]] = {}
    for names, kwargs in re.findall(r"^\| (`.*?) \| (.*?) \|$", table, flags=re.M):
        defaults = dict(re.findall(r"`(\w+)` \(([^,)]+)", kwargs))
        for name in re.findall(r"`(\w+)`", names):
            documented[name] = defaults
    assert set(documented) == set(AGGREGATORS)
    for name, cls in AGGREGATORS.items():
        actual = {p.name: repr(p.default) for p in inspect.signature(cls).parameters.values()}
        assert documented[name] == actual, name


def test_trace_format_states_verify_s_default_rtol():
    from refmoo.trace import DEFAULT_RTOL

    text = " ".join(_trace_format_text().split())
    assert ("default `rtol` 1e-4 for float32, 1e-9 for float64, 2e-2 bfloat16, 5e-3 "
            "float16") in text
    assert DEFAULT_RTOL == {torch.float32: 1e-4, torch.float64: 1e-9, torch.bfloat16: 2e-2,
                            torch.float16: 5e-3}


def test_trace_format_cost_of_locals_example():
    # "K = 3, D = 10M, float32 and W = 8 that is 120 MB reduced plus 960 MB of locals"
    K, D, W, itemsize = 3, 10 * 10**6, 8, torch.finfo(torch.float32).bits // 8
    assert K * D * itemsize == 120 * 10**6 and W * K * D * itemsize == 960 * 10**6
