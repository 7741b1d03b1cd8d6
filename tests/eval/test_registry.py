"""The registry is read from lm-eval's task index and normalises language codes across it."""

from pathlib import Path
from types import SimpleNamespace

from eval.languages.benchmarks import BUILTIN_BENCHMARKS
from eval.languages.coverage import coverage_listing, format_coverage


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


# ---------------------------------------------------------------- families (issue 11 §2)

NEW_FAMILIES = {
    # benchmark: (a language, the lm-eval name that must measure it)
    "mmmlu": ("de", "mmmlu_de_de"),
    "global_piqa": ("fr", "global_piqa_nonparallel_cloze_fra_latn_fran"),
    "global_piqa_parallel": ("pt", "global_piqa_parallel_cloze_por_latn_port"),
    "afrixnli": ("sw", "afrixnli_swa_prompt_1"),
    "afrimmlu": ("yo", "afrimmlu_direct_yor_prompt_1"),
    "afrimgsm": ("ha", "afrimgsm_hau_prompt_1"),
    "multiblimp": ("de", "multiblimp_deu"),
    "arc_mt": ("fi", "arc_challenge_mt_fi"),
    "truthfulqa_multi": ("eu", "truthfulqa-multi_mc2_eu"),
    "indicxnli": ("gu", "indicxnli_gu"),
}


def test_the_multilingual_families_of_lm_eval_are_registered(default_registry):
    for benchmark, (language, lm_eval_name) in NEW_FAMILIES.items():
        unit = default_registry.unit(benchmark, language)
        assert unit is not None and unit.lm_eval_name == lm_eval_name, benchmark
    assert len(default_registry.languages(["mmmlu"])) == 14
    assert default_registry.leaf_tasks("mmmlu_de_de") >= {"mmmlu_de_de_anatomy"}
    assert len(default_registry.languages(["global_piqa"])) > 100
    # One unit per language: prompt variants, translate-test and CoT are other tasks.
    for benchmark in ("afrixnli", "afrimmlu", "afrimgsm"):
        names = [u.lm_eval_name for u in default_registry.units if u.benchmark == benchmark]
        assert all(n.endswith("_prompt_1") and "translate" not in n and "_cot_" not in n
                   for n in names), benchmark


def test_regional_varieties_do_not_stand_for_the_language(default_registry):
    # Global PIQA spells French, Portuguese and Spanish only with a country; the
    # home-country variety is the language, the others are left out, not merged.
    piqa = {u.language: u.lm_eval_name for u in default_registry.units
            if u.benchmark == "global_piqa"}
    assert piqa["es"].endswith("spa_latn_spai") and piqa["pt"].endswith("por_latn_port")
    assert not [name for name in piqa.values() if name.endswith(("_cana", "_braz", "_mexi"))]
    assert piqa["dhd"].endswith("dhd_deva") and piqa["rwr"].endswith("rwr_deva")


def test_okapi_arc_and_hellaswag_have_their_english_source(default_registry):
    assert default_registry.unit("okapi_arc", "en").lm_eval_name == "arc_challenge"
    assert default_registry.unit("okapi_hellaswag", "en").lm_eval_name == "hellaswag"
    assert default_registry.unit("arc_mt", "en") is None  # arc_challenge is okapi_arc's


def test_xnli_is_the_original_fifteen_and_regional_suites_are_their_own(default_registry):
    assert default_registry.languages(["xnli"]) == sorted(
        "ar bg de el en es fr hi ru sw th tr ur vi zh".split())
    assert default_registry.unit("xnli_regional", "ca").lm_eval_name == "xnli_ca"
    assert default_registry.languages(["xnli_regional"]) == ["ca", "eu", "gl"]
    for original, regional in (("xcopa", "eu"), ("xstorycloze", "ca"), ("pawsx", "gl"),
                               ("mgsm", "eu"), ("belebele", "gl"), ("xquad", "ca")):
        assert default_registry.unit(original, regional) is None, original
        assert default_registry.unit(f"{original}_regional", regional) is not None, original
    # XStoryCloze's own Basque stays XStoryCloze.
    assert default_registry.unit("xstorycloze", "eu").lm_eval_name == "xstorycloze_eu"


def test_every_unit_comes_from_its_familys_folder(default_registry):
    import lm_eval.tasks

    root = Path(lm_eval.tasks.__file__).resolve().parent
    named = {name for spec in default_registry.specs.values() for name, _ in spec.named}
    for unit in default_registry.units:
        spec = default_registry.specs[unit.benchmark]
        path = default_registry.task_index[unit.lm_eval_name].yaml_path
        if spec.folders and unit.lm_eval_name not in named:
            assert Path(path).resolve().relative_to(root).parts[0] in spec.folders, unit


def test_folder_rule_applies_to_lm_evals_tasks_only(tmp_path):
    import lm_eval.tasks

    from eval.languages.registry import _in_family_folder

    spec = next(s for s in BUILTIN_BENCHMARKS if s.name == "xnli")
    root = Path(lm_eval.tasks.__file__).resolve().parent
    assert _in_family_folder(spec, SimpleNamespace(yaml_path=root / "xnli" / "xnli_de.yaml"))
    assert not _in_family_folder(
        spec, SimpleNamespace(yaml_path=root / "catalan_bench" / "xnli_ca.yaml"))
    # A user's own xnli_xx in an include path is taken by its name.
    assert _in_family_folder(spec, SimpleNamespace(yaml_path=tmp_path / "xnli_sw.yaml"))


def test_languages_lists_the_new_families(default_registry):
    listing = coverage_listing(default_registry, sorted(NEW_FAMILIES))
    assert set(listing["benchmarks"]) == set(NEW_FAMILIES)
    text = format_coverage(listing)
    for benchmark in NEW_FAMILIES:
        assert f"  {benchmark} " in text
    assert "prompt 1" in listing["benchmarks"]["afrixnli"]["description"]
