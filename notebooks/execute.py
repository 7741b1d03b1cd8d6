"""Execute the notebooks in place, with their outputs, and record what the outputs came from.

    python notebooks/execute.py                      # every notebooks/*.ipynb (make notebooks)
    python notebooks/execute.py notebooks/01_stationarity.ipynb

Each notebook runs top to bottom in a fresh ``python3`` kernel whose working directory is
a temporary folder (the notebooks write only to temporary folders), and is written back
with its outputs. Its metadata then holds ``refmoo.source_sha256``: the SHA-256 of the
kernel name and of every cell's type and source (:func:`source_hash`).
``tests/test_notebooks.py`` recomputes that hash from the committed notebook, so a cell
edited after its outputs were made fails the suite until the notebook is executed again.
A notebook whose execution fails is left untouched.
"""

from __future__ import annotations

import hashlib
import json
import sys
import tempfile
import time
from pathlib import Path

import nbformat
from nbclient import NotebookClient

HERE = Path(__file__).resolve().parent
KERNEL = "python3"
KERNELSPEC = {"name": KERNEL, "display_name": "Python 3", "language": "python"}
METADATA = "refmoo"  # nb.metadata[METADATA] = {"source_sha256": ...}


def source_hash(nb: nbformat.NotebookNode) -> str:
    """SHA-256 of the kernel name and every cell's (type, source), in order."""
    payload = {"kernel": nb.metadata.get("kernelspec", {}).get("name"),
               "cells": [[cell.cell_type, cell.source] for cell in nb.cells]}
    text = json.dumps(payload, sort_keys=True, ensure_ascii=False, separators=(",", ":"))
    return hashlib.sha256(text.encode("utf-8")).hexdigest()


def run(nb: nbformat.NotebookNode, *, timeout: int = 600) -> nbformat.NotebookNode:
    """Execute ``nb`` (in place) in a fresh kernel, working directory a temporary folder.

    Raises nbclient's CellExecutionError on the first failing cell.
    """
    with tempfile.TemporaryDirectory(prefix="refmoo-notebook-") as cwd:
        NotebookClient(nb, timeout=timeout, kernel_name=KERNEL, record_timing=False,
                       resources={"metadata": {"path": cwd}}).execute()
    return nb


def execute(path: Path, *, timeout: int = 600) -> float:
    """Execute the notebook at ``path`` and write it back with outputs and its source hash.

    Returns the seconds the execution took.
    """
    nb = nbformat.read(path, as_version=4)
    nb.metadata["kernelspec"] = dict(KERNELSPEC)
    started = time.perf_counter()
    run(nb, timeout=timeout)
    seconds = time.perf_counter() - started
    nb.metadata[METADATA] = {"source_sha256": source_hash(nb)}
    nbformat.validate(nb)
    nbformat.write(nb, path)
    return seconds


def main(argv: list[str]) -> int:
    paths = [Path(a) for a in argv] or sorted(HERE.glob("*.ipynb"))
    if not paths:
        print(f"no notebooks in {HERE}", file=sys.stderr)
        return 1
    for path in paths:
        print(f"executing {path} ...", flush=True)
        seconds = execute(path)
        print(f"  {seconds:.1f} s, {path.stat().st_size / 1024:.0f} KiB", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
