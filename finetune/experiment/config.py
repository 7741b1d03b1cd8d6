"""An experiment is configuration, not code: a TOML file, read and checked here.

The file names the languages, overrides of the base model's ``prepare`` settings and of
the trainer's settings, the methods to compare, the seeds, and the evaluation settings::

    seeds = [0, 1, 2]
    baseline = "standard"            # every method is compared against this one

    [languages]
    pretrain = ["en", "de", "ru", "ar", "nl", "uk", "fa", "fr"]
    seen = ["en", "de", "ru", "ar"]  # fine-tuned on
    unseen = ["nl", "uk", "fa", "fr"]

    [prepare]                        # finetune.model.PrepareSettings fields, by name
    [train]                          # finetune.train.TrainConfig fields, by name
    steps = 60

    [methods.standard]
    method = "standard"
    [methods.bucket-zero]
    method = "bucket"
    aggregator = "mgda"
    partition = "zero:20000"

    [eval]                           # eval.api.EvalSettings fields + bootstrap settings
    [separability]                   # sentences, threshold, parallel_file

Everything is checked before any work starts: an unknown key, method, aggregator or
partition spec raises :class:`~finetune.errors.ConfigError` naming the key and the
file. The shipped configs are ``miniature`` (``make demo``) and ``quick`` (the test
suite); a path to a ``.toml`` file works the same way.
"""

from __future__ import annotations

import dataclasses
import difflib
import sys
import types
import typing
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from finetune.errors import ConfigError

if sys.version_info >= (3, 11):
    import tomllib
else:  # pragma: no cover - exercised on Python 3.10 only
    import tomli as tomllib

CONFIG_DIR = Path(__file__).parent / "configs"
# The experiment decides these per run; a [train] table may not set them.
RUN_OWNED = ("model", "data", "languages", "out", "method", "aggregator",
             "aggregator_kwargs", "partition", "seed", "engine")
_TOP_LEVEL = ("seeds", "baseline", "languages", "prepare", "train", "methods", "eval",
              "separability", "description")
_EVAL_OWN = ("bootstrap_iterations", "bootstrap_seed", "confidence")


@dataclass(frozen=True)
class MethodSpec:
    """One row of the comparison: an update rule, its aggregator and its partition."""

    name: str
    method: str = "standard"
    aggregator: str = "mgda"
    aggregator_kwargs: Mapping[str, Any] = field(default_factory=dict)
    partition: str = "tensor"

    def describe(self) -> str:
        """Short human label.

        >>> MethodSpec("b", "bucket", partition="zero:20000").describe()
        'bucket-level mgda on zero:20000'
        >>> MethodSpec("s").describe()
        'standard (mean loss)'
        """
        if self.method == "standard":
            return "standard (mean loss)"
        if self.method == "full":
            return f"full-vector {self.aggregator}"
        return f"bucket-level {self.aggregator} on {self.partition}"


@dataclass(frozen=True)
class ExperimentConfig:
    name: str
    source: str
    pretrain: tuple[str, ...]
    seen: tuple[str, ...]
    unseen: tuple[str, ...]
    seeds: tuple[int, ...]
    methods: tuple[MethodSpec, ...]
    baseline: str
    prepare: Mapping[str, Any] = field(default_factory=dict)
    prepare_seed: int = 0
    train: Mapping[str, Any] = field(default_factory=dict)
    eval: Mapping[str, Any] = field(default_factory=dict)
    bootstrap_iterations: int = 2000
    bootstrap_seed: int = 0
    confidence: float = 0.95
    separability: Mapping[str, Any] = field(default_factory=dict)
    description: str = ""

    def method(self, name: str) -> MethodSpec:
        return next(m for m in self.methods if m.name == name)

    def as_dict(self) -> dict:
        """JSON-ready form, recorded in the output directory to refuse a mixed resume."""
        payload = dataclasses.asdict(self)
        payload.pop("source")
        payload.pop("description")
        return payload


def resolve_config_path(name_or_path: str | Path) -> Path:
    """A shipped config by name (``miniature``, ``quick``) or a path to a TOML file."""
    text = str(name_or_path)
    shipped = CONFIG_DIR / f"{text}.toml"
    if "/" not in text and not text.endswith(".toml"):
        if shipped.is_file():
            return shipped
        known = sorted(p.stem for p in CONFIG_DIR.glob("*.toml"))
        raise ConfigError(f"no shipped config {text!r}; known: {', '.join(known)} "
                          "(or give a path to a .toml file)")
    path = Path(text).expanduser()
    if not path.is_file():
        raise ConfigError(f"config file {text!r} does not exist")
    return path


