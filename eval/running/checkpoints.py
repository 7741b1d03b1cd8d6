"""Load a checkpoint once, for both lm-eval scoring and hidden-state extraction.

Everything downstream works on an in-memory (model, tokenizer) pair, so an HF path and
an object a training script already holds go through the same code. lm-eval gets the
pair as ``HFLM(pretrained=model, tokenizer=tokenizer)``: without ``tokenizer=`` HFLM
tries to fetch a tokenizer by the model's name, which fails offline.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any


class CheckpointError(RuntimeError):
    """A checkpoint that does not exist or cannot be loaded."""


@dataclass
class LoadedCheckpoint:
    model: Any
    tokenizer: Any
    source: str


def load_checkpoint(
    checkpoint: str | Path,
    device: str = "cpu",
    dtype: str = "auto",
    tokenizer: str | None = None,
    *,
    revision: str | None = None,
    trust_remote_code: bool = False,
    peft: str | Path | None = None,
) -> LoadedCheckpoint:
    """Load a causal LM and its tokenizer from a local directory or a hub id.

    ``device="auto"`` lets accelerate spread a model too large for one GPU over all of
    them (``device_map="auto"``); any other value puts the whole model on that device.
    ``revision`` pins a hub branch, tag or commit (the tokenizer is read at the same one
    unless ``tokenizer`` names another); ``peft`` is a PEFT adapter directory (LoRA...)
    applied on top, unmerged, as lm-eval's own ``peft=`` option does.
    """
    source = _check_local_path(str(checkpoint))
    from transformers import AutoModelForCausalLM, AutoTokenizer

    hub = {"revision": revision, "trust_remote_code": trust_remote_code}
    try:
        loaded_tokenizer = AutoTokenizer.from_pretrained(
            tokenizer or source, **(hub if tokenizer is None else {})
        )
    except Exception as err:  # transformers raises OSError, ValueError, KeyError, ...
        hint = (
            "; if the tokenizer is stored elsewhere, pass --tokenizer PATH (tokenizer= in Python)"
            if tokenizer is None
            else ""
        )
        raise CheckpointError(
            f"cannot load a tokenizer from {tokenizer or source!r}: {err}{hint}"
        ) from err
    try:
        placement = {"device_map": "auto"} if device == "auto" else {}
        model = AutoModelForCausalLM.from_pretrained(source, dtype=dtype, **placement, **hub)
    except Exception as err:
        raise CheckpointError(f"cannot load a causal LM from {source!r}: {err}") from err
    if peft is not None:
        model = _with_adapter(model, peft)
    if device != "auto":
        model.to(device)
    model.eval()
    return LoadedCheckpoint(model=model, tokenizer=loaded_tokenizer, source=source)


def _with_adapter(model: Any, adapter: str | Path) -> Any:
    path = Path(adapter).expanduser()
    if not (path / "adapter_config.json").is_file():
        raise CheckpointError(f"{str(adapter)!r} is not a PEFT adapter (no adapter_config.json)")
    try:
        from peft import PeftModel
    except ImportError as err:
        raise CheckpointError("--peft needs the peft package: pip install peft") from err
    try:
        return PeftModel.from_pretrained(model, str(path))
    except Exception as err:
        raise CheckpointError(f"cannot apply the adapter {str(adapter)!r}: {err}") from err


def adapter_source(adapter: str | Path | None) -> str | None:
    """How a run records a PEFT adapter: its absolute path (checked without loading)."""
    if adapter is None:
        return None
    path = Path(adapter).expanduser()
    if not path.is_dir():
        raise CheckpointError(f"adapter directory {str(adapter)!r} does not exist")
    return str(path.resolve())


def checkpoint_source(checkpoint: str | Path) -> str:
    """How a run records ``checkpoint``: the path as given if it exists locally, else a hub
    id (checked without loading anything)."""
    return _check_local_path(str(checkpoint))


def from_objects(model: Any, tokenizer: Any, source: str = "<in-memory>") -> LoadedCheckpoint:
    """Wrap a model and tokenizer that are already in memory."""
    if tokenizer is None:
        raise CheckpointError("an in-memory model needs its tokenizer passed explicitly")
    model.eval()
    return LoadedCheckpoint(model=model, tokenizer=tokenizer, source=source)


def as_lm_eval_model(
    checkpoint: LoadedCheckpoint, batch_size: int | str = 1, max_length: int | None = None
):
    """lm-eval's HF backend around an already loaded model.

    ``max_length`` caps the context lm-eval feeds the model (longer inputs are truncated
    from the left); None takes the model config's own maximum.
    """
    from lm_eval.models.huggingface import HFLM

    return HFLM(
        pretrained=checkpoint.model,
        tokenizer=checkpoint.tokenizer,
        batch_size=batch_size,
        max_length=max_length,
    )


def _check_local_path(source: str) -> str:
    """``source`` itself for a hub id; the absolute path for a local checkpoint."""
    # A hub id ("org/name") is legitimate, so only strings that look like paths are
    # checked here; their errors are then about the path, not about the hub.
    path = Path(source).expanduser()
    looks_local = path.is_absolute() or source.startswith((".", "~")) or path.exists()
    if not looks_local:
        return source
    if not path.exists():
        raise CheckpointError(f"checkpoint directory {source!r} does not exist")
    if path.is_dir() and not (path / "config.json").is_file():
        raise CheckpointError(f"{source!r} is not a Hugging Face checkpoint (no config.json)")
    # Absolute, so that resuming a run from another directory sees the same checkpoint.
    return str(path.resolve())
