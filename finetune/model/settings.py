"""``PrepareSettings``: every knob of ``prepare`` (corpus, tokenizer, model, pretraining).

The defaults are the miniature of the main experiment. ``small()`` is a cut-down copy for
tests (seconds instead of a minute); an experiment config may override any field by name
(``PrepareSettings(**table)``), and an unknown name is a ConfigError.

>>> PrepareSettings.from_mapping({"pretrain_steps": 10}).pretrain_steps
10
>>> PrepareSettings.from_mapping({"layers": 2})
Traceback (most recent call last):
...
finetune.errors.ConfigError: unknown prepare setting(s) ['layers']; known: ...
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import asdict, dataclass, fields, replace

from finetune.errors import ConfigError


@dataclass(frozen=True)
class PrepareSettings:
    # Corpus: numbers 0..numbers-1 cut into eval / fine-tuning / pretraining sets.
    numbers: int = 1000
    eval_size: int = 100
    finetune_size: int = 300
    mc_choices: int = 4
    # Tokenizer: byte-level BPE, digits split one by one.
    vocab_size: int = 768
    # Tiny Llama.
    hidden_size: int = 64
    intermediate_size: int = 192
    num_layers: int = 4
    num_heads: int = 4
    max_length: int = 64
    # Pretraining: AdamW, linear warmup then cosine decay to 10 % of lr.
    pretrain_steps: int = 300
    pretrain_batch_size: int = 32
    pretrain_lr: float = 3e-3
    pretrain_warmup: int = 50
    pretrain_weight_decay: float = 0.01

    def __post_init__(self) -> None:
        may_be_zero = ("pretrain_warmup", "pretrain_weight_decay")
        bad = [f.name for f in fields(self)
               if not getattr(self, f.name) > 0 and f.name not in may_be_zero]
        bad += [name for name in may_be_zero if getattr(self, name) < 0]
        if bad:
            raise ConfigError(f"prepare settings out of range (must be positive): {bad}")
        if self.hidden_size % self.num_heads:
            raise ConfigError(f"hidden_size={self.hidden_size} is not a multiple of "
                              f"num_heads={self.num_heads}")
        if self.mc_choices < 2:
            raise ConfigError("mc_choices must be at least 2")
        if self.eval_size + self.finetune_size >= self.numbers:
            raise ConfigError("eval_size + finetune_size must leave numbers for pretraining")

    @classmethod
    def from_mapping(cls, values: Mapping[str, object]) -> PrepareSettings:
        """Defaults overridden by ``values``; unknown names are an error."""
        known = {f.name for f in fields(cls)}
        unknown = sorted(set(values) - known)
        if unknown:
            raise ConfigError(f"unknown prepare setting(s) {unknown}; known: {sorted(known)}")
        return replace(cls(), **values)

    @classmethod
    def small(cls) -> PrepareSettings:
        """Seconds to prepare: for tests and for trying the pipeline out."""
        return cls(numbers=200, eval_size=24, finetune_size=64, vocab_size=384,
                   hidden_size=32, intermediate_size=64, num_layers=2, num_heads=4,
                   max_length=48, pretrain_steps=150, pretrain_batch_size=32)

    def as_dict(self) -> dict:
        return asdict(self)
