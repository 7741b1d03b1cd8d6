"""proofs/TESTKIT.md: its code blocks run; the first passes, the second is caught."""

import re
from pathlib import Path

import pytest

TESTKIT = Path(__file__).resolve().parents[2] / "proofs" / "TESTKIT.md"


def _blocks():
    return re.findall(r"^```python\n(.*?)^```$", TESTKIT.read_text(), flags=re.S | re.M)


def _tests(namespace):
    return {name: fn for name, fn in namespace.items()
            if name.startswith("test_") and callable(fn)}


def test_testkit_has_the_two_documented_blocks():
    assert len(_blocks()) == 2


def test_testkit_example_passes():
    namespace = {"__name__": "testkit_example"}
    exec(compile(_blocks()[0], str(TESTKIT), "exec"), namespace)
    tests = _tests(namespace)
    assert len(tests) == 4
    for test in tests.values():
        test()


def test_testkit_catches_the_documented_bug():
    namespace = {"__name__": "testkit_example"}
    exec(compile(_blocks()[0], str(TESTKIT), "exec"), namespace)
    before = set(_tests(namespace))
    exec(compile(_blocks()[1], str(TESTKIT), "exec"), namespace)
    buggy = {name: fn for name, fn in _tests(namespace).items() if name not in before}
    assert list(buggy) == ["test_buggy_sharded_run_matches_the_reference"]
    with pytest.raises(AssertionError, match="differs from bucketwise"):
        buggy["test_buggy_sharded_run_matches_the_reference"]()
