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


def test_written_files_follow_the_umask(tmp_path):
    import os

    old = os.umask(0o027)
    try:
        path = write_json_atomic(tmp_path / "group.json", {"a": 1})
    finally:
        os.umask(old)
    assert path.stat().st_mode & 0o777 == 0o640


def test_corrupt_json_names_the_file_and_line(tmp_path):
    from eval.atomic_io import CorruptFileError, read_jsonl

    (tmp_path / "bad.json").write_text('{"a": 1,')
    with pytest.raises(CorruptFileError, match="bad.json"):
        read_json(tmp_path / "bad.json")
    (tmp_path / "rows.jsonl").write_text('{"a": 1}\n{"a": \n')
    with pytest.raises(CorruptFileError, match=r"rows.jsonl, line 2"):
        read_jsonl(tmp_path / "rows.jsonl")
