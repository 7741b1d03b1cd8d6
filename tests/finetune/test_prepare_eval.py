"""The miniature's tasks through ``eval``: declared families, and a base that leaves room."""

from __future__ import annotations

import json

import pytest

from eval.api import evaluate_checkpoint
from eval.languages.registry import build_registry, declared_benchmarks, load_task_manager
from eval.running.runner import EvalSettings
from finetune.data.corpus import DEFAULT_LANGUAGES, number_row

SEEN, UNSEEN = ("en",), ("nl", "uk", "fa", "fr")


def test_an_include_path_declares_its_own_benchmark_families(prepared_miniature):
    registry = build_registry(load_task_manager([prepared_miniature.tasks],
                                                include_defaults=False))
    assert registry.benchmarks() == sorted(prepared_miniature.benchmarks)
    for benchmark in prepared_miniature.benchmarks:
        assert registry.languages([benchmark]) == sorted(DEFAULT_LANGUAGES)
    assert registry.unit("numwords_mc", "fa").lm_eval_name == "numwords_mc_fa"
    assert registry.metric_preferences["numwords_gen"] == ("exact_match",)


def test_without_a_declaration_nothing_changes(tmp_path):
    assert declared_benchmarks([tmp_path]) == ()


@pytest.mark.parametrize(("content", "message"), [
    ("{not json", "not valid JSON"),
    ('{"name": "x"}', "expected a JSON list"),
    ('[{"name": "x"}]', r'\[0\]: a family needs at least "name" and "pattern"'),
    ('[{"name": "x", "pattern": "^x_(?P<lang>..)$", "metric": ["acc"]}]',
     r"unknown field\(s\) \['metric'\]"),
    ('[{"name": "x", "pattern": "^x_(..)$"}]', r"needs a \(\?P<lang>\.\.\.\) group"),
])
def test_a_bad_declaration_names_its_file_and_entry(tmp_path, content, message):
    (tmp_path / "benchmarks.json").write_text(content, encoding="utf-8")
    with pytest.raises(ValueError, match=message) as caught:
        declared_benchmarks([tmp_path])
    assert str(tmp_path / "benchmarks.json") in str(caught.value)


def test_one_name_declared_twice_differently_is_refused(prepared_miniature, tmp_path):
    other = [{"name": "numwords_mc", "pattern": "^other_(?P<lang>[a-z]{2})$"}]
    (tmp_path / "benchmarks.json").write_text(json.dumps(other), encoding="utf-8")
    manager = load_task_manager([prepared_miniature.tasks, tmp_path], include_defaults=False)
    with pytest.raises(ValueError, match="'numwords_mc' is declared twice"):
        build_registry(manager)


def test_multiple_choice_items_hold_the_answer_and_same_language_distractors(
        prepared_miniature):
    rows = [json.loads(line) for line in (prepared_miniature.tasks / "data" /
            "numwords_mc_de.jsonl").read_text(encoding="utf-8").splitlines()]
    assert len(rows) == 24
    for row in rows:
        number = int(row["prompt"].removeprefix("de|").removesuffix("="))
        assert row["choices"][row["label"]] == number_row("de", number)[1]
        assert len(set(row["choices"])) == len(row["choices"]) == 4


@pytest.fixture(scope="module")
def base_scores(prepared_miniature, tmp_path_factory):
    """The base model through the same call the experiment makes (multiple choice only)."""
    summary = evaluate_checkpoint(
        prepared_miniature.base, seen=SEEN, unseen=UNSEEN, benchmarks=["numwords_mc"],
        out_dir=tmp_path_factory.mktemp("base-eval"), include_paths=[prepared_miniature.tasks],
        include_defaults=False, settings=EvalSettings(batch_size=32), show_progress=False)
    return {unit["language"]: unit for unit in summary["units"]}


def test_the_base_scores_strictly_between_0_and_1_on_unseen_languages(base_scores):
    for language in UNSEEN:
        unit = base_scores[language]
        assert unit["n"] == 24
        # Neither floor nor ceiling: fine-tuning can move it both ways.
        assert 0.0 < unit["score"] < 1.0, (language, unit["score"])
