"""``load_languages``: per-language tokenised examples from a directory or a dataset spec.

Two sources are accepted.

**A directory** with one folder per language, each holding ``train.jsonl`` and
``eval.jsonl`` (rows as in ``rows.py``)::

    DATA/en/train.jsonl  DATA/en/eval.jsonl  DATA/de/train.jsonl ...

**A spec file** (``*.json``) mapping each language to the keyword arguments of
``datasets.load_dataset``, plus an optional ``"splits"`` entry that maps this package's
split names (``train``, ``eval``) to the dataset's own (default: the same name)::

    {"en": {"path": "json", "data_files": {"train": "en/train.jsonl",
                                           "eval": "en/eval.jsonl"}},
     "de": {"path": "my-org/my-data", "name": "de",
            "splits": {"train": "train", "eval": "validation"}}}

Relative ``data_files`` are resolved against the spec file's folder. Hub datasets need
network access; local loaders (``json``, ``csv``, ``parquet``) work offline.

Everything is read and checked before anything is tokenised, so a bad row in the last
language fails in milliseconds.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from pathlib import Path

from finetune.data.examples import RowTooLong, TemplateMismatch, TokenizedExample, tokenize_row
from finetune.data.rows import check_records, read_jsonl
from finetune.errors import DataError

SPLITS = ("train", "eval")


def load_languages(source: str | Path, languages: Sequence[str], tokenizer, *,
                   split: str = "train", max_length: int = 128,
                   chat_template: bool = False) -> dict[str, list[TokenizedExample]]:
    """Tokenised examples of ``split`` for each language, in the order of ``languages``."""
    if split not in SPLITS:
        raise DataError(f"unknown split {split!r}; choose one of {list(SPLITS)}")
    if not languages:
        raise DataError("no languages given")
    if max_length < 2:
        raise DataError(f"max_length must be at least 2, got {max_length}")
    if chat_template and not getattr(tokenizer, "chat_template", None):
        raise DataError("--chat-template was asked for, but the tokenizer has no chat template")
    source = Path(source)
    if source.is_dir():
        rows = {lang: read_jsonl(_language_dir(source, lang) / f"{split}.jsonl")
                for lang in languages}
    elif source.is_file():
        specs = read_spec(source, languages)
        rows = {lang: _load_dataset_rows(specs[lang], lang, split) for lang in languages}
    else:
        raise DataError(f"data not found: {source} is neither a directory nor a spec file")
    if chat_template and all("text" in row for lang in languages for row, _ in rows[lang]):
        # The template renders prompt/completion turns only; text rows pass through
        # untouched, so on data of text rows alone the flag would silently do nothing.
        raise DataError("--chat-template has no effect on this data: every row is a "
                        "{\"text\"} row, and the template renders prompt/completion rows only")
    return {lang: [_tokenize(row, where, tokenizer, max_length, chat_template)
                   for row, where in rows[lang]]
            for lang in languages}


def _language_dir(source: Path, language: str) -> Path:
    folder = source / language
    if not folder.is_dir():
        present = sorted(p.name for p in source.iterdir() if p.is_dir())
        raise DataError(f"no data for language {language!r}: {folder} does not exist "
                        f"(languages in {source}: {present})")
    return folder


def read_spec(path: Path, languages: Sequence[str]) -> dict[str, dict]:
    """The spec file's entries for ``languages``, with data files made absolute."""
    try:
        spec = json.loads(path.read_text(encoding="utf-8"))
    except (json.JSONDecodeError, UnicodeDecodeError) as error:
        raise DataError(f"{path}: a data spec must be a JSON object ({error})") from None
    if not isinstance(spec, dict):
        raise DataError(f"{path}: a data spec must be a JSON object of language -> spec")
    missing = [lang for lang in languages if lang not in spec]
    if missing:
        raise DataError(f"{path}: no data for language(s) {missing} "
                        f"(languages in the spec: {sorted(spec)})")
    entries = {}
    for lang in languages:
        entry = spec[lang]
        if not isinstance(entry, dict) or not isinstance(entry.get("path"), str):
            raise DataError(f'{path}: the entry for {lang!r} needs a "path" '
                            '(a datasets loader such as "json", or a dataset id)')
        entries[lang] = {**entry, "data_files": _absolute(entry.get("data_files"), path.parent)}
        if entries[lang]["data_files"] is None:
            del entries[lang]["data_files"]
    return entries


def _absolute(files, base: Path):
    if files is None:
        return None
    if isinstance(files, str):
        return str(base / files)
    if isinstance(files, list):
        return [str(base / f) for f in files]
    return {split: _absolute(value, base) for split, value in files.items()}


def _load_dataset_rows(entry: dict, language: str, split: str):
    import datasets

    kwargs = {key: value for key, value in entry.items() if key != "splits"}
    dataset_split = entry.get("splits", {}).get(split, split)
    name = f"{language}:{entry['path']}[{dataset_split}]"
    try:
        dataset = datasets.load_dataset(**kwargs, split=dataset_split)
    except Exception as error:  # datasets raises many types; all mean "cannot load this"
        raise DataError(f"cannot load the {split} data of {language!r} "
                        f"({entry['path']}, split {dataset_split!r}): {error}") from error
    return check_records(dataset, name)


def _tokenize(row, where: str, tokenizer, max_length: int, chat_template: bool):
    try:
        return tokenize_row(row, tokenizer, max_length=max_length, chat_template=chat_template)
    except (RowTooLong, TemplateMismatch) as error:
        raise DataError(f"{where}: {error}") from None
