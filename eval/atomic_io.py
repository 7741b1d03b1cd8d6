"""Atomic file writes: a reader (or a resumed run) never sees a half-written file.

Each write goes to a temporary file in the same directory and is moved into place with
``os.replace``, which is atomic on POSIX and Windows when both paths share a filesystem.
"""

from __future__ import annotations

import json
import os
import tempfile
from collections.abc import Callable, Iterable
from pathlib import Path
from typing import Any


def write_atomic(path: str | Path, write: Callable[[str], None]) -> Path:
    """Call ``write(tmp_path)`` and move the result to ``path`` only if it succeeded."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    handle, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    os.close(handle)
    try:
        write(tmp)
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    return path


def write_text_atomic(path: str | Path, text: str) -> Path:
    return write_atomic(path, lambda tmp: Path(tmp).write_text(text, encoding="utf-8"))


def write_json_atomic(path: str | Path, payload: Any) -> Path:
    text = json.dumps(payload, indent=2, ensure_ascii=False, default=_fallback) + "\n"
    return write_text_atomic(path, text)


def write_jsonl_atomic(path: str | Path, rows: Iterable[Any]) -> Path:
    text = "".join(json.dumps(row, ensure_ascii=False, default=_fallback) + "\n" for row in rows)
    return write_text_atomic(path, text)


def read_json(path: str | Path) -> Any:
    return json.loads(Path(path).read_text(encoding="utf-8"))


def read_jsonl(path: str | Path) -> list[Any]:
    lines = Path(path).read_text(encoding="utf-8").splitlines()
    return [json.loads(line) for line in lines if line.strip()]


def _fallback(value: Any) -> Any:
    # lm-eval's output holds numpy scalars, sets and callables (in task configs).
    from lm_eval.utils import handle_non_serializable

    return handle_non_serializable(value)
