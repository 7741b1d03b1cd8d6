"""Every check means something.

At the CLI's default settings every strategy's tolerance is at most 1% of how
far the parameters moved, and the run is within it; deliberate bugs (no
update, an extra 1/W) fail; ``run`` and ``compare`` exit with their documented
statuses; bad settings fail in the parent, before any rank starts, with one
``error:`` line; wasteful partitions are warned about.
"""

import pytest

import simulate.__main__ as cli
from simulate.config import RunConfig
from simulate.launch import LaunchError
from simulate.preflight import preflight
from simulate.run import run_many
from simulate.strategies import STRATEGIES
from simulate.workload import WorkloadConfig

SMALL = ["--model", "mlp", "--width", "8", "--layers", "1", "--vocab", "16", "--seq-len", "6",
         "--batch", "3,2,1", "--steps", "2"]
TINY = WorkloadConfig(model="mlp", width=8, layers=1, vocab=16, seq_len=6, batch=(3, 2, 1))


def _cli_configs(argv):
    args = cli.build_parser().parse_args(["run", "--out", "unused", *argv])
    return [cli._config(args, s) for s in STRATEGIES]


@pytest.mark.slow
@pytest.mark.parametrize("world_size", [2, 4])
def test_defaults_every_strategy_meaningful_and_within_tolerance(world_size):
    for m in run_many(_cli_configs(["--world-size", str(world_size)])):
        assert m["accounting_exact"], m["strategy"]
        assert m["within_tolerance"], (m["strategy"], m["max_param_error_vs_reference"],
                                       m["tolerance"])
        assert m["tolerance"] <= 0.01 * m["param_movement"], (m["strategy"], m["tolerance"],
                                                              m["param_movement"])
        assert m["check"] == "passed"


@pytest.fixture(scope="module")
def controls():
    """The same small run, right and with two deliberate bugs, at W = 2: ``full-gram``
    (float64-shadow tolerance) and ``bucket-replicated`` (bitwise)."""
    cases = [(s, b) for s in ("full-gram", "bucket-replicated")
             for b in (None, "no-update", "extra-1/W")]
    configs = [RunConfig(strategy=s, partition="chunks:60", world_size=2, steps=2,
                         workload=TINY, bug=b) for s, b in cases]
    return dict(zip(cases, run_many(configs), strict=True))


@pytest.mark.slow
@pytest.mark.parametrize("strategy", ["full-gram", "bucket-replicated"])
def test_correct_run_passes_a_meaningful_check(controls, strategy):
    m = controls[(strategy, None)]
    assert m["check"] == "passed" and m["tolerance_meaningful"]
    assert m["tolerance_method"] == ("float64 shadow" if strategy == "full-gram" else "bitwise")


@pytest.mark.slow
@pytest.mark.parametrize("strategy", ["full-gram", "bucket-replicated"])
@pytest.mark.parametrize("bug", ["no-update", "extra-1/W"])
def test_deliberately_wrong_update_fails(controls, strategy, bug):
    m, ok = controls[(strategy, bug)], controls[(strategy, None)]
    assert m["check"] == "failed" and m["within_tolerance"] is False
    # Not a near miss: the error is a sizeable part of the movement itself.
    assert m["max_param_error_vs_reference"] > 0.01 * ok["param_movement"]


@pytest.mark.slow
def test_run_says_in_one_line_when_the_check_cannot_mean_anything(tmp_path, capsys):
    # Adam in float64: no a-priori bound for 1/sqrt(v), and no wider type to shadow with.
    rc = cli.main(["run", "--world-size", "2", "--strategy", "full-gram", "--optimizer", "adam",
                   "--dtype", "float64", "--partition", "chunks:60", "--out", str(tmp_path),
                   *SMALL])
    assert rc == cli.EXIT_NOT_MEANINGFUL == 3
    lines = [x for x in capsys.readouterr().out.splitlines() if x.startswith("check:")]
    assert len(lines) == 1 and lines[0].startswith("check: cannot mean anything")


@pytest.mark.slow
def test_compare_exits_1_when_any_run_fails_its_check(tmp_path, capsys, monkeypatch):
    config = cli._config

    def with_bug(args, strategy):
        cfg = config(args, strategy)
        return cfg.with_(bug="no-update") if strategy == "bucket-replicated" else cfg

    monkeypatch.setattr(cli, "_config", with_bug)
    rc = cli.main(["compare", "--world-size", "2", "--partition", "chunks:60",
                   "--out", str(tmp_path), *SMALL])
    assert rc == cli.EXIT_FAILED == 1
    out = capsys.readouterr().out
    assert "bucket-replicated: check: NOT bitwise equal" in out
    assert "\nbucket: check" not in out  # only the failing run is named


def _no_spawn(*args, **kwargs):
    raise AssertionError("a rank was started")


