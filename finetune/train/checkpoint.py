"""Checkpoints: written atomically, pruned, and read back for a bitwise resume.

``OUT/checkpoint-STEP/`` holds the model (``save_pretrained``), the tokenizer,
``optimizer.pt`` and ``scheduler.pt``, ``rng-rank{r}.pt`` for every rank, and
``state.json`` (step, settings fingerprint). It is built in
``OUT/.tmp-checkpoint-STEP`` and renamed into place once complete (a rename of a
directory is atomic on POSIX), so a run killed at any instant leaves either the
whole checkpoint or none of it. Batches are a function of (seed, language,
step), so the step number is the whole data position.
"""

from __future__ import annotations

import json
import os
import random
import shutil
from pathlib import Path

import numpy as np
import torch

PREFIX = "checkpoint-"


def checkpoints(out: Path) -> list[tuple[int, Path]]:
    """Complete checkpoints, oldest first."""
    found = []
    for p in out.glob(PREFIX + "*"):
        tail = p.name[len(PREFIX):]
        if tail.isdigit() and (p / "state.json").is_file():
            found.append((int(tail), p))
    return sorted(found)


def clean_temporary(out: Path) -> None:
    for p in out.glob(".tmp-*"):
        shutil.rmtree(p, ignore_errors=True) if p.is_dir() else p.unlink(missing_ok=True)


def rng_state() -> dict:
    state = {"torch": torch.get_rng_state(), "python": random.getstate(),
             "numpy": np.random.get_state()}  # noqa: NPY002 (the global state is what we keep)
    if torch.cuda.is_available():
        state["cuda"] = torch.cuda.get_rng_state_all()
    return state


def set_rng_state(state: dict) -> None:
    torch.set_rng_state(state["torch"])
    random.setstate(state["python"])
    np.random.set_state(state["numpy"])  # noqa: NPY002
    if "cuda" in state and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(state["cuda"])


def save_model(engine, tokenizer, path: Path) -> None:
    """Every rank calls this (sharded engines gather); rank 0 writes."""
    state = engine.model_state()
    if engine.rank == 0:
        path.mkdir(parents=True, exist_ok=True)
        model = getattr(engine.model, "module", engine.model)
        model.save_pretrained(path, state_dict=state) if state is not None \
            else model.save_pretrained(path)
        tokenizer.save_pretrained(path)


def save(out: Path, step: int, engine, tokenizer, optimizer, scheduler, fingerprint: dict,
         keep: int) -> Path:
    final = out / f"{PREFIX}{step}"
    tmp = out / f".tmp-{PREFIX}{step}"
    if engine.rank == 0:
        shutil.rmtree(tmp, ignore_errors=True)
        tmp.mkdir(parents=True)
    engine.barrier()
    save_model(engine, tokenizer, tmp)
    opt = engine.optimizer_state(optimizer)
    torch.save(rng_state(), tmp / f"rng-rank{engine.rank}.pt")
    if engine.rank == 0:
        torch.save(opt, tmp / "optimizer.pt")
        torch.save(scheduler.state_dict(), tmp / "scheduler.pt")
    engine.barrier()
    if engine.rank == 0:
        (tmp / "state.json").write_text(json.dumps({"step": step, "settings": fingerprint}))
        _fsync_dir(tmp)
        os.rename(tmp, final)
        _fsync_dir(out)
        for _, old in checkpoints(out)[:-keep]:
            shutil.rmtree(old, ignore_errors=True)
    engine.barrier()
    return final


def load(path: Path, engine, optimizer, scheduler) -> int:
    """Restore optimizer, scheduler and RNG (the model was loaded from ``path``)."""
    state = json.loads((path / "state.json").read_text())
    engine.load_optimizer_state(optimizer, torch.load(path / "optimizer.pt",
                                                      weights_only=False))
    scheduler.load_state_dict(torch.load(path / "scheduler.pt", weights_only=False))
    set_rng_state(torch.load(path / f"rng-rank{engine.rank}.pt", weights_only=False))
    return int(state["step"])


def write_atomic(path: Path, text: str) -> None:
    tmp = path.with_name(f".tmp-{path.name}")
    tmp.write_text(text)
    os.replace(tmp, path)


def _fsync_dir(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)
