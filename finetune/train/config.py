"""The settings of one training run, checked before anything expensive happens.

A run's *fingerprint* is every setting that changes its result (not ``out``,
``save_every``, ``diagnostics_every``): a second command on the same ``--out``
resumes only when the fingerprints agree, and otherwise names the settings that
differ.
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass, field, fields

from finetune.errors import ConfigError

METHODS = ("standard", "full", "bucket")
ENGINES = ("single", "ddp", "fsdp2", "deepspeed")
OPTIMIZERS = ("adamw", "sgd")
DTYPES = ("float32", "bfloat16", "float64")
NOT_FINGERPRINTED = ("out", "save_every", "diagnostics_every", "keep_checkpoints")


@dataclass(frozen=True)
class TrainConfig:
    model: str
    data: str
    languages: tuple[str, ...]
    out: str
    method: str = "standard"
    aggregator: str = "mgda"
    aggregator_kwargs: dict = field(default_factory=dict)
    partition: str = "tensor"
    """simulate's spec syntax (``simulate.schemes.build_partition``); ``bucket`` only."""
    steps: int = 100
    save_every: int | None = None
    seed: int = 0
    optimizer: str = "adamw"
    lr: float = 1e-3
    weight_decay: float = 0.0
    warmup_steps: int = 0
    min_lr_ratio: float = 0.0
    """The cosine ends at ``lr · min_lr_ratio`` after the last step."""
    batch_size: int = 8
    """Global examples per language per step."""
    micro_batch_size: int | None = None
    """Examples per forward/backward; default: the whole per-rank share."""
    max_length: int = 128
    chat_template: bool = False
    engine: str = "single"
    dtype: str = "float32"
    diagnostics_every: int = 1
    """φ, φ_P and conflicts every N steps (0: never); for ``standard`` this costs K extra
    backward passes on those steps, timed apart from the step."""
    partition_world_size: int | None = None
    """The world size ``zero``/``fsdp2`` partitions are cut for (default: the run's); set
    it to 2 on the single engine to reproduce a W = 2 run's buckets."""
    keep_checkpoints: int = 2

    def __post_init__(self) -> None:
        object.__setattr__(self, "languages", tuple(self.languages))

    def validate(self) -> TrainConfig:
        """Every check that needs neither the model nor the data."""
        from refmoo import AGGREGATORS, get_aggregator

        if self.method not in METHODS:
            raise ConfigError(f"unknown method {self.method!r}; choose from {', '.join(METHODS)}")
        if self.aggregator not in AGGREGATORS:
            raise ConfigError(f"unknown aggregator {self.aggregator!r}; choose from "
                              f"{', '.join(AGGREGATORS)}")
        try:
            get_aggregator(self.aggregator, **self.aggregator_kwargs)
        except (TypeError, ValueError) as err:
            raise ConfigError(f"aggregator {self.aggregator!r}: {err}") from err
        for name, value, choices in (("engine", self.engine, ENGINES),
                                     ("optimizer", self.optimizer, OPTIMIZERS),
                                     ("dtype", self.dtype, DTYPES)):
            if value not in choices:
                raise ConfigError(f"unknown {name} {value!r}; choose from {', '.join(choices)}")
        if not self.languages:
            raise ConfigError("no languages given")
        if len(set(self.languages)) != len(self.languages):
            raise ConfigError(f"languages repeat: {list(self.languages)}")
        for name in ("steps", "batch_size", "max_length"):
            if getattr(self, name) < 1:
                raise ConfigError(f"{name} must be at least 1, got {getattr(self, name)}")
        if self.micro_batch_size is not None and (
                self.micro_batch_size < 1 or self.batch_size % self.micro_batch_size):
            raise ConfigError(f"micro_batch_size {self.micro_batch_size} must divide batch_size "
                              f"{self.batch_size}")
        if self.save_every is not None and self.save_every < 1:
            raise ConfigError(f"save_every must be at least 1, got {self.save_every}")
        if self.engine == "deepspeed" and self.save_every:
            raise ConfigError("--engine deepspeed does not write checkpoints yet (ZeRO's "
                              "partitioned optimizer state): drop --save-every, or use "
                              "--engine ddp or fsdp2")
        if self.warmup_steps < 0 or self.lr <= 0 or not 0 <= self.min_lr_ratio <= 1:
            raise ConfigError("need warmup_steps ≥ 0, lr > 0 and 0 ≤ min_lr_ratio ≤ 1")
        if self.diagnostics_every < 0:
            raise ConfigError("diagnostics_every must be ≥ 0")
        if self.keep_checkpoints < 1:
            # 0 would have to delete the checkpoint just written (nothing left to resume
            # from); the slice that prunes, [:-0], instead kept every one, silently.
            raise ConfigError(f"keep_checkpoints must be at least 1, got "
                              f"{self.keep_checkpoints}")
        from .partitioning import check_spec

        check_spec(self.partition)
        return self

    def make_aggregator(self):
        from refmoo import get_aggregator

        return get_aggregator(self.aggregator, **self.aggregator_kwargs)

    def fingerprint(self, world_size: int) -> dict:
        """The settings that decide the result, JSON-able; ``world_size`` included."""
        out = {f.name: getattr(self, f.name) for f in fields(self)
               if f.name not in NOT_FINGERPRINTED}
        out["languages"] = list(self.languages)
        out["world_size"] = world_size
        return json.loads(json.dumps(out, sort_keys=True))

    def to_dict(self) -> dict:
        d = asdict(self)
        d["languages"] = list(self.languages)
        return d


def differences(old: dict, new: dict) -> list[str]:
    """``name: old → new`` for every setting that differs."""
    keys = sorted(set(old) | set(new))
    return [f"{k}: {old.get(k)!r} → {new.get(k)!r}" for k in keys if old.get(k) != new.get(k)]
