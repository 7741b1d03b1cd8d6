"""Experiment configs: the shipped ones load, and every bad one fails before any work."""

from __future__ import annotations

import pytest

from finetune.cli import main
from finetune.errors import ConfigError
from finetune.experiment.config import load_config

GOOD = """
seeds = [0, 1]
[languages]
seen = ["en", "de"]
unseen = ["nl"]
[train]
steps = 3
[methods.standard]
method = "standard"
[methods.bucket]
method = "bucket"
partition = "zero:1000"
"""


def write(tmp_path, text: str):
    path = tmp_path / "exp.toml"
    path.write_text(text, encoding="utf-8")
    return path


@pytest.mark.parametrize("name", ["miniature", "quick"])
def test_shipped_configs_load_and_compare_against_standard(name):
    config = load_config(name)
    assert config.baseline == "standard"
    assert config.method("standard").method == "standard"
    assert {m.method for m in config.methods} == {"standard", "full", "bucket"}
    assert set(config.seen).isdisjoint(config.unseen)


def test_miniature_has_the_issue_s_methods_and_three_seeds():
    config = load_config("miniature")
    assert len(config.seeds) == 3
    partitions = {m.partition for m in config.methods if m.method == "bucket"}
    assert "tensor" in partitions and any(p.startswith("zero:") for p in partitions)
    assert all(m.aggregator == "mgda" for m in config.methods if m.method != "standard")


def test_a_path_works_and_pretrain_defaults_to_seen_plus_unseen(tmp_path):
    config = load_config(write(tmp_path, GOOD))
    assert config.pretrain == ("en", "de", "nl")
    assert config.seeds == (0, 1)
    assert config.method("bucket").partition == "zero:1000"


@pytest.mark.parametrize(
    ("edit", "message"),
    [
        (("[train]", "[train]\nstepz = 3"), "'stepz' in [train] (did you mean 'steps'?)"),
        (("[train]", "[train]\nseed = 3"), "[train] cannot set ['seed']"),
        (('method = "bucket"', 'method = "buckets"'), "unknown method 'buckets'"),
        (('partition = "zero:1000"', 'partition = "zero:many"'), "partition 'zero:many'"),
        (('partition = "zero:1000"', 'partition = "tensors"'), "unknown partition 'tensors'"),
        (('partition = "zero:1000"', 'aggregator = "mgd"'), "unknown aggregator 'mgd'"),
        (('unseen = ["nl"]', 'unseen = ["de"]'), "['de'] are both seen and unseen"),
        (("seeds = [0, 1]", "seeds = [0, 0]"), "repeat a seed"),
        (("seeds = [0, 1]", 'seeds = [0, 1]\nbaseline = "sft"'), "baseline 'sft' is not one"),
        (("[train]", "[prepare]\nlayers = 2\n[train]"), "unknown key 'layers' in [prepare]"),
        (("[train]", "[eval]\nlimt = 2\n[train]"), "unknown key 'limt' in [eval]"),
        (("steps = 3", "steps = 0"), "steps must be at least 1"),
        (("[languages]", "[languagez]"), "unknown key 'languagez' in the top level"),
        # Without `method` the table would silently train the baseline again.
        (('method = "bucket"\n', ""), '[methods.bucket] needs method = "standard"'),
        (('partition = "zero:1000"', "partition = 1000"),
         "[methods.bucket] partition must be a string, got 1000"),
        (('partition = "zero:1000"', "aggregator_kwargs = 0.4"),
         "[methods.bucket] aggregator_kwargs must be a table"),
        (("steps = 3", 'steps = "3"'), "steps in [train] must be int, got '3'"),
        (("steps = 3", "steps = 3\nlr = true"), "lr in [train] must be float, got True"),
        (("[train]", '[eval]\nlimit = "8"\n[train]'),
         "limit in [eval] must be int | float | None, got '8'"),
        (("[train]", '[eval]\nconfidence = "high"\n[train]'),
         "confidence in [eval] must be float, got 'high'"),
        (("[train]", '[prepare]\nnum_layers = 2.5\n[train]'),
         "num_layers in [prepare] must be int, got 2.5"),
        (("steps = 3", "steps = 3\nkeep_checkpoints = 0"), "keep_checkpoints must be at least 1"),
    ],
)
def test_bad_configs_name_the_problem_and_the_file(tmp_path, edit, message):
    old, new = edit
    assert old in GOOD
    path = write(tmp_path, GOOD.replace(old, new, 1))
    with pytest.raises(ConfigError) as error:
        load_config(path)
    assert message in str(error.value)
    assert str(path) in str(error.value)


