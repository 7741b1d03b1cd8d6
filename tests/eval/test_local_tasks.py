"""The offline suite loads through TaskManager(include_path) and reuses built-in prompts."""

import os

import yaml
from lm_eval.tasks._yaml_loader import load_yaml

from eval.languages.registry import load_task_manager
from eval.parallel_corpus import LANGUAGES, SENTENCES
from eval.running.local_tasks import builtin_task_yaml, wordorder_items


def test_local_xnli_includes_the_builtin_yaml_and_only_swaps_the_data(local_suite):
    local = yaml.safe_load((local_suite / "local_xnli" / "local_xnli_de.yaml").read_text())
    assert local["include"] == str(builtin_task_yaml("xnli/xnli_de.yaml"))
    assert "doc_to_choice" not in local and "doc_to_text" not in local
    merged = load_yaml(local_suite / "local_xnli" / "local_xnli_de.yaml")
    builtin = load_yaml(builtin_task_yaml("xnli/xnli_de.yaml"))
    for key in ("doc_to_choice", "doc_to_text", "doc_to_target", "output_type", "metric_list"):
        assert merged[key] == builtin[key], key
    assert merged["dataset_path"] == "json" and builtin["dataset_path"] == "facebook/xnli"


def test_builtin_prompt_is_rendered_on_local_rows(local_task_manager):
    task = local_task_manager.load(["local_xnli_de"])["tasks"]["local_xnli_de"]
    doc = next(iter(task.validation_docs()))
    assert doc["premise"] == SENTENCES["de"][0]
    choices = task.doc_to_choice(doc)
    assert choices[0] == f"{doc['premise']}, richtig? Ja, {doc['hypothesis']}"
    assert len(choices) == 3


def test_data_paths_do_not_depend_on_the_working_directory(local_suite, tmp_path):
    # lm-eval resolves a relative data_files path against the CWD; ours are absolute.
    cwd = os.getcwd()
    os.chdir(tmp_path)
    try:
        manager = load_task_manager([local_suite], include_defaults=False)
        task = manager.load(["local_wordorder_fr"])["tasks"]["local_wordorder_fr"]
        assert len(list(task.test_docs())) == len(SENTENCES["fr"])
    finally:
        os.chdir(cwd)


def test_wordorder_pairs_a_sentence_with_a_different_order_of_its_words():
    for language in LANGUAGES:
        for item, sentence in zip(wordorder_items(language), SENTENCES[language], strict=True):
            natural, shuffled = item["options"][item["label"]], item["options"][1 - item["label"]]
            assert natural == sentence and shuffled != sentence
            assert sorted(shuffled) == sorted(sentence)
    assert wordorder_items("en") == wordorder_items("en")  # deterministic
    labels = [item["label"] for item in wordorder_items("en")]
    assert 0 < sum(labels) < len(labels)  # the correct option is not always first
