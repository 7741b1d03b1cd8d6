"""Model and prompt options, scale, messages and plots of issue 11 §6, on the tiny local
checkpoints (no hub, no GPU)."""

from __future__ import annotations

import json
import shutil

import numpy as np
import pytest
import torch

import eval.api
from eval.api import evaluate_checkpoint
from eval.cli import _batch_size
from eval.languages.selection import plan_run
from eval.reporting.plots import _gap_after, text_colour
from eval.running.checkpoints import CheckpointError, load_checkpoint
from eval.running.runner import EvalSettings, run_evaluation
from eval.running.store import RunSettingsMismatch
from eval.separability.corpus import load_parallel_dir
from eval.separability.measures import compare_layers, layer_separability
from eval.suggestions import UnknownNameError


def _common(tmp_path, local_suite, **settings):
    return dict(seen=["en"], unseen=["fr"], benchmarks=["local_wordorder"], out_dir=tmp_path,
                settings=EvalSettings(limit=2, batch_size=2, **settings),
                include_paths=[local_suite], include_defaults=False, show_progress=False)


def test_score_changing_options_join_the_resume_fingerprint(
    tmp_path, base_checkpoint, local_suite, monkeypatch
):
    evaluate_checkpoint(base_checkpoint, **_common(tmp_path, local_suite,
                                                   system_instruction="Answer well."))
    manifest = json.loads((tmp_path / "manifest.json").read_text())
    assert manifest["system_instruction"] == "Answer well." and manifest["peft"] is None
    assert manifest["revision"] is None and manifest["max_length"] is None

    def no_loading(*args, **kwargs):
        raise AssertionError("the weights were loaded before the settings were checked")

    monkeypatch.setattr(eval.api, "load_checkpoint", no_loading)
    for changed, key in (({"system_instruction": "Be brief."}, "system_instruction"),
                         ({"system_instruction": "Answer well.", "max_length": 64},
                          "max_length"),
                         ({"system_instruction": "Answer well.", "gen_kwargs": "temperature=0"},
                          "gen_kwargs")):
        with pytest.raises(RunSettingsMismatch, match=key):
            evaluate_checkpoint(base_checkpoint, **_common(tmp_path, local_suite, **changed))
    same = _common(tmp_path, local_suite, system_instruction="Answer well.")
    with pytest.raises(RunSettingsMismatch, match="revision"):
        evaluate_checkpoint(base_checkpoint, revision="v2", **same)
    adapter = tmp_path.parent / f"{tmp_path.name}-adapter"
    adapter.mkdir()
    with pytest.raises(RunSettingsMismatch, match="peft"):
        evaluate_checkpoint(base_checkpoint, peft=adapter, **same)


def test_compare_checks_the_new_score_changing_settings():
    from eval.comparing.compare import COMPARED_SETTINGS
    from eval.running.store import FINGERPRINT_KEYS

    for key in ("system_instruction", "gen_kwargs", "max_length"):
        assert key in COMPARED_SETTINGS and key in FINGERPRINT_KEYS
    assert {"revision", "peft"} <= set(FINGERPRINT_KEYS)


def test_a_peft_adapter_is_applied_on_top(tmp_path, base_checkpoint):
    from peft import LoraConfig, get_peft_model

    base = load_checkpoint(base_checkpoint)
    # Random A and B (not the usual B = 0), so that the adapter changes the outputs.
    config = LoraConfig(r=4, target_modules=["q_proj", "v_proj"], init_lora_weights=False)
    get_peft_model(load_checkpoint(base_checkpoint).model, config).save_pretrained(tmp_path)
    adapted = load_checkpoint(base_checkpoint, peft=tmp_path)
    ids = torch.tensor([[1, 5, 9, 12]])
    with torch.no_grad():
        assert not torch.allclose(base.model(ids).logits, adapted.model(ids).logits)
    with pytest.raises(CheckpointError, match="not a PEFT adapter"):
        load_checkpoint(base_checkpoint, peft=tmp_path / "missing")


def test_a_model_directory_without_tokenizer_points_to_tokenizer_option(tmp_path, base_checkpoint):
    for item in base_checkpoint.iterdir():
        if not item.name.startswith(("tokenizer", "special_tokens")):
            shutil.copy(item, tmp_path / item.name)
    with pytest.raises(CheckpointError, match="--tokenizer"):
        load_checkpoint(tmp_path)
    assert load_checkpoint(tmp_path, tokenizer=str(base_checkpoint)).tokenizer is not None


def test_built_in_benchmark_under_no_defaults_says_they_were_skipped(local_registry):
    with pytest.raises(UnknownNameError, match="built-in tasks were skipped"):
        local_registry.check_benchmarks(["xnli"])
    with pytest.raises(UnknownNameError) as caught:
        local_registry.check_benchmarks(["local_xnl"])
    assert "skipped" not in str(caught.value)


