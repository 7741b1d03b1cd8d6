"""The quick experiment end to end: results.json, report, recomputable scores, resume."""

from __future__ import annotations

import json
import math
from pathlib import Path
from types import SimpleNamespace

import pytest

from eval.atomic_io import read_json, read_jsonl
from finetune.errors import ConfigError
from finetune.experiment import load_config, run_experiment
from finetune.experiment.config import parse_config

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def quick(prepared_miniature, tmp_path_factory):
    config = load_config("quick")
    prepare_dir = _reusable_prepare_dir(prepared_miniature, config)
    out = tmp_path_factory.mktemp("quick-experiment")
    report = run_experiment(config, out, prepare_dir=prepare_dir, progress=False)
    return SimpleNamespace(config=config, out=out, report=report, prepare_dir=prepare_dir,
                           results=read_json(out / "results.json"))


def _reusable_prepare_dir(prepared, config) -> Path | None:
    """The fixture's prepare directory when it was made with the quick config's settings
    (prepare is cached by content, so the experiment then reuses it as it is)."""
    from finetune.model import PrepareSettings

    if PrepareSettings.from_mapping(config.prepare) == PrepareSettings.small():
        return Path(prepared.base).parent
    return None


def unit_interval(value) -> bool:
    return isinstance(value, float) and 0.0 <= value <= 1.0


def test_results_schema_and_value_ranges(quick):
    results, config = quick.results, quick.config
    assert results["languages"] == {"pretrain": list(config.pretrain),
                                    "seen": list(config.seen), "unseen": list(config.unseen)}
    assert unit_interval(results["base"]["seen"]) and unit_interval(results["base"]["unseen"])
    assert set(results["base"]["per_language"]) == set(config.seen + config.unseen)
    assert [(r["method"], r["seed"]) for r in results["runs"]] == [
        (m.name, s) for s in config.seeds for m in config.methods]
    for run in results["runs"]:
        assert unit_interval(run["seen"]) and unit_interval(run["unseen"])
        assert all(unit_interval(v) for v in run["per_language"].values())
        assert (Path(run["checkpoint"]) / "config.json").is_file()
        assert run["steps"] == config.train["steps"]
    assert list(results["methods"]) == [m.name for m in config.methods]
    standard = results["methods"]["standard"]
    for name, method in results["methods"].items():
        for split in ("seen", "unseen"):
            assert unit_interval(method[split])
            low, high = method[f"{split}_ci"]
            assert 0.0 <= low <= high <= 1.0
        if name == config.baseline:
            assert method["vs_baseline"] is None
            continue
        for split in ("seen", "unseen"):
            stats = method["vs_baseline"][split]
            assert stats["delta"] == pytest.approx(method[split] - standard[split], abs=1e-12)
            assert stats["ci_low"] <= stats["ci_high"] and 0.0 < stats["p_value"] <= 1.0
        assert method["time"]["step"] > 0 and method["grad_memory_bytes"] > 0


def test_scores_are_recomputable_from_the_eval_run_directories(quick):
    results, config = quick.results, quick.config
    for run in [{**results["base"], "method": "base"}, *results["runs"]]:
        root = Path(run["eval_dir"])
        summary = read_json(root / "summary.json")
        per_language: dict[str, list[float]] = {}
        for unit in summary["units"]:
            name, filter_name = unit["metric"].split(",", 1)
            rows = [r for r in read_jsonl(root / unit["samples_file"])
                    if r["filter"] == filter_name]
            score = sum(float(r[name]) for r in rows) / len(rows)
            assert score == pytest.approx(unit["score"], abs=1e-12)
            per_language.setdefault(unit["language"], []).append(score)
        means = {lang: sum(v) / len(v) for lang, v in per_language.items()}
        assert means == pytest.approx(run["per_language"], abs=1e-12)
        for split in ("seen", "unseen"):
            languages = getattr(config, split)
            expected = sum(means[lang] for lang in languages) / len(languages)
            assert run[split] == pytest.approx(expected, abs=1e-12)
    for name, method in results["methods"].items():
        own = [r["seen"] for r in results["runs"] if r["method"] == name]
        assert method["seen"] == pytest.approx(sum(own) / len(own), abs=1e-12)


def test_report_has_every_table_and_figure(quick):
    text = quick.report.read_text(encoding="utf-8")
    for heading in ("## Scores", "## Per language", "## Training", "## Separability by layer",
                    "## Cost", "## Runs"):
        assert heading in text
    figures = [line.split("](", 1)[1].rstrip(")") for line in text.splitlines()
               if line.startswith("![")]
    assert {Path(f).name for f in figures} == {"scores.png", "loss_curves.png", "conflict.png",
                                               "phi.png", "separability.png", "cost.png"}
    for figure in figures:
        assert (quick.out / figure).read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    for name in quick.results["methods"]:
        assert f"| {name} |" in text


def test_log_series_feed_the_report(quick):
    """φ_P never exceeds φ (DESIGN fact 1); conflict counts are fractions of buckets."""
    from finetune.experiment.logs import read_log, series

    for run in quick.results["runs"]:
        s = series(read_log(Path(run["train_dir"]) / "log.jsonl"))
        pairs = [(a, b) for a, b in zip(s["phi"], s["phi_p"], strict=True) if a is not None]
        assert pairs, f"{run['method']} logged no φ"
        assert all(b <= a * (1 + 1e-6) + 1e-12 for a, b in pairs)
        assert s["conflict"]
        assert all(0.0 <= f <= 1.0 for line in s["conflict"].values() for f in line
                   if f is not None)
        assert all(math.isfinite(v) for line in s["loss"].values() for v in line)


def test_a_second_run_does_no_work(quick, monkeypatch, capsys):
    import eval.api
    import finetune.train

    def refuse(*args, **kwargs):
        raise AssertionError("a finished step was run again")

    monkeypatch.setattr(finetune.train, "train", refuse)
    monkeypatch.setattr(eval.api, "evaluate_checkpoint", refuse)
    monkeypatch.setattr(eval.api, "analyse_checkpoints", refuse)
    before = (quick.out / "results.json").read_text()
    run_experiment(quick.config, quick.out, prepare_dir=quick.prepare_dir, progress=True)
    skipped = capsys.readouterr().err.count("(done before, skipped)")
    assert skipped == 1 + 3 * len(quick.results["runs"]) + 1  # base eval + sep, 3 per run
    assert json.loads((quick.out / "results.json").read_text()) == json.loads(before)


def test_an_out_dir_with_other_settings_is_refused(quick):
    raw = {"languages": {"pretrain": list(quick.config.pretrain),
                         "seen": list(quick.config.seen), "unseen": list(quick.config.unseen)},
           "seeds": [0], "train": {"steps": 1},
           "methods": {"standard": {"method": "standard"}}}
    other = parse_config(raw, name="other")
    with pytest.raises(ConfigError, match="holds an experiment with other settings"):
        run_experiment(other, quick.out, prepare_dir=quick.prepare_dir, progress=False)


def test_a_renamed_copy_of_the_config_resumes_but_changed_settings_do_not(tmp_path):
    from finetune.experiment.layout import Layout

    layout = Layout(tmp_path / "exp")
    layout.claim({"name": "quick", "seeds": [0]})
    layout.claim({"name": "quick-copy", "seeds": [0]})  # the file's stem only
    with pytest.raises(ConfigError, match=r"seeds: \[0\] -> \[1\]"):
        layout.claim({"name": "quick-copy", "seeds": [1]})