@pytest.mark.parametrize("argv,message", [
    (["--world-size", "0"], "world size must be at least 1, got 0"),
    (["--steps", "-1"], "steps must be at least 1, got -1"),
    (["--aggregator", "nope"], "unknown aggregator 'nope'"),
    (["--batch", "0,4,4"], r"languages [0] have no data at all"),
    (["--momentum", "1"], "momentum must lie in [0, 1), got 1.0"),
    (["--partition", "chunks:0"], "chunks:0: 0 must be >= 1"),
    (["--partition", "zero:-5"], "zero:-5: -5 must be >= 1"),
    (["--partition", "fsdp2:1000"], "fsdp2:1000: no submodule named '1000'; UNITS are names "
                                    "from model.named_modules()"),
    (["--partition", "ddp:x"], "ddp:x: 'x' is not a number"),
    (["--partition", "chunks:1.5"], "chunks:1.5: '1.5' is not a whole number"),
])
def test_bad_settings_fail_in_the_parent_with_one_line(monkeypatch, tmp_path, capsys, argv,
                                                       message):
    monkeypatch.setattr("simulate.run.spawn", _no_spawn)
    rc = cli.main(["run", *SMALL, *argv, "--out", str(tmp_path / "out")])
    err = capsys.readouterr().err
    assert rc == cli.EXIT_ERROR == 2
    assert err.count("\n") == 1 and err.startswith("error: ") and message in err, err


def test_unwritable_out_fails_before_the_run(monkeypatch, tmp_path, capsys):
    monkeypatch.setattr("simulate.run.spawn", _no_spawn)
    (tmp_path / "file").write_text("")
    rc = cli.main(["run", *SMALL, "--out", str(tmp_path / "file" / "out")])
    err = capsys.readouterr().err
    assert rc == 2 and err.count("\n") == 1
    assert err.startswith(f"error: --out {tmp_path / 'file' / 'out'}: cannot create")


def test_idle_ranks_and_padding_are_warned_about(monkeypatch, tmp_path, capsys):
    # The example: ddp on the default model is one bucket; at W = 8,
    # full-naive moves 8x the gradient (5.49 MB per rank per step against 0.69).
    warnings = preflight(RunConfig(strategy="full-naive", partition="ddp", world_size=8))
    assert len(warnings) == 2
    assert "rank(s) 1-7 own no bucket" in warnings[0]
    assert "move 8.0x the gradient: 5.49 MB per rank per step against 0.69 MB" in warnings[1]
    assert preflight(RunConfig(strategy="full-naive", partition="fsdp2", world_size=8)) == []
    assert preflight(RunConfig(strategy="bucket-replicated", partition="ddp",
                               world_size=8)) == []  # nothing sharded, nothing padded

    def stop(*args, **kwargs):
        raise LaunchError("stopped here")

    monkeypatch.setattr("simulate.run.spawn", stop)
    assert cli.main(["run", "--strategy", "full-gram", "--partition", "ddp", "--world-size",
                     "8", "--out", str(tmp_path)]) == 2
    err = capsys.readouterr().err.splitlines()
    assert [x.split(":")[0] for x in err] == ["warning", "warning", "error"]


def test_help_says_what_fsdp2_units_and_exit_statuses_are(capsys):
    with pytest.raises(SystemExit):
        cli.main(["run", "--help"])
    text = " ".join(capsys.readouterr().out.split())
    assert "UNITS are comma-separated submodule names as in model.named_modules()" in text
    assert "3 the run finished but its check cannot mean anything" in text


def test_tolerance_constants_are_the_documented_ones():
    """simulate/README.md and simulate/tolerance.py: 10× the float32–float64 distance plus
    one unit roundoff of the largest parameter per step; κ = 10⁴ in the float64 bound;
    meaningful means at most 1% of the movement."""
    import torch

    from simulate.tolerance import gamma, meaningful, shadow_tolerance, tolerance

    u32 = 2.0 ** -24
    assert shadow_tolerance(1e-7, steps=5, param_magnitude=3.0, dtype=torch.float32) == \
        pytest.approx(10 * 1e-7 + 5 * 2 * u32 * 3.0, rel=1e-12)
    u64 = 2.0 ** -53
    got = tolerance("bucket", world_size=4, languages=3, dim=100, steps=5, lr=0.1,
                    momentum=0.5, optimizer="sgd", dtype=torch.float64,
                    input_magnitude=2.0, param_magnitude=3.0)
    lr_eff = 0.1 / (1 - 0.5)
    assert got == pytest.approx(5 * (2 * u64 * 3.0 + 1e4 * lr_eff * 2 * gamma(3, torch.float64)
                                     * 3 * 2.0), rel=1e-12)
    assert meaningful(0.01, 1.0) and not meaningful(0.0101, 1.0)
