"""The notebooks are committed with their outputs, and those outputs are what the cells make now.

``make notebooks`` (``notebooks/execute.py``) executes every notebook in place and stores
in its metadata a hash of the kernel name and of every cell's source. Here:

- the committed notebook carries that hash, equal to the hash of its cells as they are
  now (a cell edited without re-executing fails), its code cells ran in one top-to-bottom
  pass, and none of its outputs is an error;
- it is under 1 MB, so that a code host shows it;
- it executes again without an error, and every code cell shows the same kinds of output
  (stdout, figures, tables) as in the committed copy.
"""

import importlib.util
from pathlib import Path

import nbformat
import pytest

ROOT = Path(__file__).resolve().parent.parent
NOTEBOOK_DIR = ROOT / "notebooks"
NOTEBOOKS = sorted(NOTEBOOK_DIR.glob("*.ipynb"))
EXPECTED = ["01_stationarity.ipynb", "02_conflict_in_a_real_model.ipynb",
            "03_distributed.ipynb", "04_experiment.ipynb"]
MAX_BYTES = 1_000_000
REGENERATE = "run `make notebooks` (python notebooks/execute.py) and commit the result"


def _load_executor():
    spec = importlib.util.spec_from_file_location("notebooks_execute", NOTEBOOK_DIR / "execute.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


executor = _load_executor()


def _code_cells(nb):
    return [cell for cell in nb.cells if cell.cell_type == "code"]


def _errors(nb) -> list:
    return [o for cell in _code_cells(nb) for o in cell.get("outputs", [])
            if o.get("output_type") == "error"]


def _kinds(cell) -> set[str]:
    """What a code cell shows: stdout, and the MIME types of its displays and results.

    stderr is left out: warnings differ between machines and library versions.
    """
    kinds = set()
    for output in cell.get("outputs", []):
        if output.get("output_type") == "stream":
            if output.get("name") == "stdout":
                kinds.add("stdout")
        else:
            kinds.update(output.get("data", {}))
    return kinds


def test_the_four_notebooks_are_there():
    assert [p.name for p in NOTEBOOKS] == EXPECTED


def test_the_readme_links_every_notebook():
    readme = (ROOT / "README.md").read_text(encoding="utf-8")
    missing = [name for name in EXPECTED if f"(notebooks/{name})" not in readme]
    assert not missing, f"README.md does not link {missing}"


def test_source_hash_sees_every_cell_and_the_kernel():
    nb = nbformat.v4.new_notebook(cells=[nbformat.v4.new_code_cell("x = 1"),
                                         nbformat.v4.new_markdown_cell("# x")])
    nb.metadata["kernelspec"] = dict(executor.KERNELSPEC)
    before = executor.source_hash(nb)
    nb.cells[0].outputs = [nbformat.v4.new_output("stream", name="stdout", text="1\n")]
    nb.cells[0].execution_count = 1
    assert executor.source_hash(nb) == before  # outputs are not sources
    nb.cells[1].source = "# y"
    assert executor.source_hash(nb) != before
    nb.cells[1].source = "# x"
    nb.cells[1].cell_type = "raw"
    assert executor.source_hash(nb) != before
    nb.cells[1].cell_type = "markdown"
    nb.metadata["kernelspec"]["name"] = "other"
    assert executor.source_hash(nb) != before


@pytest.mark.parametrize("path", NOTEBOOKS, ids=lambda p: p.name)
def test_committed_outputs_come_from_the_current_cells(path):
    nb = nbformat.read(path, as_version=4)
    stored = nb.metadata.get(executor.METADATA, {}).get("source_sha256")
    assert stored is not None, \
        f"{path.name} was never executed by notebooks/execute.py: {REGENERATE}"
    assert stored == executor.source_hash(nb), \
        f"{path.name}: cells changed since its outputs were made: {REGENERATE}"
    counts = [cell.execution_count for cell in _code_cells(nb)]
    assert counts == list(range(1, len(counts) + 1)), \
        f"{path.name}: code cells not executed in one top-to-bottom run ({counts}): {REGENERATE}"
    assert not _errors(nb), f"{path.name} has error outputs"
    assert any("image/png" in _kinds(cell) for cell in _code_cells(nb)), \
        f"{path.name} shows no figure"


@pytest.mark.parametrize("path", NOTEBOOKS, ids=lambda p: p.name)
def test_notebook_is_under_1_mb(path):
    size = path.stat().st_size
    assert size < MAX_BYTES, f"{path.name} is {size:,} bytes: lower the figures' DPI or size"


@pytest.mark.slow
@pytest.mark.parametrize("path", NOTEBOOKS, ids=lambda p: p.name)
def test_notebook_runs_and_shows_what_is_committed(path):
    committed = nbformat.read(path, as_version=4)
    fresh = executor.run(nbformat.read(path, as_version=4))  # raises on a failing cell
    assert not _errors(fresh)
    changed = [(i, sorted(_kinds(old)), sorted(_kinds(new)))
               for i, (old, new) in enumerate(zip(committed.cells, fresh.cells, strict=True))
               if old.cell_type == "code" and _kinds(old) != _kinds(new)]
    assert not changed, f"{path.name}: cells (index, committed, now) show other outputs " \
                        f"than committed: {changed}; {REGENERATE}"
