import pytest

from eval.atomic_io import read_json, write_atomic, write_json_atomic


def test_failed_write_keeps_the_previous_file_and_leaves_no_temporary(tmp_path):
    target = tmp_path / "summary.json"
    write_json_atomic(target, {"version": 1})

    def crash(tmp):
        with open(tmp, "w") as handle:
            handle.write('{"version": 2, "trunc')
        raise RuntimeError("disk full")

    with pytest.raises(RuntimeError):
        write_atomic(target, crash)
    assert read_json(target) == {"version": 1}
    assert sorted(p.name for p in tmp_path.iterdir()) == ["summary.json"]


def test_numpy_values_are_written_as_plain_json(tmp_path):
    import numpy as np

    write_json_atomic(tmp_path / "x.json", {"a": np.float64(0.5), "b": np.int64(3)})
    assert read_json(tmp_path / "x.json") == {"a": 0.5, "b": 3}
