"""Builders for the trainer tests: a tiny random Llama, a locally trained tokenizer and a
two-language prompt/completion data set, in seconds and offline (no tests here)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import torch

ROOT = Path(__file__).resolve().parents[2]
WORDS = {"en": ["zero", "one", "two", "three", "four", "five", "six", "seven", "eight", "nine"],
         "de": ["null", "eins", "zwei", "drei", "vier", "fünf", "sechs", "sieben", "acht",
                "neun"]}


def rows(lang: str) -> list[dict]:
    return [{"prompt": f"{lang}|{a}{b}=", "completion": f"{WORDS[lang][a]} {WORDS[lang][b]}"}
            for a in range(1, 10) for b in range(10)][::3]


def write_data(root: Path) -> Path:
    for lang in WORDS:
        (root / lang).mkdir(parents=True, exist_ok=True)
        for split in ("train", "eval"):
            (root / lang / f"{split}.jsonl").write_text(
                "".join(json.dumps(r, ensure_ascii=False) + "\n" for r in rows(lang)))
    return root


def write_model(root: Path, *, seed: int = 0) -> Path:
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers
    from transformers import LlamaConfig, LlamaForCausalLM, PreTrainedTokenizerFast

    texts = [r["prompt"] + r["completion"] for lang in WORDS for r in rows(lang)]
    tok = Tokenizer(models.BPE(unk_token="<unk>"))
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tok.decoder = decoders.ByteLevel()
    tok.train_from_iterator(texts, trainers.BpeTrainer(
        vocab_size=96, special_tokens=["<unk>", "<s>", "</s>", "<pad>"],
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(), show_progress=False))
    tokenizer = PreTrainedTokenizerFast(tokenizer_object=tok, unk_token="<unk>",
                                        bos_token="<s>", eos_token="</s>", pad_token="<pad>")
    torch.manual_seed(seed)
    config = LlamaConfig(vocab_size=len(tokenizer), hidden_size=16, intermediate_size=32,
                         num_hidden_layers=2, num_attention_heads=2, num_key_value_heads=2,
                         max_position_embeddings=64, tie_word_embeddings=False,
                         bos_token_id=1, eos_token_id=2, pad_token_id=3)
    LlamaForCausalLM(config).save_pretrained(root)
    tokenizer.save_pretrained(root)
    return root


def final_params(path: Path) -> dict[str, torch.Tensor]:
    from safetensors.torch import load_file

    return load_file(str(path / "model.safetensors"))


def assert_bitwise(a: dict, b: dict) -> None:
    assert a.keys() == b.keys()
    for k in a:
        assert torch.equal(a[k], b[k]), (k, float((a[k] - b[k]).abs().max()))


def env() -> dict:
    e = dict(os.environ, HF_HUB_OFFLINE="1", HF_DATASETS_OFFLINE="1", OMP_NUM_THREADS="1",
             PYTHONPATH=str(ROOT))
    return e


def cli(*args: str, timeout: float = 120, torchrun: int | None = None,
        check: bool = True) -> subprocess.CompletedProcess:
    """``python -m finetune train ...`` (or under ``torchrun --nproc-per-node N``)."""
    if torchrun:
        cmd = [str(Path(sys.executable).with_name("torchrun")), "--standalone",
               f"--nproc-per-node={torchrun}", "-m", "finetune", "train", *args]
    else:
        cmd = [sys.executable, "-m", "finetune", "train", *args]
    out = subprocess.run(cmd, cwd=ROOT, env=env(), capture_output=True, text=True,
                         timeout=timeout)
    if check and out.returncode != 0:
        raise AssertionError(f"{' '.join(cmd)} failed ({out.returncode}):\n{out.stderr[-4000:]}")
    return out