def load_config(name_or_path: str | Path) -> ExperimentConfig:
    """Read and check a config; every problem is a ConfigError naming the file and key."""
    path = resolve_config_path(name_or_path)
    try:
        raw = tomllib.loads(path.read_text(encoding="utf-8"))
    except tomllib.TOMLDecodeError as error:
        raise ConfigError(f"{path}: not valid TOML: {error}") from None
    return parse_config(raw, name=path.stem, source=str(path))


def parse_config(raw: Mapping[str, Any], *, name: str = "config",
                 source: str = "<config>") -> ExperimentConfig:
    """Build an ExperimentConfig from the parsed TOML tables (see the module docstring)."""
    where = _Where(source)
    where.keys(raw, _TOP_LEVEL, "the top level")
    languages = where.table(raw, "languages", required=True)
    where.keys(languages, ("pretrain", "seen", "unseen"), "[languages]")
    seen = where.languages(languages, "seen")
    unseen = where.languages(languages, "unseen")
    pretrain = where.languages(languages, "pretrain") if "pretrain" in languages \
        else tuple(dict.fromkeys(seen + unseen))
    overlap = sorted(set(seen) & set(unseen))
    if overlap:
        where.fail(f"[languages] {overlap} are both seen and unseen")
    missing = [lang for lang in seen + unseen if lang not in pretrain]
    if missing:
        where.fail(f"[languages] {missing} are not in pretrain {list(pretrain)}: the base "
                   "model would never have read them")

    seeds = raw.get("seeds", [0])
    if (not isinstance(seeds, list) or not seeds
            or not all(isinstance(s, int) and not isinstance(s, bool) for s in seeds)):
        where.fail(f"seeds must be a non-empty list of integers, got {seeds!r}")
    if len(set(seeds)) != len(seeds):
        where.fail(f"seeds {seeds} repeat a seed")

    methods = tuple(_method(where, key, value)
                    for key, value in where.table(raw, "methods", required=True).items())
    if not methods:
        where.fail("[methods] is empty; name at least the baseline")
    baseline = raw.get("baseline", "standard")
    if baseline not in {m.name for m in methods}:
        where.fail(f"baseline {baseline!r} is not one of the methods "
                   f"{[m.name for m in methods]}")

    prepare = dict(where.table(raw, "prepare"))
    prepare_seed = prepare.pop("seed", 0)
    train = where.table(raw, "train")
    owned = sorted(set(train) & set(RUN_OWNED))
    if owned:
        where.fail(f"[train] cannot set {owned}: the experiment sets them per run "
                   "(methods in [methods], seeds in `seeds`)")
    evaluation = dict(where.table(raw, "eval"))
    own = {key: evaluation.pop(key) for key in _EVAL_OWN if key in evaluation}
    separability = where.table(raw, "separability")
    where.keys(separability, ("sentences", "threshold", "parallel_file"), "[separability]")
    config = ExperimentConfig(
        name=name, source=source, pretrain=pretrain, seen=seen, unseen=unseen,
        seeds=tuple(seeds), methods=methods, baseline=baseline, prepare=prepare,
        prepare_seed=prepare_seed, train=dict(train), eval=evaluation,
        separability=dict(separability), description=str(raw.get("description", "")), **own)
    check_against_interfaces(config)
    check_runs(config)
    return config


def check_against_interfaces(config: ExperimentConfig) -> None:
    """Check the [prepare], [train] and [eval] keys against the dataclasses they fill.

    The field names are read from the classes themselves, so a new trainer setting is
    usable from a config without a change here.
    """
    from eval.api import EvalSettings
    from finetune.model import PrepareSettings
    from finetune.train import TrainConfig

    where = _Where(config.source)
    where.keys(config.prepare, _field_names(PrepareSettings) + ("seed",), "[prepare]")
    allowed = tuple(f for f in _field_names(TrainConfig) if f not in RUN_OWNED)
    where.keys(config.train, allowed, "[train]")
    where.keys(config.eval, _field_names(EvalSettings) + _EVAL_OWN, "[eval]")
    # Types too: a quoted number would otherwise pass here and fail only when its step runs
    # (EvalSettings checks nothing: `limit = "8"` failed every unit after prepare).
    where.types(config.prepare, PrepareSettings, "[prepare]")
    where.types(config.train, TrainConfig, "[train]")
    where.types(config.eval, EvalSettings, "[eval]")
    where.types({key: getattr(config, key) for key in _EVAL_OWN}, ExperimentConfig, "[eval]")


