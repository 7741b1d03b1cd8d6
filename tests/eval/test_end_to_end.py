"""A tiny local checkpoint evaluated through lm-eval on seen and unseen languages, offline."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest

import eval.api
import eval.running.runner
from eval.api import evaluate_checkpoint
from eval.languages.registry import build_registry, load_task_manager
from eval.languages.selection import plan_run
from eval.reporting.write import write_run_report
from eval.running.checkpoints import CheckpointError, load_checkpoint
from eval.running.runner import EvalSettings, run_evaluation
from eval.running.store import RunSettingsMismatch
from tests.eval.tiny_models import SEEN, UNSEEN


def test_run_covers_every_language_split_into_seen_and_unseen(base_run):
    _, summary = base_run
    assert summary["seen"] == list(SEEN) and summary["unseen"] == list(UNSEEN)
    assert {u["language"] for u in summary["units"]} == set(SEEN + UNSEEN)
    assert {u["benchmark"] for u in summary["units"]} == {"local_xnli", "local_wordorder"}
    assert summary["failures"] == [] and summary["pending"] == []
    splits = {u["language"]: u["split"] for u in summary["units"]}
    assert all(splits[lang] == "seen" for lang in SEEN)
    assert all(splits[lang] == "unseen" for lang in UNSEEN)
    for unit in summary["units"]:
        assert unit["metric"] == "acc,none"
        assert unit["n"] == (8 if unit["benchmark"] == "local_xnli" else 24)
        assert unit["stderr"] is not None and unit["stderr"] > 0


def test_aggregates_equal_a_recomputation_from_lm_evals_raw_results(base_run):
    out, summary = base_run
    scores: dict[tuple[str, str], float] = {}
    for raw_file in sorted((out / "raw").glob("*.json")):
        benchmark, language = raw_file.stem.split("__")
        raw = json.loads(raw_file.read_text())
        scores[benchmark, language] = raw["results"][f"{benchmark}_{language}"]["acc,none"]
    assert len(scores) == 10

    def mean(values):
        return sum(values) / len(values)

    per_language = {
        lang: mean([s for (_, l), s in scores.items() if l == lang]) for lang in SEEN + UNSEEN
    }
    agg = summary["aggregates"]
    assert agg["per_language"] == pytest.approx(per_language)
    assert agg["seen"] == pytest.approx(mean([per_language[lang] for lang in SEEN]))
    assert agg["unseen"] == pytest.approx(mean([per_language[lang] for lang in UNSEEN]))
    for benchmark in ("local_xnli", "local_wordorder"):
        assert agg["per_benchmark"][benchmark]["unseen"] == pytest.approx(
            mean([scores[benchmark, lang] for lang in UNSEEN])
        )


def test_raw_output_and_samples_are_kept_beside_the_summary(base_run):
    out, summary = base_run
    unit = summary["units"][0]
    raw = json.loads((out / unit["raw_file"]).read_text())
    assert {"results", "configs", "versions", "n-samples"} <= raw.keys()
    rows = [json.loads(line) for line in (out / unit["samples_file"]).read_text().splitlines()]
    assert len(rows) == unit["n"]
    assert sum(row["acc"] for row in rows) / len(rows) == pytest.approx(unit["score"])


def test_report_and_plots_are_written(base_run):
    out, summary = base_run
    report = write_run_report(out, summary).read_text()
    assert "| seen |" in report and "local_xnli/zh" in report
    for name in ("language_scores.png", "seen_vs_unseen.png"):
        assert (out / "plots" / name).read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_evaluation_makes_no_network_access(network_guard, tmp_path, base_checkpoint, local_suite):
    import socket

    manager = load_task_manager([local_suite], include_defaults=False)
    registry = build_registry(manager)
    plan = plan_run(registry, ["en"], ["fr", "zh"], ["local_xnli"])
    summary = run_evaluation(
        load_checkpoint(base_checkpoint),
        plan,
        manager,
        tmp_path,
        EvalSettings(limit=3),
        registry.metric_preferences,
        show_progress=False,
    )
    assert len(summary["units"]) == 3
    assert network_guard.attempts == []
    with pytest.raises(ConnectionRefusedError):  # the guard is really in place
        socket.create_connection(("huggingface.co", 443), timeout=1)
    assert network_guard.attempts


def test_in_memory_model_scores_like_its_saved_checkpoint(
    tmp_path, in_memory, base_run, local_suite
):
    _, saved = base_run
    summary = evaluate_checkpoint(
        model=in_memory.model,
        tokenizer=in_memory.tokenizer,
        seen=["en"],
        unseen=["zh"],
        benchmarks=["local_wordorder"],
        out_dir=tmp_path,
        label="in-memory",
        include_paths=[local_suite],
        include_defaults=False,
        show_progress=False,
    )
    assert summary["checkpoint"] == "in-memory" and len(summary["units"]) == 2
    saved_scores = {u["unit"]: u["score"] for u in saved["units"]}
    for unit in summary["units"]:
        assert unit["score"] == pytest.approx(saved_scores[unit["unit"]])
    assert (tmp_path / "report.md").exists()


def test_api_takes_a_path_or_a_model_not_both(tmp_path, in_memory, base_checkpoint):
    with pytest.raises(CheckpointError, match="not both"):
        evaluate_checkpoint(base_checkpoint, model=in_memory.model, seen=["en"], out_dir=tmp_path)


def _copy_suite(local_suite: Path, dest: Path) -> Path:
    # The YAMLs hold absolute data paths, so rewrite them for the copy.
    shutil.copytree(local_suite, dest)
    for yaml_file in dest.rglob("*.yaml"):
        yaml_file.write_text(yaml_file.read_text().replace(str(local_suite), str(dest)))
    return dest


def test_a_failing_unit_keeps_the_others_and_resume_redoes_only_it(
    tmp_path, base_checkpoint, local_suite, monkeypatch
):
    suite = _copy_suite(local_suite, tmp_path / "suite")
    broken = suite / "data" / "local_xnli_fr.jsonl"
    good_rows = broken.read_text()
    broken.write_text("{not json\n")
    manager = load_task_manager([suite], include_defaults=False)
    registry = build_registry(manager)
    plan = plan_run(registry, ["en"], ["fr", "de"], ["local_xnli"])
    checkpoint = load_checkpoint(base_checkpoint)
    out = tmp_path / "run"
    settings = EvalSettings(limit=4)

    first = run_evaluation(
        checkpoint, plan, manager, out, settings, registry.metric_preferences, show_progress=False
    )
    assert [f["unit"] for f in first["failures"]] == ["local_xnli/fr"]
    assert {u["unit"] for u in first["units"]} == {"local_xnli/en", "local_xnli/de"}
    assert json.loads((out / "summary.json").read_text())["failures"] == first["failures"]

    broken.write_text(good_rows)
    evaluated = []
    real = eval.running.runner.RunStore.save_unit
    monkeypatch.setattr(
        eval.running.runner.RunStore,
        "save_unit",
        lambda self, unit, output: (evaluated.append(unit.unit_id), real(self, unit, output)),
    )
    second = run_evaluation(
        checkpoint, plan, manager, out, settings, registry.metric_preferences, show_progress=False
    )
    assert evaluated == ["local_xnli/fr"]
    assert second["failures"] == [] and len(second["units"]) == 3
    assert not (out / "failures").exists() or not any((out / "failures").iterdir())

    with pytest.raises(RunSettingsMismatch, match="limit"):
        run_evaluation(
            checkpoint,
            plan,
            manager,
            out,
            EvalSettings(limit=5),
            registry.metric_preferences,
            show_progress=False,
        )


def test_resume_with_another_dtype_is_refused_before_the_model_loads(
    tmp_path, base_checkpoint, local_suite, monkeypatch
):
    common = dict(seen=["en"], unseen=["fr"], benchmarks=["local_wordorder"], out_dir=tmp_path,
                  settings=EvalSettings(limit=2), include_paths=[local_suite],
                  include_defaults=False, show_progress=False)
    evaluate_checkpoint(base_checkpoint, dtype="float32", **common)
    manifest = json.loads((tmp_path / "manifest.json").read_text())
    assert manifest["dtype"] == "float32"

    def no_loading(*args, **kwargs):
        raise AssertionError("the weights were loaded before the settings were checked")

    monkeypatch.setattr(eval.api, "load_checkpoint", no_loading)
    with pytest.raises(RunSettingsMismatch, match="dtype"):
        evaluate_checkpoint(base_checkpoint, dtype="bfloat16", **common)
    with pytest.raises(RunSettingsMismatch, match="batch_size"):
        evaluate_checkpoint(base_checkpoint, dtype="float32",
                            **{**common, "settings": EvalSettings(limit=2, batch_size=4)})
    # The refused attempts left the recorded settings as they were.
    assert json.loads((tmp_path / "manifest.json").read_text()) == manifest
