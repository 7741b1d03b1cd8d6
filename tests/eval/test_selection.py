import pytest
import yaml

from eval.languages.benchmarks import LOCAL_BENCHMARKS, BenchmarkSpec
from eval.languages.registry import build_registry, load_task_manager
from eval.languages.selection import plan_run
from eval.suggestions import UnknownNameError


def test_unseen_defaults_to_every_other_covered_language(local_registry):
    plan = plan_run(local_registry, ["en", "German"])
    assert plan.seen == ("en", "de")
    assert plan.unseen == ("es", "fr", "zh")
    assert len(plan.units) == 10


def test_explicit_unseen_and_benchmark_selection(local_registry):
    plan = plan_run(local_registry, ["en"], ["zho_Hans"], ["local_xnli"])
    assert [u.unit_id for u in plan.units] == ["local_xnli/en", "local_xnli/zh"]


def test_unknown_language_lists_close_matches(local_registry):
    with pytest.raises(UnknownNameError) as info:
        plan_run(local_registry, ["englsh"])
    assert "English" in info.value.close_matches
    assert "did you mean" in str(info.value)


def test_unknown_benchmark_lists_close_matches(local_registry):
    with pytest.raises(UnknownNameError) as info:
        plan_run(local_registry, ["en"], benchmarks=["local_xnl"])
    assert info.value.close_matches[0] == "local_xnli"


def test_seen_language_without_coverage_is_reported_not_dropped(local_registry):
    plan = plan_run(local_registry, ["en", "ja"], ["fr", "sw"])
    assert plan.seen == ("en", "ja")
    assert plan.uncovered_seen == ("ja",)
    assert plan.uncovered_unseen == ("sw",)


def test_a_language_cannot_be_seen_and_unseen(local_registry):
    with pytest.raises(ValueError, match="both seen and unseen"):
        plan_run(local_registry, ["en"], ["English"])


def test_units_that_share_an_lm_eval_task_are_refused(local_suite, tmp_path):
    # A group holding local_xnli_en would run that task a second time in the same plan.
    (tmp_path / "mix_en.yaml").write_text(
        yaml.safe_dump({"group": "mix_en", "task": ["local_xnli_en", "local_wordorder_en"]})
    )
    manager = load_task_manager([local_suite, tmp_path], include_defaults=False)
    mix = BenchmarkSpec("mix", r"^mix_(?P<lang>[a-z]{2})$", kinds=frozenset({"group"}))
    registry = build_registry(manager, LOCAL_BENCHMARKS + (mix,))
    with pytest.raises(ValueError, match="local_xnli_en"):
        plan_run(registry, ["en"], [], ["local_xnli", "mix"])
    assert len(plan_run(registry, ["en"], [], ["mix"]).units) == 1