def _field_names(cls) -> tuple[str, ...]:
    return tuple(f.name for f in dataclasses.fields(cls))


def _method(where: _Where, name: str, table: Any) -> MethodSpec:
    if not isinstance(table, Mapping):
        where.fail(f"[methods.{name}] must be a table, got {table!r}")
    where.keys(table, ("method", "aggregator", "aggregator_kwargs", "partition"),
               f"[methods.{name}]")
    # Without `method`, a table that names only an aggregator or a partition would default
    # to "standard" and silently train the baseline a second time under another name.
    if "method" not in table:
        where.fail(f'[methods.{name}] needs method = "standard", "full" or "bucket"')
    for key in ("method", "aggregator", "partition"):
        if key in table and not isinstance(table[key], str):
            where.fail(f"[methods.{name}] {key} must be a string, got {table[key]!r}")
    if not isinstance(table.get("aggregator_kwargs", {}), Mapping):
        where.fail(f"[methods.{name}] aggregator_kwargs must be a table, e.g. "
                   f"{{ c = 0.4 }}, got {table['aggregator_kwargs']!r}")
    return MethodSpec(name=name, **table)


def check_runs(config: ExperimentConfig) -> None:
    """Every run's TrainConfig passes the trainer's own checks (method, aggregator,
    partition spec, values of [train]) before anything is prepared or trained."""
    from finetune.train import TrainConfig

    for spec in config.methods:
        try:
            TrainConfig(model=".", data=".", languages=config.seen, out=".",
                        method=spec.method, aggregator=spec.aggregator,
                        aggregator_kwargs=dict(spec.aggregator_kwargs),
                        partition=spec.partition, **config.train).validate()
        except ConfigError as error:
            raise ConfigError(f"{config.source}: [methods.{spec.name}] with [train]: "
                              f"{error}") from None


def _accepts(hint, value) -> bool:
    """Whether a TOML value fits a dataclass field's annotation; an annotation this does
    not know accepts anything (the dataclass's own checks still run)."""
    if isinstance(hint, types.UnionType) or typing.get_origin(hint) is typing.Union:
        return any(_accepts(arm, value) for arm in typing.get_args(hint))
    origin = typing.get_origin(hint) or hint
    if hint is type(None):
        return value is None
    if origin is bool:
        return isinstance(value, bool)
    if origin is int:
        return isinstance(value, int) and not isinstance(value, bool)
    if origin is float:
        return isinstance(value, (int, float)) and not isinstance(value, bool)
    if origin is str:
        return isinstance(value, str)
    if origin in (tuple, list):
        return isinstance(value, (tuple, list))
    if origin in (dict, Mapping):
        return isinstance(value, Mapping)
    return True


def _type_name(hint) -> str:
    return hint.__name__ if isinstance(hint, type) else str(hint).replace("typing.", "")


def _close(word: str, known) -> str:
    matches = difflib.get_close_matches(str(word), list(known), n=1)
    return f" (did you mean {matches[0]!r}?)" if matches else f" (known: {', '.join(known)})"


@dataclass(frozen=True)
class _Where:
    """Error messages that name the config file."""

    source: str

    def fail(self, message: str):
        raise ConfigError(f"{self.source}: {message}")

    def keys(self, table: Mapping, allowed, what: str) -> None:
        for key in table:
            if key not in allowed:
                self.fail(f"unknown key {key!r} in {what}{_close(key, allowed)}")

    def types(self, table: Mapping, cls, what: str) -> None:
        hints = typing.get_type_hints(cls)
        for key, value in table.items():
            if key in hints and not _accepts(hints[key], value):
                self.fail(f"{key} in {what} must be {_type_name(hints[key])}, got {value!r}")

    def table(self, raw: Mapping, key: str, required: bool = False) -> Mapping:
        value = raw.get(key)
        if value is None:
            if required:
                self.fail(f"missing [{key}] table")
            return {}
        if not isinstance(value, Mapping):
            self.fail(f"{key} must be a table ([{key}]), got {value!r}")
        return value

    def languages(self, table: Mapping, key: str) -> tuple[str, ...]:
        value = table.get(key)
        if (not isinstance(value, list) or not value
                or not all(isinstance(v, str) and v for v in value)):
            self.fail(f"[languages] {key} must be a non-empty list of language codes, "
                      f"got {value!r}")
        if len(set(value)) != len(value):
            self.fail(f"[languages] {key} lists a language twice: {value}")
        return tuple(value)
