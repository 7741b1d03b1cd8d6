"""A unit counts as done only when what it wrote can be read back."""

from eval.languages.registry import LanguageUnit
from eval.running.store import RunStore


def test_a_truncated_raw_file_is_run_again(tmp_path):
    store = RunStore(tmp_path)
    unit = LanguageUnit("xnli", "de", "xnli_de", "de")
    assert not store.is_done(unit)
    store.save_unit(unit, {"results": {"xnli_de": {"acc,none": 0.5}}, "samples": {}})
    assert store.is_done(unit)
    raw = store.raw_path(unit)
    raw.write_text(raw.read_text()[:10])  # what a crash outside the atomic write leaves
    assert not store.is_done(unit)
    store.save_unit(unit, {"results": {"xnli_de": {"acc,none": 0.5}}, "samples": {}})
    assert store.is_done(unit)
