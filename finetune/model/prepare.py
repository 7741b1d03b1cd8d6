"""``prepare``: the miniature's data, tasks and pretrained base model, cached by content.

``prepare(DIR)`` writes

    DIR/data/<lang>/{train,eval}.jsonl   fine-tuning rows {"prompt": "de|372=", "completion": ...}
    DIR/base/                            save_pretrained LlamaForCausalLM + tokenizer
    DIR/tasks/                           lm-eval include path: numwords_mc, numwords_gen
    DIR/prepare.json                     the manifest: inputs, their key, pretraining record

**Cache.** The key is the SHA-256 of the inputs: languages, seed, every ``PrepareSettings``
field, the versions of the packages that shape the output (num2words, babel, tokenizers,
transformers, torch) and this module's format version. A second call with the same key
does nothing; a call whose key differs refuses to touch ``DIR`` (ConfigError naming what
changed), so nothing is lost.

**Atomic writes.** Everything is built in a temporary folder inside ``DIR``, then each of
``data``, ``base``, ``tasks`` is renamed into place, and the manifest is written last
with ``os.replace``: the manifest is the commit. While the parts are renamed, a pending
record (``DIR/.prepare-pending``) says they are ours, so a folder left by an interrupted
call is rebuilt, while a folder that is not ours is never deleted.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import tempfile
import time
from collections.abc import Sequence
from dataclasses import dataclass
from importlib.metadata import version
from pathlib import Path

from finetune.data.corpus import DEFAULT_LANGUAGES, check_languages
from finetune.data.miniature import pretraining_texts, split_numbers, write_finetune_data
from finetune.data.tasks import BENCHMARKS, write_tasks
from finetune.errors import ConfigError
from finetune.model.settings import PrepareSettings

FORMAT_VERSION = 1
MANIFEST = "prepare.json"
PENDING = ".prepare-pending"  # present only while parts are being renamed into place
PARTS = ("data", "base", "tasks")
_VERSIONED = ("num2words", "babel", "tokenizers", "transformers", "torch")


@dataclass(frozen=True)
class Prepared:
    data: Path
    base: Path
    tasks: Path
    benchmarks: tuple[str, ...]
    manifest: Path | None = None  # DIR/prepare.json: inputs, key, pretraining record


def prepare(out: str | Path, languages: Sequence[str] = DEFAULT_LANGUAGES, seed: int = 0,
            settings: PrepareSettings | None = None, *, progress: bool = True) -> Prepared:
    """Build (or find, if already built with the same inputs) the miniature in ``out``."""
    languages = check_languages(languages)
    settings = settings or PrepareSettings()
    out = Path(out).resolve()
    if out.exists() and not out.is_dir():  # else a NotADirectoryError traceback
        raise ConfigError(f"prepare's output {out} is a file, not a directory")
    inputs = prepare_inputs(languages, seed, settings)
    key = content_key(inputs)
    if _is_complete(out, key):
        return _prepared(out)
    _check_no_other_prepare(out, inputs)
    out.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(prefix=".prepare-", dir=out))
    try:
        record = _build(staging, out, languages, seed, settings, progress)
        _commit(staging, out, key, {"key": key, "inputs": inputs, "pretraining": record,
                                    "benchmarks": list(BENCHMARKS)})
    finally:
        shutil.rmtree(staging, ignore_errors=True)
    return _prepared(out)


def prepare_inputs(languages: Sequence[str], seed: int, settings: PrepareSettings) -> dict:
    """Everything the output depends on, as JSON-able data."""
    return {"format": FORMAT_VERSION, "languages": list(languages), "seed": int(seed),
            "settings": settings.as_dict(),
            "versions": {name: version(name) for name in _VERSIONED}}


def content_key(inputs: dict) -> str:
    """SHA-256 of the canonical JSON of ``inputs``.

    >>> content_key({"b": 1, "a": [2]}) == content_key({"a": [2], "b": 1})
    True
    """
    text = json.dumps(inputs, sort_keys=True, separators=(",", ":"))
    return hashlib.sha256(text.encode("utf-8")).hexdigest()


def _prepared(out: Path) -> Prepared:
    return Prepared(data=out / "data", base=out / "base", tasks=out / "tasks",
                    benchmarks=BENCHMARKS, manifest=out / MANIFEST)


def _read_manifest(out: Path) -> dict | None:
    try:
        return json.loads((out / MANIFEST).read_text(encoding="utf-8"))
    except (FileNotFoundError, json.JSONDecodeError):
        return None


def _is_complete(out: Path, key: str) -> bool:
    manifest = _read_manifest(out)
    return (manifest is not None and manifest.get("key") == key
            and not (out / PENDING).exists() and all((out / p).is_dir() for p in PARTS))


def _check_no_other_prepare(out: Path, inputs: dict) -> None:
    """Refuse to replace a prepare with other inputs, or folders that are not ours.

    The parts are ours when a manifest (a finished prepare) or the pending record (an
    interrupted commit) says so; then an unfinished one with the same key is rebuilt.
    """
    manifest = _read_manifest(out)
    if manifest is not None and manifest.get("key") != content_key(inputs):
        changed = _differences(manifest.get("inputs", {}), inputs)
        raise ConfigError(
            f"{out} already holds a prepared miniature with other inputs ({changed}); "
            f"use another --out, or delete {out}/{{data,base,tasks,{MANIFEST}}} first")
    if manifest is None and not (out / PENDING).exists():
        foreign = [p for p in PARTS if (out / p).exists()]
        if foreign:
            raise ConfigError(f"{out} holds {foreign} not written by prepare; "
                              "refusing to overwrite them: choose another --out")


def _differences(old: dict, new: dict, prefix: str = "") -> str:
    changes = []
    for name in sorted(set(old) | set(new)):
        a, b = old.get(name), new.get(name)
        if isinstance(a, dict) and isinstance(b, dict):
            inner = _differences(a, b, f"{prefix}{name}.")
            changes += [inner] if inner else []
        elif a != b:
            changes.append(f"{prefix}{name}: {a!r} -> {b!r}")
    return "; ".join(changes)


def _build(staging: Path, out: Path, languages, seed: int, settings: PrepareSettings,
           progress: bool) -> dict:
    from finetune.model.pretrain import encode_documents, pretrain
    from finetune.model.tiny_llama import build_model
    from finetune.model.tokenizer import train_tokenizer

    split = split_numbers(settings.numbers, settings.eval_size, settings.finetune_size, seed)
    write_finetune_data(staging / "data", languages, split)
    write_tasks(staging / "tasks", languages, split, settings.numbers, settings.mc_choices,
                final_dest=out / "tasks")
    texts = pretraining_texts(languages, split)
    tokenizer = train_tokenizer(texts, settings.vocab_size)
    model = build_model(settings, tokenizer, seed)
    started = time.perf_counter()
    losses = pretrain(
        model, encode_documents(texts, tokenizer, settings.max_length), tokenizer.pad_token_id,
        steps=settings.pretrain_steps, batch_size=settings.pretrain_batch_size,
        lr=settings.pretrain_lr, warmup=settings.pretrain_warmup,
        weight_decay=settings.pretrain_weight_decay, seed=seed, progress=progress)
    seconds = time.perf_counter() - started
    _save_quietly(model, staging / "base", progress)
    tokenizer.save_pretrained(staging / "base")
    tail = losses[-min(20, len(losses)):]
    return {"documents": len(texts), "parameters": sum(p.numel() for p in model.parameters()),
            "tensors": len(list(model.parameters())), "vocab_size": len(tokenizer),
            "first_loss": losses[0], "final_loss": sum(tail) / len(tail),
            "seconds": round(seconds, 2),
            "numbers": {"pretrain": len(split.pretrain), "finetune": len(split.finetune),
                        "eval": len(split.eval)}}


def _save_quietly(model, path: Path, progress: bool) -> None:
    """``save_pretrained``, without transformers' progress bar when ``progress`` is False."""
    from transformers.utils import logging as hf_logging

    silence = not progress and hf_logging.is_progress_bar_enabled()
    if silence:
        hf_logging.disable_progress_bar()
    try:
        model.save_pretrained(path)
    finally:
        if silence:
            hf_logging.enable_progress_bar()


def _commit(staging: Path, out: Path, key: str, manifest: dict) -> None:
    """Rename the parts into place (replacing only our own leftovers), manifest last.

    The pending record goes first: from then until the manifest lands, any part in
    ``out`` is known to be ours, so a crash in between is repaired by the next call.
    """
    _write_atomic(staging / PENDING, out / PENDING, key + "\n")
    (out / MANIFEST).unlink(missing_ok=True)
    for part in PARTS:
        if (out / part).exists():
            shutil.rmtree(out / part)  # ours: checked by _check_no_other_prepare
        os.rename(staging / part, out / part)
    _write_atomic(staging / MANIFEST, out / MANIFEST,
                  json.dumps(manifest, indent=1, sort_keys=True) + "\n")
    (out / PENDING).unlink()


def _write_atomic(temporary: Path, final: Path, text: str) -> None:
    temporary.write_text(text, encoding="utf-8")
    os.replace(temporary, final)
