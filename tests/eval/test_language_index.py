"""Over lm-eval's whole task index: one language, one tag (issue 11 §1).

Every per-language task of every registered benchmark maps to exactly one canonical
tag; the tag is reachable from the language's ISO 639-1 code and from its English name;
and no language appears under two tags unless the scripts really differ.
"""

import langcodes
import pytest
from langcodes.data_dicts import MACROLANGUAGES

from eval.languages.codes import (
    DISTINCT_MEMBERS,
    FOLDED_MEMBERS,
    canonical_language,
    language_name,
)


def _base(tag: str) -> str:
    return langcodes.Language.get(tag).language


def test_no_two_tasks_of_a_benchmark_collapse_onto_one_tag(default_registry):
    collapsed = [note for note in default_registry.notes if "both map to" in note]
    assert collapsed == []


def test_every_tag_is_reachable_from_its_iso_639_1_code_and_english_name(default_registry):
    for tag in default_registry.languages():
        language = langcodes.Language.get(tag)
        base = language.language
        if len(base) == 2:  # the language has an ISO 639-1 code
            assert canonical_language(base) == _base(tag), tag
        name = langcodes.Language.get(base).display_name()
        assert canonical_language(name) == base, (tag, name)
        if language.script is not None:
            assert canonical_language(f"{base}_{language.script}") == tag


def test_no_language_is_listed_under_two_codes(default_registry):
    bases = {_base(tag) for tag in default_registry.languages()}
    for base in bases:
        macro = MACROLANGUAGES.get(base)
        # Members with an ISO 639-1 code of their own (id in ms, sr in sh) are languages.
        if macro is None or macro not in bases or len(base) == 2:
            continue
        # A member listed beside its macrolanguage must be a variety benchmarks test apart.
        assert base in DISTINCT_MEMBERS, (base, macro)


def test_every_member_code_in_the_index_was_decided(default_registry):
    """A new lm-eval that brings a member of a macrolanguage (pbt for Pashto) fails here
    until someone decides whether it is the whole language or a variety of its own."""
    for unit in default_registry.units:
        native = unit.native_code.split("_")[0].split("-")[0].lower()
        if native in MACROLANGUAGES and len(native) == 3 and _base(unit.language) == native:
            assert native in DISTINCT_MEMBERS | set(FOLDED_MEMBERS), unit


@pytest.mark.parametrize(("spelling", "tag"), [
    ("kor_Hang", "ko"), ("ko", "ko"), ("Korean", "ko"),
    ("pbt_Arab", "ps"), ("ps", "ps"), ("Pashto", "ps"),
    ("acm_Arab", "acm"), ("acm", "acm"), ("apc_Arab", "apc"), ("apc", "apc"),
    ("zh-TW", "zh-Hant"), ("zho_Hant", "zh-Hant"), ("zh-CN", "zh"),
    ("fil", "fil"), ("Filipino", "fil"),
])
def test_the_audited_languages(spelling, tag):
    assert canonical_language(spelling) == tag


def test_the_audited_languages_are_single_units_in_belebele(default_registry):
    belebele = {u.language: u.lm_eval_name for u in default_registry.units
                if u.benchmark == "belebele"}
    assert belebele["ko"] == "belebele_kor_Hang"
    assert belebele["ps"] == "belebele_pbt_Arab"
    assert belebele["zh-Hant"] == "belebele_zho_Hant"
    assert not [tag for tag in belebele if tag.startswith(("ko-", "pbt", "acm-"))]
    assert language_name("ps") == "Pashto"


def test_global_mmlu_full_has_every_language_group_of_the_index(default_registry):
    index = default_registry.task_index
    groups = {name for name in index
              if name.startswith("global_mmlu_full_") and name.count("_") == 3
              and index[name].kind.name.lower() == "group"}
    units = {u.lm_eval_name for u in default_registry.units if u.benchmark == "global_mmlu_full"}
    assert "global_mmlu_full_fil" in units
    assert units == groups


def test_the_built_in_index_is_the_size_the_readme_says(default_task_manager):
    """eval/README.md: ``--no-defaults`` skips lm-eval's ~15 000 built-in configs."""
    assert 12_000 <= len(default_task_manager.all_tasks) <= 18_000
