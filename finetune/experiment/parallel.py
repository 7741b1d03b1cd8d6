"""Parallel sentences for the separability measurement in the experiment's languages.

eval's bundled parallel corpus covers en, de, fr, es and zh only; the miniature's
languages (en de ru ar nl uk fa fr) need their own. Number words from ``num2words`` are
parallel by construction: number n written out in every language. They are the words
alone, without the training prompt's ``de|`` tag, which would name the language outright.
A user's experiment can point ``[separability] parallel_file`` at JSONL instead (the
format of ``python -m eval separability --parallel-file``).
"""

from __future__ import annotations

import random
from collections.abc import Sequence
from pathlib import Path

from finetune.errors import ConfigError


def number_sentences(languages: Sequence[str], count: int, seed: int = 0) -> dict[str, list[str]]:
    """``count`` numbers in 1..9999, written out in every language.

    >>> number_sentences(["en", "de"], 2, seed=1)["de"]
    ['zweitausendzweihundertzwei', 'neuntausenddreihundertsechsundzwanzig']
    """
    from num2words import num2words

    numbers = random.Random(seed).sample(range(1, 10_000), count)
    parallel = {}
    for language in languages:
        try:
            parallel[language] = [num2words(n, lang=language) for n in numbers]
        except NotImplementedError:
            raise ConfigError(
                f"num2words has no number words for {language!r}; set [separability] "
                "parallel_file to a JSONL file of parallel sentences") from None
    return parallel


def parallel_sentences(languages: Sequence[str], settings: dict) -> dict[str, list[str]]:
    """The sentences named by a config's [separability] table, for ``languages``."""
    path = settings.get("parallel_file")
    if path is None:
        return number_sentences(languages, int(settings.get("sentences", 32)))
    from eval.separability.corpus import load_parallel_file

    if not Path(path).is_file():
        raise ConfigError(f"[separability] parallel_file {path!r} does not exist")
    parallel = load_parallel_file(path)
    missing = [lang for lang in languages if lang not in parallel]
    if missing:
        raise ConfigError(f"[separability] parallel_file {path} has no sentences in {missing}")
    return {lang: parallel[lang] for lang in languages}
