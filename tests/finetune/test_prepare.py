"""prepare: cached by content, atomic, refuses to overwrite; the base and its eval tasks."""

from __future__ import annotations

import importlib
import json
import os
from dataclasses import replace

import pytest
from transformers import AutoModelForCausalLM, AutoTokenizer

from finetune.cli import main
from finetune.errors import ConfigError, DataError
from finetune.model import Prepared, PrepareSettings, prepare

# The package exports the function ``prepare``, which hides the module of the same name.
prepare_module = importlib.import_module("finetune.model.prepare")

# Seconds to build: enough to check files, caching and atomicity, not to learn anything.
TINY = PrepareSettings(numbers=40, eval_size=6, finetune_size=10, vocab_size=300,
                       hidden_size=16, intermediate_size=32, num_layers=1, num_heads=2,
                       max_length=40, pretrain_steps=2, pretrain_batch_size=4,
                       pretrain_warmup=1)
LANGUAGES = ("en", "de")


@pytest.fixture(scope="module")
def tiny(tmp_path_factory):
    return prepare(tmp_path_factory.mktemp("tiny"), LANGUAGES, 0, TINY, progress=False)


def _snapshot(root):
    return {p: p.stat().st_mtime_ns for p in root.rglob("*")}


def test_a_second_call_with_the_same_inputs_does_nothing(tiny, monkeypatch):
    root = tiny.base.parent
    before = _snapshot(root)
    monkeypatch.setattr(prepare_module, "_build", _must_not_build)
    assert prepare(root, LANGUAGES, 0, TINY, progress=False) == tiny
    assert _snapshot(root) == before


def _must_not_build(*args, **kwargs):
    raise AssertionError("prepare rebuilt a directory it had already prepared")


def test_the_layout_is_the_contract(tiny):
    assert isinstance(tiny, Prepared) and tiny.benchmarks == ("numwords_mc", "numwords_gen")
    assert sorted(p.name for p in tiny.data.iterdir()) == sorted(LANGUAGES)
    row = json.loads((tiny.data / "de" / "train.jsonl").read_text(encoding="utf-8")
                     .splitlines()[0])
    assert set(row) == {"prompt", "completion"} and row["prompt"].startswith("de|")
    manifest = json.loads(tiny.manifest.read_text(encoding="utf-8"))
    assert manifest["inputs"]["settings"] == TINY.as_dict()
    assert manifest["pretraining"]["numbers"] == {"pretrain": 24, "finetune": 10, "eval": 6}
    assert not [p for p in tiny.base.parent.iterdir() if p.name.startswith(".prepare-")]
    tokenizer = AutoTokenizer.from_pretrained(tiny.base)
    assert tokenizer.pad_token == "<pad>" and tokenizer.eos_token == "</s>"
    model = AutoModelForCausalLM.from_pretrained(tiny.base)
    assert type(model).__name__ == "LlamaForCausalLM"
    assert model.config.vocab_size == len(tokenizer)
    assert model.config.pad_token_id == tokenizer.pad_token_id


def test_other_inputs_are_refused_and_nothing_is_lost(tiny):
    root = tiny.base.parent
    before = _snapshot(root)
    with pytest.raises(ConfigError, match=r"other inputs \(seed: 0 -> 1\)"):
        prepare(root, LANGUAGES, 1, TINY, progress=False)
    with pytest.raises(ConfigError, match=r"settings\.pretrain_steps: 2 -> 3"):
        prepare(root, LANGUAGES, 0, replace(TINY, pretrain_steps=3), progress=False)
    assert _snapshot(root) == before


def test_bad_languages_fail_before_any_work(tmp_path):
    with pytest.raises(DataError, match=r"no data for \['tlh'\]"):
        prepare(tmp_path / "out", ["en", "tlh"], settings=TINY, progress=False)
    assert not (tmp_path / "out").exists()


def test_an_output_that_is_a_file_is_named(tmp_path):
    (tmp_path / "out").write_text("mine", encoding="utf-8")
    with pytest.raises(ConfigError, match=r"out is a file, not a directory"):
        prepare(tmp_path / "out", LANGUAGES, 0, TINY, progress=False)
    assert (tmp_path / "out").read_text(encoding="utf-8") == "mine"


def test_folders_that_are_not_ours_are_never_overwritten(tmp_path):
    (tmp_path / "base").mkdir()
    (tmp_path / "base" / "mine.txt").write_text("keep me", encoding="utf-8")
    with pytest.raises(ConfigError, match=r"holds \['base'\] not written by prepare"):
        prepare(tmp_path, LANGUAGES, 0, TINY, progress=False)
    assert (tmp_path / "base" / "mine.txt").read_text(encoding="utf-8") == "keep me"


