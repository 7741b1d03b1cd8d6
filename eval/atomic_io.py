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
        # mkstemp creates 0600; the result should be what a plain open() gives, so that
        # group members on a shared cluster can read the results.
        os.chmod(tmp, 0o666 & ~_umask())
        write(tmp)
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    return path


def _umask() -> int:
    # The only portable way to read the umask is to set it; set it straight back.
    mask = os.umask(0)
    os.umask(mask)
    return mask


def write_text_atomic(path: str | Path, text: str) -> Path:
    return write_atomic(path, lambda tmp: Path(tmp).write_text(text, encoding="utf-8"))


def write_json_atomic(path: str | Path, payload: Any) -> Path:
    text = json.dumps(payload, indent=2, ensure_ascii=False, default=_fallback) + "\n"
    return write_text_atomic(path, text)


def write_jsonl_atomic(path: str | Path, rows: Iterable[Any]) -> Path:
    text = "".join(json.dumps(row, ensure_ascii=False, default=_fallback) + "\n" for row in rows)
    return write_text_atomic(path, text)


class CorruptFileError(ValueError):
    """A JSON or JSONL file that does not parse; the message names the file (and line)."""


def read_json(path: str | Path) -> Any:
    try:
        return json.loads(Path(path).read_text(encoding="utf-8"))
    except json.JSONDecodeError as err:
        raise CorruptFileError(f"{path}: not valid JSON ({err})") from err


def read_jsonl(path: str | Path) -> list[Any]:
    rows = []
    for number, line in enumerate(Path(path).read_text(encoding="utf-8").splitlines(), 1):
        if not line.strip():
            continue
        try:
            rows.append(json.loads(line))
        except json.JSONDecodeError as err:
            raise CorruptFileError(f"{path}, line {number}: not valid JSON ({err})") from err
    return rows


def _fallback(value: Any) -> Any:
    # lm-eval's output holds numpy scalars, sets and callables (in task configs).
    from lm_eval.utils import handle_non_serializable

    return handle_non_serializable(value)
