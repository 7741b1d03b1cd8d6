"""The miniature's data: which numbers go where, the fine-tuning files, the pretraining text.

The numbers ``0 .. numbers-1`` are shuffled once (seeded) and cut into three disjoint
sets, the same for every language so that the data stay parallel:

- ``eval``: held out from everything; the lm-eval tasks ask about these;
- ``finetune``: the fine-tuning rows (``DIR/data/<lang>/train.jsonl``);
- ``pretrain``: the rest; the base model learns numbers → words from these in *all*
  languages, seen and unseen, together with the CLDR rows of ``corpus.babel_rows``.

So the base model knows the task format and some words in every language; fine-tuning on
the seen languages teaches it more numbers there, and what that does to the unseen
languages is what the experiment measures.

>>> split = split_numbers(numbers=20, eval_size=4, finetune_size=6, seed=0)
>>> len(split.eval), len(split.finetune), len(split.pretrain)
(4, 6, 10)
>>> sorted(split.eval + split.finetune + split.pretrain) == list(range(20))
True
"""

from __future__ import annotations

import json
import random
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from finetune.data.corpus import babel_rows, number_row
from finetune.errors import ConfigError


@dataclass(frozen=True)
class NumberSplit:
    pretrain: tuple[int, ...]
    finetune: tuple[int, ...]
    eval: tuple[int, ...]


def split_numbers(numbers: int, eval_size: int, finetune_size: int, seed: int) -> NumberSplit:
    """Disjoint, sorted number sets; at least one number is left for pretraining."""
    if min(eval_size, finetune_size) < 1 or eval_size + finetune_size >= numbers:
        raise ConfigError(
            f"cannot cut {numbers} numbers into eval_size={eval_size}, "
            f"finetune_size={finetune_size} and a non-empty pretraining set")
    order = list(range(numbers))
    random.Random(f"numbers-{seed}").shuffle(order)
    cut = eval_size + finetune_size
    return NumberSplit(pretrain=tuple(sorted(order[cut:])),
                       finetune=tuple(sorted(order[eval_size:cut])),
                       eval=tuple(sorted(order[:eval_size])))


def write_finetune_data(dest: Path, languages: Sequence[str], split: NumberSplit) -> Path:
    """``dest/<lang>/{train,eval}.jsonl`` of prompt/completion rows; returns ``dest``."""
    for language in languages:
        for name, numbers in (("train", split.finetune), ("eval", split.eval)):
            rows = [dict(zip(("prompt", "completion"), number_row(language, n), strict=True))
                    for n in numbers]
            write_jsonl(dest / language / f"{name}.jsonl", rows)
    return dest


def pretraining_texts(languages: Sequence[str], split: NumberSplit) -> list[str]:
    """Every pretraining document (one row each): numbers and CLDR rows, all languages."""
    texts = []
    for language in languages:
        rows = [number_row(language, n) for n in split.pretrain] + babel_rows(language)
        texts += [prompt + completion for prompt, completion in rows]
    return texts


def write_jsonl(path: Path, rows: Sequence[dict]) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("".join(json.dumps(row, ensure_ascii=False) + "\n" for row in rows),
                    encoding="utf-8")
    return path