def test_an_interrupted_prepare_leaves_nothing_half_written(tmp_path, monkeypatch):
    def crash(*args, **kwargs):
        raise KeyboardInterrupt

    monkeypatch.setattr("finetune.model.pretrain.pretrain", crash)
    with pytest.raises(KeyboardInterrupt):
        prepare(tmp_path, LANGUAGES, 0, TINY, progress=False)
    assert list(tmp_path.iterdir()) == []  # no part, no manifest, no staging folder


def test_leftovers_of_a_crash_between_renames_are_rebuilt(tmp_path, monkeypatch):
    real_replace = os.replace

    def die_at_manifest(src, dst):
        if str(dst).endswith("prepare.json"):
            raise OSError("disk full")
        return real_replace(src, dst)

    monkeypatch.setattr(prepare_module.os, "replace", die_at_manifest)
    with pytest.raises(OSError, match="disk full"):
        prepare(tmp_path, LANGUAGES, 0, TINY, progress=False)
    assert (tmp_path / "base").is_dir() and not (tmp_path / "prepare.json").exists()
    assert (tmp_path / ".prepare-pending").exists()
    monkeypatch.setattr(prepare_module.os, "replace", real_replace)
    prepared = prepare(tmp_path, LANGUAGES, 0, TINY, progress=False)
    assert prepared.manifest.is_file() and (prepared.base / "config.json").is_file()
    assert sorted(p.name for p in tmp_path.iterdir()) == ["base", "data", "prepare.json",
                                                          "tasks"]


def test_the_command_line_as_written(tmp_path, monkeypatch, capsys):
    # The command's own settings are the defaults; TINY stands in for them here.
    monkeypatch.setattr(prepare_module, "PrepareSettings", lambda: TINY)
    out = tmp_path / "cli"
    assert main(["prepare", "--out", str(out), "--languages", "en", "de", "--seed", "0",
                 "--quiet"]) == 0
    assert f"base:   {out / 'base'}" in capsys.readouterr().out
    assert main(["prepare", "--out", str(out), "--languages", "en", "xx"]) == 2
    assert "error: the embedded corpus has no data for ['xx']" in capsys.readouterr().err


def test_settings_are_checked_by_name_and_value():
    assert PrepareSettings.from_mapping({"hidden_size": 48}).hidden_size == 48
    with pytest.raises(ConfigError, match="unknown prepare setting"):
        PrepareSettings.from_mapping({"hidden": 48})
    assert PrepareSettings(pretrain_warmup=0).pretrain_warmup == 0
    with pytest.raises(ConfigError, match=r"out of range.*\['hidden_size', 'pretrain_warmup'\]"):
        PrepareSettings(hidden_size=0, pretrain_warmup=-1)
    with pytest.raises(ConfigError, match="not a multiple of num_heads"):
        PrepareSettings(hidden_size=30, num_heads=4)
    with pytest.raises(ConfigError, match="must leave numbers for pretraining"):
        PrepareSettings(numbers=100, eval_size=50, finetune_size=50)


def test_the_default_base_model_has_about_0_3_m_parameters_in_39_tensors():
    """finetune/model/tiny_llama.py and the README: 4 layers, hidden 64, about 0.3 M
    parameters in 39 tensors; miniature.toml's zero:50000 cuts them into several buckets
    that span tensors and layers."""
    import re

    from finetune.model.tiny_llama import build_model
    from refmoo.partitions import zero_buckets

    class Tokenizer:  # what build_model reads of a tokenizer
        bos_token_id, eos_token_id, pad_token_id = 1, 2, 0

        def __len__(self):
            return settings.vocab_size

    settings = PrepareSettings()
    assert (settings.num_layers, settings.hidden_size, settings.vocab_size) == (4, 64, 768)
    model = build_model(settings, Tokenizer(), seed=0)
    params = list(model.parameters())
    assert len(params) == 39 == 9 * settings.num_layers + 3
    total = sum(p.numel() for p in params)
    assert 0.25e6 <= total <= 0.35e6, total
    partition = zero_buckets(model, 50_000)
    assert len(partition) > 2, partition.names
    # Bucket names give their first and last tensor, e.g.
    # 'zero2(model.layers.3.self_attn.q_proj.weight..model.layers.2.self_attn.v_proj.weight)'.
    layers = [set(re.findall(r"layers\.(\d+)\.", name)) for name in partition.names]
    assert any(len(spanned) > 1 for spanned in layers), partition.names
