"""The miniature's lm-eval tasks: numbers → words, generated and chosen.

Two benchmarks, one lm-eval task per language, over the held-out ``eval`` numbers:

- ``numwords_gen_<lang>`` (``generate_until``): greedy generation after ``<lang>|N=``,
  scored by exact match against num2words' spelling;
- ``numwords_mc_<lang>`` (``multiple_choice``): the log-likelihood of the right words
  against ``choices - 1`` distractors, the words of *other* numbers in the same language
  that differ from ``N`` in one digit (so they share most tokens with the answer and
  only knowing the number picks the right one). Chance is ``1 / choices``.

The include directory also holds ``benchmarks.json``, which declares both families to
``eval``'s registry (name, task-name pattern with a ``lang`` group, metrics), so
``python -m eval run --include-path DIR/tasks --benchmark numwords_mc ...`` needs no code
in ``eval``.

>>> picked = distractors(372, range(1000), 3, "de")
>>> len(picked), all(_one_digit_apart(n, 372) for n in picked)
(3, True)
"""

from __future__ import annotations

import json
import random
from collections.abc import Sequence
from pathlib import Path

import yaml

from finetune.data.corpus import number_row, number_words
from finetune.data.miniature import NumberSplit, write_jsonl

BENCHMARKS = ("numwords_mc", "numwords_gen")
# the file name eval.languages.registry looks for in an include path
DECLARATION = "benchmarks.json"

_DECLARED = (
    {"name": "numwords_mc", "pattern": r"^numwords_mc_(?P<lang>[a-z]{2,3})$",
     "metrics": ["acc"], "description": "numbers to words, right words among distractors"},
    {"name": "numwords_gen", "pattern": r"^numwords_gen_(?P<lang>[a-z]{2,3})$",
     "metrics": ["exact_match"], "description": "numbers to words, greedy generation"},
)


def distractors(number: int, pool: Sequence[int], count: int, salt: str) -> list[int]:
    """``count`` numbers of ``pool`` that differ from ``number`` in one digit (seeded).

    Falls back to other numbers of ``pool`` when too few one-digit neighbours exist.
    """
    candidates = sorted(set(pool) - {number})
    rng = random.Random(f"{salt}-{number}")
    near = [n for n in candidates if _one_digit_apart(n, number)]
    rng.shuffle(near)
    far = [n for n in candidates if n not in set(near)]
    rng.shuffle(far)
    return (near + far)[:count]


def _one_digit_apart(a: int, b: int) -> bool:
    x, y = str(a), str(b)
    return len(x) == len(y) and sum(p != q for p, q in zip(x, y, strict=True)) == 1


def write_tasks(dest: Path, languages: Sequence[str], split: NumberSplit, numbers: int,
                choices: int, final_dest: Path | None = None) -> Path:
    """Write YAMLs, JSONL data and ``benchmarks.json`` under ``dest``.

    ``final_dest`` is where ``dest`` will be renamed to: lm-eval resolves a relative
    ``data_files`` against the current directory, so the YAMLs hold absolute paths to the
    final place.
    """
    final = (final_dest or dest).resolve()
    for language in languages:
        mc_rows, gen_rows = [], []
        for number in split.eval:
            prompt, answer = number_row(language, number)
            gen_rows.append({"prompt": prompt, "completion": answer})
            options = [answer] + [number_words(language, other) for other in
                                  distractors(number, range(numbers), choices - 1, language)]
            # Different numbers can share a spelling in principle; drop exact duplicates.
            options = list(dict.fromkeys(options))
            order = random.Random(f"order-{language}-{number}").sample(options, len(options))
            mc_rows.append({"prompt": prompt, "choices": order, "label": order.index(answer)})
        for benchmark, rows in (("numwords_mc", mc_rows), ("numwords_gen", gen_rows)):
            task = f"{benchmark}_{language}"
            write_jsonl(dest / "data" / f"{task}.jsonl", rows)
            config = _task_config(benchmark, task, final / "data" / f"{task}.jsonl")
            _write_yaml(dest / benchmark / f"{task}.yaml", config)
    (dest / DECLARATION).write_text(json.dumps(list(_DECLARED), indent=1) + "\n",
                                    encoding="utf-8")
    return dest


def _task_config(benchmark: str, task: str, data: Path) -> dict:
    common = {
        "task": task,
        "dataset_path": "json",
        "dataset_name": None,
        "dataset_kwargs": {"data_files": {"test": str(data)}},
        "test_split": "test",
        "doc_to_text": "{{prompt}}",
        # The completion follows the prompt directly, as in training (no space).
        "target_delimiter": "",
        "metadata": {"version": 1.0},
    }
    if benchmark == "numwords_mc":
        return {**common, "output_type": "multiple_choice", "doc_to_choice": "{{choices}}",
                "doc_to_target": "label",
                "metric_list": [{"metric": "acc", "aggregation": "mean",
                                 "higher_is_better": True}]}
    return {**common, "output_type": "generate_until", "doc_to_target": "{{completion}}",
            "generation_kwargs": {"until": ["\n", "|"], "do_sample": False,
                                  "max_gen_toks": 32},
            "metric_list": [{"metric": "exact_match", "aggregation": "mean",
                             "higher_is_better": True}]}


def _write_yaml(path: Path, config: dict) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(yaml.safe_dump(config, allow_unicode=True, sort_keys=False),
                    encoding="utf-8")
