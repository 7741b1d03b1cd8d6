"""No network, no waiting: the first hub failure stops the run; prefetch fills the cache."""

from __future__ import annotations

import lm_eval
import pytest

from eval.cli import main
from eval.languages.registry import build_registry, load_task_manager
from eval.languages.selection import plan_run
from eval.running.checkpoints import load_checkpoint
from eval.running.hub import HubUnreachable, is_hub_failure
from eval.running.runner import EvalSettings, run_evaluation


def test_hub_failures_are_told_apart_from_other_errors():
    from huggingface_hub.errors import OfflineModeIsEnabled

    assert is_hub_failure(ConnectionError("Couldn't reach 'x' on the Hub (LocalEntryNotFound)"))
    assert is_hub_failure(OfflineModeIsEnabled("offline"))
    try:
        try:
            raise TimeoutError("read timed out")
        except TimeoutError as inner:
            raise RuntimeError("dataset build failed") from inner
    except RuntimeError as outer:
        assert is_hub_failure(outer)
    assert not is_hub_failure(ValueError("no column named 'premise'"))
    assert not is_hub_failure(KeyError("acc"))


def test_the_first_hub_failure_stops_the_run_with_what_to_do(
    tmp_path, base_checkpoint, local_suite, monkeypatch
):
    manager = load_task_manager([local_suite], include_defaults=False)
    registry = build_registry(manager)
    plan = plan_run(registry, ["en"], ["fr", "de"], ["local_xnli"])
    calls = []

    def unreachable(**kwargs):
        calls.append(kwargs["tasks"])
        raise ConnectionError("Couldn't reach 'facebook/xnli' on the Hub (ConnectionError)")

    monkeypatch.setattr(lm_eval, "simple_evaluate", unreachable)
    with pytest.raises(HubUnreachable) as caught:
        run_evaluation(load_checkpoint(base_checkpoint), plan, manager, tmp_path,
                       EvalSettings(limit=2), registry.metric_preferences, show_progress=False)
    assert len(calls) == 1  # the other units did not spend their own retries
    message = str(caught.value)
    assert "--offline" in message
    assert "python -m eval prefetch --benchmark local_xnli --languages de en fr" in message
    assert (tmp_path / "failures").is_dir() and (tmp_path / "summary.json").is_file()


def test_prefetch_builds_every_task_of_the_plan_offline(capsys, local_suite):
    code = main(["prefetch", "--include-path", str(local_suite), "--no-defaults",
                 "--benchmark", "local_xnli", "local_wordorder", "--languages", "en", "de"])
    out = capsys.readouterr().out
    assert code == 0
    assert "local_xnli/de: json" in out and "local_wordorder/en: json" in out
    assert "4 of 4 units cached" in out


def test_prefetch_rest_means_every_covered_language(capsys, local_suite):
    code = main(["prefetch", "--include-path", str(local_suite), "--no-defaults",
                 "--benchmark", "local_wordorder", "--languages", "rest"])
    assert code == 0
    assert "5 of 5 units cached" in capsys.readouterr().out
