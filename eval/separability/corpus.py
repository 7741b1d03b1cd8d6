"""Parallel corpora from local files, for a separability analysis beyond the bundled one.

Each loader returns ``{language: [sentence, ...]}`` with sentence i the same content in
every language, languages in canonical form (``eval.languages.codes``).
"""

from __future__ import annotations

import json
from pathlib import Path

from eval.languages.codes import canonical_language


def load_parallel_file(path: str | Path) -> dict[str, list[str]]:
    """JSONL, one object per sentence mapping language code to its translation."""
    parallel: dict[str, list[str]] = {}
    rows = [
        json.loads(line)
        for line in Path(path).read_text(encoding="utf-8").splitlines()
        if line.strip()
    ]
    for number, row in enumerate(rows, start=1):
        if set(row) != set(rows[0]):
            raise ValueError(
                f"{path}:{number} has languages {sorted(row)}, "
                f"line 1 has {sorted(rows[0])}; every line needs the same ones"
            )
        for code, text in row.items():
            parallel.setdefault(canonical_language(code), []).append(text)
    return parallel


def load_parallel_dir(path: str | Path) -> dict[str, list[str]]:
    """A larger parallel corpus from local files, one per language, named by its code:

    * FLORES-style: ``eng_Latn.devtest`` (or ``.dev``, ``.txt``), one sentence per line,
      line i the same sentence in every file;
    * Belebele-style: ``eng_Latn.jsonl`` rows with ``link`` and ``flores_passage``; the
      passages (FLORES paragraphs, repeated once per question) are deduplicated by link
      and kept for the links every language has, in link order.
    """
    root = Path(path)
    files = sorted(f for f in root.iterdir() if f.is_file() and not f.name.startswith("."))
    if not files:
        raise FileNotFoundError(f"no parallel files in {root}")
    by_language: dict[str, list[str] | dict[str, str]] = {}
    for file in files:
        code = canonical_language(file.name.split(".")[0])
        if file.suffix == ".jsonl":
            rows = [json.loads(line) for line in file.read_text(encoding="utf-8").splitlines()
                    if line.strip()]
            by_language[code] = {row["link"]: row["flores_passage"] for row in rows}
        else:
            by_language[code] = [line.strip() for line in
                                 file.read_text(encoding="utf-8").splitlines() if line.strip()]
    if all(isinstance(v, dict) for v in by_language.values()):
        common = sorted(set.intersection(*(set(v) for v in by_language.values())))
        return {code: [passages[link] for link in common]
                for code, passages in by_language.items()}
    lengths = {code: len(v) for code, v in by_language.items()}
    if any(isinstance(v, dict) for v in by_language.values()) or len(set(lengths.values())) != 1:
        raise ValueError(f"{root}: the files are not aligned line by line ({lengths})")
    return {code: list(v) for code, v in by_language.items()}
