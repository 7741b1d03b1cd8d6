"""The registry is read from lm-eval's task index and normalises language codes across it."""

from eval.benchmarks import BUILTIN_BENCHMARKS
from eval.coverage import coverage_listing, format_coverage


def test_every_builtin_benchmark_is_found_in_the_installed_lm_eval(default_registry):
    found = set(default_registry.benchmarks())
    assert {spec.name for spec in BUILTIN_BENCHMARKS} <= found
    for benchmark in ("xnli", "xcopa", "xstorycloze", "xwinograd", "pawsx", "mgsm", "belebele"):
        assert len(default_registry.languages([benchmark])) >= 5, benchmark


def test_units_name_tasks_or_groups_that_lm_eval_really_has(default_registry):
    index = default_registry.task_index
    for unit in default_registry.units:
        assert unit.lm_eval_name in index, unit


def test_one_language_spelled_differently_by_benchmarks_is_one_language(default_registry):
    zh = {u.benchmark: u.lm_eval_name for u in default_registry.units if u.language == "zh"}
    assert zh["xnli"] == "xnli_zh"
    assert zh["belebele"] == "belebele_zho_Hans"
    assert zh["include"] == "include_base_44_chinese"
    ja = {u.benchmark: u.lm_eval_name for u in default_registry.units if u.language == "ja"}
    assert ja["xwinograd"] == "xwinograd_jp"
    assert ja["pawsx"] == "paws_ja"
    assert default_registry.unit("belebele", "zh-Hant").lm_eval_name == "belebele_zho_Hant"


def test_group_units_expand_to_their_subtasks(default_registry):
    unit = default_registry.unit("global_mmlu", "ar")
    assert unit.lm_eval_name == "global_mmlu_ar"
    leaves = default_registry.leaf_tasks(unit.lm_eval_name)
    assert "global_mmlu_ar_stem" in leaves and len(leaves) == 6


def test_names_that_cannot_be_placed_are_listed_not_hidden(default_registry):
    assert any("xnli_va" in note for note in default_registry.notes)


def test_coverage_comes_from_the_task_manager_given(local_registry):
    # Built from a TaskManager without lm-eval's defaults: only the local suite exists.
    assert local_registry.benchmarks() == ["local_wordorder", "local_xnli"]
    listing = coverage_listing(local_registry)
    assert set(listing["languages"]) == {"en", "de", "fr", "es", "zh"}
    assert listing["languages"]["zh"]["benchmarks"]["local_xnli"] == "local_xnli_zh"
    assert "5 languages in 2 benchmarks" in format_coverage(listing)
