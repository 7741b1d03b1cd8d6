"""The report's verdict lines, on hand-made results: computed from the numbers, ties named."""

from __future__ import annotations

from finetune.experiment.report import _verdict


def results(seen: dict[str, float], unseen: dict[str, float]) -> dict:
    """results.json's shape, as far as the verdict reads it; 'standard' is the baseline."""
    def versus(name: str, split: str, score: float):
        delta = score - {"seen": seen, "unseen": unseen}[split]["standard"]
        return {"delta": delta, "ci_low": delta - 0.1, "ci_high": delta + 0.1, "p_value": 0.5}

    return {"baseline": "standard", "methods": {
        name: {"seen": seen[name], "unseen": unseen[name],
               "vs_baseline": None if name == "standard" else
               {"seen": versus(name, "seen", seen[name]),
                "unseen": versus(name, "unseen", unseen[name])}}
        for name in seen}}


def test_a_tie_at_the_top_names_every_tied_method_and_no_winner():
    lines = _verdict(results(seen={"standard": 0.5, "full": 0.5, "bucket": 0.5},
                             unseen={"standard": 0.2, "full": 0.2, "bucket": 0.1}))
    assert lines[0] == ("- **seen**: highest mean score 0.5000, tied between `standard`, "
                        "`full`, `bucket`: no method is ahead of the baseline")
    assert "tied between `standard`, `full`:" in lines[1] and "bucket" not in lines[1]
    assert not any("(the baseline itself)" in line for line in lines)


def test_a_single_best_method_is_named_with_its_difference_to_the_baseline():
    lines = _verdict(results(seen={"standard": 0.5, "full": 0.6},
                             unseen={"standard": 0.3, "full": 0.2}))
    assert lines[0].startswith("- **seen**: highest mean score: `full` (0.6000); against "
                               "`standard`")
    assert lines[1] == "- **unseen**: highest mean score: `standard` (0.3000) (the baseline itself)"
