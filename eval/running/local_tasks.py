"""Offline lm-eval tasks: YAML configs plus local JSONL, loaded with TaskManager(include_path).

Two benchmarks are written, both in every language of ``parallel_corpus``:

* ``local_xnli_<lang>`` *includes lm-eval's own* ``xnli_<lang>.yaml`` and overrides only
  the data (``dataset_path: json``), so the built-in prompt format is reused unchanged on
  local rows; this is the pattern for running any built-in benchmark on local data.
* ``local_wordorder_<lang>`` is fully local: pick the sentence with natural word order
  over a shuffled copy (a minimal-pair, BLiMP-style test).

Paths inside the YAML are written absolute because lm-eval resolves a relative
``data_files`` path against the current directory, not against the YAML file.
"""

from __future__ import annotations

import json
import random
from collections.abc import Sequence
from pathlib import Path

import yaml

from eval.parallel_corpus import LANGUAGES, SENTENCES, nli_items

_WORDORDER_TEMPLATE = {
    "dataset_path": "json",
    "dataset_name": None,
    "output_type": "multiple_choice",
    "test_split": "test",
    "doc_to_text": "",
    "doc_to_choice": "{{options}}",
    "doc_to_target": "label",
    "metric_list": [{"metric": "acc", "aggregation": "mean", "higher_is_better": True}],
    "metadata": {"version": 1.0},
}


def builtin_task_yaml(relative: str) -> Path:
    """Path of a YAML shipped inside the installed lm-eval, e.g. 'xnli/xnli_en.yaml'."""
    import lm_eval.tasks

    path = Path(lm_eval.tasks.__file__).parent / relative
    if not path.is_file():
        raise FileNotFoundError(f"the installed lm-eval has no task config {relative}")
    return path


def write_local_suite(dest: str | Path, languages: Sequence[str] = LANGUAGES) -> Path:
    """Write the offline task suite under ``dest`` and return it (the include_path)."""
    dest = Path(dest).resolve()
    unknown = sorted(set(languages) - set(LANGUAGES))
    if unknown:
        raise ValueError(f"no bundled data for {unknown}; available: {list(LANGUAGES)}")
    for language in languages:
        _write_xnli(dest, language)
        _write_wordorder(dest, language)
    _write_group(
        dest / "local_xnli" / "_local_xnli.yaml",
        "local_xnli",
        [f"local_xnli_{lang}" for lang in languages],
    )
    _write_group(
        dest / "local_wordorder" / "_local_wordorder.yaml",
        "local_wordorder",
        [f"local_wordorder_{lang}" for lang in languages],
    )
    return dest


def wordorder_items(language: str) -> list[dict]:
    """Each corpus sentence paired with a shuffled copy; ``label`` marks the natural one."""
    items = []
    for index, sentence in enumerate(SENTENCES[language]):
        # Seeded per sentence so the suite is identical wherever it is written.
        rng = random.Random(f"wordorder-{language}-{index}")
        shuffled = _shuffle_words(sentence, language, rng)
        label = rng.randint(0, 1)
        options = [sentence, shuffled] if label == 0 else [shuffled, sentence]
        items.append({"options": options, "label": label})
    return items


def _shuffle_words(sentence: str, language: str, rng: random.Random) -> str:
    body, final = sentence[:-1], sentence[-1]
    # Chinese has no spaces between words; characters are the shuffled units there.
    units = list(body) if language == "zh" else body.split()
    joiner = "" if language == "zh" else " "
    for _ in range(100):
        rng.shuffle(units)
        shuffled = joiner.join(units) + final
        if shuffled != sentence:
            return shuffled
    raise ValueError(f"cannot shuffle {sentence!r} into a different order")


def _write_xnli(dest: Path, language: str) -> None:
    data = _write_jsonl(dest / "data" / f"local_xnli_{language}.jsonl", nli_items(language))
    config = {
        "include": str(builtin_task_yaml(f"xnli/xnli_{language}.yaml")),
        "task": f"local_xnli_{language}",
        "dataset_path": "json",
        "dataset_name": None,
        "dataset_kwargs": {"data_files": {"validation": str(data)}},
        "training_split": None,
        "validation_split": "validation",
    }
    _write_yaml(dest / "local_xnli" / f"local_xnli_{language}.yaml", config)


def _write_wordorder(dest: Path, language: str) -> None:
    data = _write_jsonl(
        dest / "data" / f"local_wordorder_{language}.jsonl", wordorder_items(language)
    )
    config = {
        **_WORDORDER_TEMPLATE,
        "task": f"local_wordorder_{language}",
        "dataset_kwargs": {"data_files": {"test": str(data)}},
    }
    _write_yaml(dest / "local_wordorder" / f"local_wordorder_{language}.yaml", config)


def _write_group(path: Path, name: str, tasks: list[str]) -> None:
    _write_yaml(
        path,
        {
            "group": name,
            "task": tasks,
            "aggregate_metric_list": [{"metric": "acc", "weight_by_size": True}],
            "metadata": {"version": 1.0},
        },
    )


def _write_jsonl(path: Path, rows: list[dict]) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(
        "".join(json.dumps(row, ensure_ascii=False) + "\n" for row in rows), encoding="utf-8"
    )
    return path


def _write_yaml(path: Path, config: dict) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(yaml.safe_dump(config, allow_unicode=True, sort_keys=False), encoding="utf-8")