def test_cli_reports_a_bad_config_in_one_line_before_any_work(tmp_path, capsys):
    path = write(tmp_path, GOOD.replace('"zero:1000"', '"zero:x"'))
    out = tmp_path / "exp"
    assert main(["experiment", "--config", str(path), "--out", str(out)]) == 2
    assert "error:" in capsys.readouterr().err
    assert not out.exists()


@pytest.mark.parametrize("where", ["file", "file/below"])
def test_cli_out_that_cannot_be_a_directory_is_one_line(tmp_path, capsys, where):
    (tmp_path / "file").write_text("not an experiment")
    path = write(tmp_path, GOOD)
    assert main(["experiment", "--config", str(path), "--out", str(tmp_path / where)]) == 2
    err = capsys.readouterr().err
    assert err.startswith("error: --out ") and "file" in err and "Traceback" not in err


def test_cli_unknown_shipped_config_lists_the_known_ones(tmp_path, capsys):
    assert main(["experiment", "--config", "miniatur", "--out", str(tmp_path)]) == 2
    err = capsys.readouterr().err
    assert "miniatur" in err and "miniature" in err and "quick" in err


def test_invalid_toml_is_a_config_error(tmp_path):
    with pytest.raises(ConfigError, match="not valid TOML"):
        load_config(write(tmp_path, "seeds = [0,"))


def test_a_language_the_embedded_corpus_lacks_is_named_as_such(tmp_path):
    from finetune.errors import DataError
    from finetune.experiment.config import parse_config
    from finetune.experiment.pipeline import run_experiment

    raw = {"languages": {"pretrain": ["en", "de", "xx"], "seen": ["en"], "unseen": ["xx"]},
           "seeds": [0], "methods": {"standard": {"method": "standard"}}}
    # Before: the separability corpus spoke first ("num2words has no number words").
    with pytest.raises(DataError, match=r"the embedded corpus has no data for \['xx'\]"):
        run_experiment(parse_config(raw, name="t"), tmp_path / "out", progress=False)
    assert not (tmp_path / "out").exists()  # refused before any work or output


def test_miniature_is_what_the_readme_and_its_comments_say():
    """README, "What the miniature gives" and "Fine-tuning: the main experiment", and the
    budget comments of miniature.toml."""
    from finetune.model import PrepareSettings

    config = load_config("miniature")
    assert config.pretrain == ("en", "de", "ru", "ar", "nl", "uk", "fa", "fr")
    assert config.seen == ("en", "de", "ru", "ar") and config.unseen == ("nl", "uk", "fa", "fr")
    assert config.seeds == (0, 1, 2)
    # 40 steps, batch 8 per language, AdamW, lr 2e-3, φ/φ_P/conflicts every 4th step.
    assert {k: config.train[k] for k in ("steps", "batch_size", "optimizer", "lr",
                                         "diagnostics_every")} == {
        "steps": 40, "batch_size": 8, "optimizer": "adamw", "lr": 2e-3, "diagnostics_every": 4}
    assert config.prepare == {}  # the base model is prepare's default
    # 25 examples per task and language, of the 100 held-out numbers; 95 % intervals.
    assert config.eval["limit"] == 25 and PrepareSettings().eval_size == 100
    assert config.confidence == 0.95
    assert [(m.name, m.method, m.partition) for m in config.methods if m.method != "full"] == [
        ("standard", "standard", "tensor"), ("bucket-zero", "bucket", "zero:50000"),
        ("bucket-tensor", "bucket", "tensor")]
    # "12 fine-tuning runs, 13 evaluations" (the base model is evaluated too).
    runs = len(config.methods) * len(config.seeds)
    assert runs == 12 and runs + 1 == 13


def test_without_cuda_deepspeed_is_told_the_cpu_and_a_users_choice_is_kept(monkeypatch):
    """DeepSpeed, imported by accelerate when a model is saved, otherwise guesses the
    device and warns on every CPU command."""
    import os

    import torch

    if torch.cuda.is_available():
        pytest.skip("CUDA present: DeepSpeed detects it itself")
    monkeypatch.delenv("DS_ACCELERATOR", raising=False)
    with pytest.raises(SystemExit):
        main(["--help"])
    assert os.environ["DS_ACCELERATOR"] == "cpu"
    monkeypatch.setenv("DS_ACCELERATOR", "mps")
    with pytest.raises(SystemExit):
        main(["--help"])
    assert os.environ["DS_ACCELERATOR"] == "mps"
