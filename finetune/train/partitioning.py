"""``--partition`` specs: checked early, built with ``simulate.schemes.build_partition``.

The spec syntax is simulate's (``single``, ``chunks:N``, ``tensor``,
``module[:DEPTH]``, ``ddp[:CAP_MB[:FIRST_MB]]``, ``zero[:SIZE]``,
``fsdp2[:UNIT,...]``). One addition for Hugging Face models: a bare ``fsdp2``
takes the model's transformer blocks as units (the classes the model lists in
``_no_split_modules``, e.g. ``LlamaDecoderLayer``), which is how FSDP2 is
applied to them.
"""

from __future__ import annotations

from collections.abc import Callable

from torch import Tensor, nn

from finetune.errors import ConfigError
from refmoo import Partition

KINDS = ("single", "chunks", "tensor", "module", "ddp", "zero", "fsdp2")


def check_spec(spec: str) -> None:
    """Reject an unknown kind or a malformed number without touching a model."""
    kind, _, arg = spec.partition(":")
    if kind not in KINDS:
        raise ConfigError(f"unknown partition {spec!r}; use single, chunks:N, tensor, "
                          "module[:DEPTH], ddp[:CAP_MB[:FIRST_MB]], zero[:SIZE] or "
                          "fsdp2[:UNIT,...]")
    numbers = {"chunks": 1, "module": 1, "ddp": 2, "zero": 1}.get(kind)
    if numbers is None:
        if arg and kind != "fsdp2":
            raise ConfigError(f"partition {spec!r}: {kind} takes no argument")
        return
    args = [a for a in arg.split(":") if a]
    if kind == "chunks" and len(args) != 1:
        raise ConfigError(f"partition {spec!r}: chunks needs a size, chunks:N")
    try:
        values = [float(a) for a in args]
    except ValueError as err:
        raise ConfigError(f"partition {spec!r}: {err}") from err
    if len(values) > numbers or any(v <= 0 for v in values):
        raise ConfigError(f"partition {spec!r}: expected at most {numbers} positive numbers")


def blocks(model: nn.Module) -> list[str]:
    """The transformer blocks: modules of the classes in ``_no_split_modules``."""
    classes = set(getattr(model, "_no_split_modules", None) or ())
    return [n for n, m in model.named_modules() if n and type(m).__name__ in classes]


def fsdp2_units(spec: str, model: nn.Module) -> list[str]:
    kind, _, arg = spec.partition(":")
    units = arg.split(",") if arg else blocks(model)
    if kind != "fsdp2" or not units:
        return blocks(model)
    return units


def build(spec: str, model: nn.Module, world_size: int,
          probe: Callable[[], Tensor] | None = None) -> Partition:
    """The partition ``spec`` names for ``model``; a spec that does not fit is a ConfigError."""
    from simulate.schemes import build_partition

    if spec == "fsdp2" and blocks(model):
        spec = "fsdp2:" + ",".join(blocks(model))
    try:
        partition, _ = build_partition(spec, model, world_size, probe)
    except (ValueError, KeyError, IndexError) as err:
        raise ConfigError(f"partition {spec!r} does not fit the model: {err}") from err
    return partition


def layer_of(name: str) -> str:
    """The module path up to the block index (``model.layers.0``), else the module
    (``model.embed_tokens``, ``lm_head``)."""
    parts = name.split(".")
    for i, part in enumerate(parts):
        if part.isdigit():
            return ".".join(parts[:i + 1])
    return ".".join(parts[:-1]) or name
