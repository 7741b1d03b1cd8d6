"""The model and tokenizer: a local directory or a hub id, found before any work.

A name that is not a local directory is tried as a hub id (offline here: it
fails at once); either way a missing model is a ConfigError that names it.
"""

from __future__ import annotations

from pathlib import Path

import torch

from finetune.errors import ConfigError

DTYPES = {"float32": torch.float32, "bfloat16": torch.bfloat16, "float64": torch.float64}


def _where(name: str | Path) -> str:
    path = Path(name)
    if path.is_dir():
        if not (path / "config.json").is_file():
            raise ConfigError(f"model directory {path} has no config.json: not a saved "
                              "Hugging Face model")
        return str(path)
    return str(name)


def _quiet() -> None:
    # transformers' own bars (loading, writing shards) would interleave with the step bar.
    from transformers.utils import logging

    logging.disable_progress_bar()


def load_tokenizer(name: str | Path):
    from transformers import AutoTokenizer

    _quiet()
    where = _where(name)
    try:
        return AutoTokenizer.from_pretrained(where)
    except (OSError, ValueError) as err:
        raise ConfigError(f"model {name!r} not found: no such directory, and not loadable as "
                          f"a hub id ({type(err).__name__}: {str(err).splitlines()[0]})") from err


def load_model(name: str | Path, dtype: str, device: torch.device):
    """The causal LM in ``dtype`` on ``device``, in training mode (dropout as configured)."""
    from transformers import AutoModelForCausalLM

    where = _where(name)
    try:
        model = AutoModelForCausalLM.from_pretrained(where, dtype=DTYPES[dtype])
    except (OSError, ValueError) as err:
        raise ConfigError(f"model {name!r} could not be loaded: {err}") from err
    return model.to(device).train()
