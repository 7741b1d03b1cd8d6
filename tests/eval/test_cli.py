"""`python -m eval` subcommands, run in-process through eval.cli.main."""

from __future__ import annotations

import json
import subprocess
import sys

from eval.cli import main


def test_languages_lists_coverage_as_json(capsys, tmp_path):
    code = main(["languages", "--no-defaults", "--local-suite", str(tmp_path / "suite"), "--json"])
    listing = json.loads(capsys.readouterr().out)
    assert code == 0
    assert listing["languages"]["zh"]["benchmarks"] == {
        "local_wordorder": "local_wordorder_zh",
        "local_xnli": "local_xnli_zh",
    }
    assert listing["benchmarks"]["local_xnli"]["languages"] == ["de", "en", "es", "fr", "zh"]


def test_run_then_compare_then_separability(
    capsys, tmp_path, base_checkpoint, finetuned_checkpoint, local_suite
):
    common = [
        "--include-path",
        str(local_suite),
        "--no-defaults",
        "--seen",
        "en",
        "--unseen",
        "fr",
        "zho_Hans",
        "--benchmark",
        "local_xnli",
        "--limit",
        "4",
    ]
    for label, checkpoint in (("base", base_checkpoint), ("tuned", finetuned_checkpoint)):
        code = main(
            [
                "run",
                "--model",
                str(checkpoint),
                "--out",
                str(tmp_path / label),
                "--label",
                label,
                *common,
            ]
        )
        assert code == 0
        summary = json.loads((tmp_path / label / "summary.json").read_text())
        assert summary["unseen"] == ["fr", "zh"] and len(summary["units"]) == 3
        assert (tmp_path / label / "report.md").exists()

    assert (
        main(
            [
                "compare",
                str(tmp_path / "base"),
                str(tmp_path / "tuned"),
                "--baseline",
                "base",
                "--iterations",
                "200",
                "--out",
                str(tmp_path / "cmp"),
            ]
        )
        == 0
    )
    comparison = json.loads((tmp_path / "cmp" / "comparison.json").read_text())
    assert list(comparison["deltas"]) == ["tuned"]

    assert (
        main(
            [
                "separability",
                "--model",
                f"base={base_checkpoint}",
                f"tuned={finetuned_checkpoint}",
                "--languages",
                "en",
                "German",
                "zho_Hans",
                "--out",
                str(tmp_path / "sep"),
            ]
        )
        == 0
    )
    result = json.loads((tmp_path / "sep" / "separability.json").read_text())
    assert result["results"]["tuned"]["languages"] == ["de", "en", "zh"]
    assert "report:" in capsys.readouterr().out


def test_bad_input_exits_with_a_message_naming_close_matches(
    capsys, tmp_path, local_suite, base_checkpoint
):
    base = [
        "run",
        "--model",
        str(base_checkpoint),
        "--out",
        str(tmp_path / "r"),
        "--include-path",
        str(local_suite),
        "--no-defaults",
    ]
    assert main([*base, "--seen", "englsh"]) == 2
    assert "did you mean: English" in capsys.readouterr().err
    assert main([*base, "--seen", "en", "--benchmark", "local_xnl"]) == 2
    assert "did you mean: local_xnli" in capsys.readouterr().err
    assert (
        main(
            [
                "run",
                "--model",
                str(tmp_path / "missing"),
                "--out",
                str(tmp_path / "r"),
                "--include-path",
                str(local_suite),
                "--no-defaults",
                "--seen",
                "en",
            ]
        )
        == 2
    )
    assert "does not exist" in capsys.readouterr().err


def test_seen_language_without_coverage_is_reported(capsys, tmp_path, local_suite, base_checkpoint):
    code = main(
        [
            "run",
            "--model",
            str(base_checkpoint),
            "--out",
            str(tmp_path / "r"),
            "--include-path",
            str(local_suite),
            "--no-defaults",
            "--seen",
            "en",
            "ja",
            "--unseen",
            "fr",
            "--benchmark",
            "local_xnli",
            "--limit",
            "2",
        ]
    )
    assert code == 0
    assert "no coverage: seen ['ja']" in capsys.readouterr().out
    summary = json.loads((tmp_path / "r" / "summary.json").read_text())
    assert summary["seen"] == ["en", "ja"] and summary["uncovered"]["seen"] == ["ja"]
    assert "No coverage" in (tmp_path / "r" / "report.md").read_text()


def test_module_entry_point_runs():
    done = subprocess.run(
        [sys.executable, "-m", "eval", "--help"], capture_output=True, text=True, check=True
    )
    for command in ("languages", "run", "compare", "separability"):
        assert command in done.stdout