def test_batch_size_is_auto_on_gpus_and_one_on_cpu():
    assert _batch_size(None, "cpu") == 1 and _batch_size(None, "mps") == 1
    assert _batch_size(None, "cuda:0") == "auto" and _batch_size(None, "auto") == "auto"
    assert _batch_size("8", "cuda") == 8 and _batch_size("auto:4", "cpu") == "auto:4"
    with pytest.raises(ValueError, match="--batch-size"):
        _batch_size("big", "cpu")


def test_data_parallel_processes_share_the_units_of_one_run(
    tmp_path, base_checkpoint, local_registry, local_task_manager, monkeypatch, capsys
):
    plan = plan_run(local_registry, ["en", "de"], ["fr", "es"], ["local_wordorder"])
    checkpoint = load_checkpoint(base_checkpoint)
    settings = EvalSettings(limit=2, batch_size=2)
    done = []
    for rank in (0, 1):  # the two processes of `accelerate launch --num_processes 2`
        monkeypatch.setenv("WORLD_SIZE", "2")
        monkeypatch.setenv("RANK", str(rank))
        summary = run_evaluation(checkpoint, plan, local_task_manager, tmp_path, settings,
                                 local_registry.metric_preferences, show_progress=False)
        done.append({u["unit"] for u in summary["units"]})
    assert done[0] == {"local_wordorder/en", "local_wordorder/fr"}  # every 2nd unit
    assert done[1] == {u.unit_id for u in plan.units}  # the last summary has all
    assert json.loads((tmp_path / "summary.json").read_text())["pending"] == []


def test_parallel_corpus_from_flores_and_belebele_style_files(tmp_path):
    flores = tmp_path / "flores"
    flores.mkdir()
    (flores / "eng_Latn.devtest").write_text("One.\nTwo.\n")
    (flores / "deu_Latn.devtest").write_text("Eins.\nZwei.\n")
    assert load_parallel_dir(flores) == {"en": ["One.", "Two."], "de": ["Eins.", "Zwei."]}
    belebele = tmp_path / "belebele"
    belebele.mkdir()
    rows = {"eng_Latn": [("b", "Passage B"), ("a", "Passage A"), ("a", "Passage A")],
            "fra_Latn": [("a", "Passage A fr"), ("b", "Passage B fr"), ("c", "only fr")]}
    for code, items in rows.items():
        (belebele / f"{code}.jsonl").write_text("".join(
            json.dumps({"link": link, "flores_passage": text}) + "\n" for link, text in items))
    assert load_parallel_dir(belebele) == {"en": ["Passage A", "Passage B"],
                                           "fr": ["Passage A fr", "Passage B fr"]}
    (flores / "fra_Latn.devtest").write_text("Un.\n")
    with pytest.raises(ValueError, match="not aligned"):
        load_parallel_dir(flores)


def _layers(separation: float, seed: int) -> tuple[dict, np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    content = rng.normal(size=(40, 8))
    features = np.vstack([content + separation * i + rng.normal(size=(40, 8))
                          for i in range(3)])
    labels = np.repeat(["a", "b", "c"], 40)
    groups = np.tile(np.arange(40), 3)
    row = layer_separability(features, labels, groups, bootstrap_iterations=500)
    return {"layers": [{"layer": 0, **row}]}, labels, groups


def test_between_checkpoint_test_tells_a_real_difference_from_none():
    separated, *_ = _layers(3.0, seed=1)
    mixed, *_ = _layers(0.0, seed=1)
    (row,) = compare_layers(mixed, separated, iterations=2000)
    assert row["probe_accuracy"]["delta"] > 0.3 and row["probe_accuracy"]["p_value"] <= 0.01
    (same,) = compare_layers(mixed, mixed, iterations=2000)
    # Exact by construction: one checkpoint against itself gives x − x = 0 in every
    # resample, and every resample then ties the observed difference (p = 1).
    assert same["silhouette"]["delta"] == 0 and same["silhouette"]["p_value"] == 1.0
    low, high = separated["layers"][0]["probe_accuracy_ci"]
    assert low <= separated["layers"][0]["probe_accuracy"] <= high


def test_plot_details():
    # Two runs: bars 0.4 wide at x and x + 0.4; the last seen group ends at 0.6, the next
    # group starts at 0.8: the divider sits at 0.7, in the gap.
    assert _gap_after(0, 0.4) == pytest.approx(0.7)
    assert text_colour(-0.9, 1.0) == "white" and text_colour(0.1, 1.0) == "black"
