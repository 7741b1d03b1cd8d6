"""Reading and checking rows: JSONL files and ``datasets`` records.

A row is ``{"text": str}`` or ``{"prompt": str, "completion": str}`` (extra keys are
ignored). Every check happens here, before any tokenisation, and a bad row raises a
:class:`~finetune.errors.DataError` that names where it is (file and 1-based line, or
dataset and record index).

>>> check_row({"prompt": "de|7=", "completion": "sieben", "id": 3}, "f.jsonl:1")
{'prompt': 'de|7=', 'completion': 'sieben'}
>>> check_row({"prompt": "de|7="}, "f.jsonl:2")
Traceback (most recent call last):
...
finetune.errors.DataError: f.jsonl:2: a row needs "text" or both "prompt" and "completion" \
(keys found: ['prompt'])
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Mapping
from pathlib import Path

from finetune.errors import DataError


def check_row(record, where: str) -> dict[str, str]:
    """The row's fields, or a DataError naming ``where`` and what is wrong."""
    if not isinstance(record, Mapping):
        raise DataError(f"{where}: a row must be a JSON object, got {type(record).__name__}")
    if "text" in record:
        fields = ("text",)
    elif "prompt" in record and "completion" in record:
        fields = ("prompt", "completion")
    else:
        raise DataError(f'{where}: a row needs "text" or both "prompt" and "completion" '
                        f"(keys found: {sorted(record)})")
    for field in fields:
        if not isinstance(record[field], str):
            raise DataError(f'{where}: "{field}" must be a string, '
                            f"got {type(record[field]).__name__}")
    # An empty prompt is legal (unconditional generation); nothing to learn from empty targets.
    target = fields[-1]
    if not record[target].strip():
        raise DataError(f'{where}: "{target}" is empty')
    return {field: record[field] for field in fields}


def read_jsonl(path: Path) -> list[tuple[dict[str, str], str]]:
    """Checked rows of a JSONL file, each with its location ``path:line``.

    Blank lines are skipped; a file without any row is an error.
    """
    if not path.is_file():
        raise DataError(f"{path}: file not found")
    rows = []
    with path.open(encoding="utf-8") as handle:
        for number, line in enumerate(handle, start=1):
            if not line.strip():
                continue
            where = f"{path}:{number}"
            try:
                record = json.loads(line)
            except json.JSONDecodeError as error:
                raise DataError(f"{where}: not valid JSON ({error.msg})") from None
            rows.append((check_row(record, where), where))
    if not rows:
        raise DataError(f"{path}: the file is empty (no rows)")
    return rows


def check_records(records: Iterable, name: str) -> list[tuple[dict[str, str], str]]:
    """Checked rows of an in-memory dataset; ``name`` says which, for messages."""
    rows = [(check_row(record, f"{name}[{index}]"), f"{name}[{index}]")
            for index, record in enumerate(records)]
    if not rows:
        raise DataError(f"{name}: the dataset is empty (no rows)")
    return rows
