"""Language-to-benchmark registry read from lm-eval's task index.

The registry answers "which lm-eval task (or group) measures benchmark B in language L",
with languages in the canonical form of ``codes``. It is built from a
``TaskManager`` so that it reflects exactly the tasks the installed lm-eval (plus any
``include_path``) can run.

An include path may declare its own benchmark families in a ``benchmarks.json`` at its
top: a JSON list of ``BenchmarkSpec`` fields, e.g.::

    [{"name": "numwords_mc", "pattern": "^numwords_mc_(?P<lang>[a-z]{2})$",
      "metrics": ["acc"], "description": "numbers to words, multiple choice"}]

(``kinds`` is a list of "task" / "group"; ``language_is_name`` a boolean). So a task
suite written elsewhere (e.g. by ``finetune prepare``) is a configuration, not code here.
"""

from __future__ import annotations

import functools
from collections import defaultdict
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path

from eval.atomic_io import read_json
from eval.languages.benchmarks import BUILTIN_BENCHMARKS, LOCAL_BENCHMARKS, BenchmarkSpec
from eval.languages.codes import UnknownLanguageError, canonical_language, language_name
from eval.suggestions import UnknownNameError


@dataclass(frozen=True)
class LanguageUnit:
    """One benchmark in one language: the unit that is evaluated, stored and resumed."""

    benchmark: str
    language: str
    lm_eval_name: str
    native_code: str

    @property
    def unit_id(self) -> str:
        return f"{self.benchmark}/{self.language}"


@dataclass(frozen=True)
class Registry:
    units: tuple[LanguageUnit, ...]
    # Index names a spec matched but that could not be placed (unparsable language,
    # two names for one language); kept so `languages` can show them, not hide them.
    notes: tuple[str, ...]
    task_index: dict
    specs: dict[str, BenchmarkSpec]

    @property
    def metric_preferences(self) -> dict[str, tuple[str, ...]]:
        """Benchmark -> metrics to report, in order of preference."""
        return {name: spec.metrics for name, spec in self.specs.items()}

    def benchmarks(self) -> list[str]:
        return sorted({u.benchmark for u in self.units})

    def languages(self, benchmarks: Iterable[str] | None = None) -> list[str]:
        wanted = set(benchmarks) if benchmarks is not None else None
        return sorted({u.language for u in self.units if wanted is None or u.benchmark in wanted})

    def coverage(self) -> dict[str, list[str]]:
        """Language -> benchmarks that cover it."""
        table: dict[str, list[str]] = defaultdict(list)
        for unit in self.units:
            table[unit.language].append(unit.benchmark)
        return {lang: sorted(benches) for lang, benches in sorted(table.items())}

    def unit(self, benchmark: str, language: str) -> LanguageUnit | None:
        for unit in self.units:
            if unit.benchmark == benchmark and unit.language == language:
                return unit
        return None

    def check_benchmarks(self, names: Iterable[str]) -> list[str]:
        """Return ``names`` if all are known benchmarks, else raise with close matches."""
        known = self.benchmarks()
        checked = []
        for name in names:
            if name not in known:
                note = ""
                if name in self.specs and not _has_builtin_tasks(self.task_index):
                    note = ("lm-eval's built-in tasks were skipped (--no-defaults, or "
                            "include_defaults=False); drop that to use the built-in benchmarks")
                raise UnknownNameError("benchmark", name, known, note=note)
            checked.append(name)
        return checked

    def resolve_language(self, code_or_name: str) -> str:
        """Canonical tag of a user-given language; unknown strings raise with close matches."""
        try:
            return canonical_language(code_or_name)
        except UnknownLanguageError:
            covered = self.languages()
            candidates = covered + [language_name(tag) for tag in covered]
            raise UnknownNameError("language", code_or_name, candidates) from None

    def leaf_tasks(self, lm_eval_name: str) -> frozenset[str]:
        """Leaf tasks that requesting ``lm_eval_name`` runs (groups and tags expanded)."""
        return frozenset(_expand(self.task_index, lm_eval_name, set()))


def build_registry(
    task_manager, specs: Sequence[BenchmarkSpec] = BUILTIN_BENCHMARKS + LOCAL_BENCHMARKS
) -> Registry:
    """Scan ``task_manager``'s index with every spec and normalise the languages found.

    Families declared by the task manager's include paths (``benchmarks.json``) are added
    to ``specs``.
    """
    index = task_manager.task_index
    specs = _merge_specs(specs, declared_benchmarks(_include_paths(task_manager)))
    units: list[LanguageUnit] = []
    notes: list[str] = []
    for spec in specs:
        placed: dict[str, LanguageUnit] = {}
        candidates = [
            (name, match.group("lang"))
            for name in sorted(index)
            if (match := spec.regex.match(name)) is not None
            and _kind(index[name]) in spec.kinds
            and _in_family_folder(spec, index[name])
        ]
        candidates += [(name, code) for name, code in spec.named if name in index]
        for name, native in candidates:
            try:
                language = canonical_language(native)
            except UnknownLanguageError as err:
                notes.append(f"{spec.name}: skipped {name} ({err})")
                continue
            if language in placed:
                notes.append(
                    f"{spec.name}: {name} and {placed[language].lm_eval_name} both map to "
                    f"{language}; kept {placed[language].lm_eval_name}"
                )
                continue
            placed[language] = LanguageUnit(spec.name, language, name, native)
        units.extend(placed.values())
    return Registry(
        units=tuple(units),
        notes=tuple(notes),
        task_index=index,
        specs={spec.name: spec for spec in specs},
    )


def _kind(entry) -> str:
    return entry.kind.name.lower().replace("py_", "")


def _in_family_folder(spec: BenchmarkSpec, entry) -> bool:
    """Whether an index entry may belong to ``spec`` by where its config lives: a config in
    lm-eval's own ``tasks/`` directory must sit in one of the family's folders; a config
    elsewhere (an include path) is taken by its name."""
    path = getattr(entry, "yaml_path", None)
    if not spec.folders or path is None:
        return True
    try:
        relative = Path(path).resolve().relative_to(_lm_eval_tasks_dir())
    except ValueError:
        return True
    return relative.parts[0] in spec.folders


def _has_builtin_tasks(index: dict) -> bool:
    """Whether the index holds any config from lm-eval's own tasks directory."""
    root = _lm_eval_tasks_dir()
    return any(
        entry.yaml_path is not None and Path(entry.yaml_path).resolve().is_relative_to(root)
        for entry in index.values()
    )


@functools.cache
def _lm_eval_tasks_dir() -> Path:
    import lm_eval.tasks

    return Path(lm_eval.tasks.__file__).resolve().parent


DECLARATION_FILE = "benchmarks.json"
_DECLARABLE = {"name", "pattern", "kinds", "metrics", "language_is_name", "description"}


def declared_benchmarks(include_paths: Iterable[str | Path]) -> tuple[BenchmarkSpec, ...]:
    """The families declared in ``benchmarks.json`` at the top of each include path."""
    declared = []
    for directory in include_paths:
        path = Path(directory) / DECLARATION_FILE
        if not path.is_file():
            continue
        entries = read_json(path)  # CorruptFileError (a ValueError) names the file
        if not isinstance(entries, list):
            raise ValueError(f"{path}: expected a JSON list of benchmark families")
        declared += [_declared_spec(entry, f"{path}[{i}]") for i, entry in enumerate(entries)]
    return tuple(declared)


def _declared_spec(entry, where: str) -> BenchmarkSpec:
    if not isinstance(entry, dict) or not {"name", "pattern"} <= set(entry):
        raise ValueError(f'{where}: a family needs at least "name" and "pattern"')
    unknown = sorted(set(entry) - _DECLARABLE)
    if unknown:
        raise ValueError(f"{where}: unknown field(s) {unknown}; known: {sorted(_DECLARABLE)}")
    values = dict(entry)
    if "kinds" in values:
        values["kinds"] = frozenset(values["kinds"])
    if "metrics" in values:
        values["metrics"] = tuple(values["metrics"])
    try:
        return BenchmarkSpec(**values)
    except (ValueError, TypeError) as error:  # a bad regex is a re.error, a ValueError
        raise ValueError(f"{where}: {error}") from None


def _merge_specs(specs: Sequence[BenchmarkSpec], extra: Sequence[BenchmarkSpec]):
    """``specs`` plus ``extra``; one name with two different definitions is an error."""
    by_name = {spec.name: spec for spec in specs}
    merged = list(specs)
    for spec in extra:
        if spec.name not in by_name:
            by_name[spec.name] = spec
            merged.append(spec)
        elif by_name[spec.name] != spec:
            raise ValueError(f"benchmark {spec.name!r} is declared twice, differently: "
                             f"{by_name[spec.name]} and {spec}")
    return tuple(merged)


def _include_paths(task_manager) -> list:
    paths = getattr(task_manager, "include_path", None)
    if paths is None:
        return []
    return list(paths) if isinstance(paths, list | tuple) else [paths]


def _expand(index: dict, name: str, visiting: set[str]) -> set[str]:
    entry = index.get(name)
    if entry is None or name in visiting:
        return {name}
    kind = entry.kind.name
    if kind == "TAG":
        members = sorted(entry.tags)
    elif kind == "GROUP":
        members = [
            item if isinstance(item, str) else item.get("task", item.get("group"))
            for item in _as_list(entry.cfg.get("task"))
        ]
    else:
        return {name}
    leaves: set[str] = set()
    for member in members:
        if member is not None:
            leaves |= _expand(index, member, visiting | {name})
    return leaves


def _as_list(value) -> list:
    if value is None:
        return []
    return value if isinstance(value, list) else [value]


def load_task_manager(include_paths: Sequence[str] = (), include_defaults: bool = True):
    """lm-eval's TaskManager over the built-in tasks and/or local task directories.

    ``include_defaults=False`` skips indexing the ~15k built-in configs (0.01 s instead of
    several seconds) when only local tasks are wanted.
    """
    from lm_eval.tasks import TaskManager

    missing = [p for p in include_paths if not Path(p).is_dir()]
    if missing:
        raise FileNotFoundError(f"task include path(s) not found: {missing}")
    if not include_paths and not include_defaults:
        raise ValueError("no tasks: give an include path or keep lm-eval's built-in tasks")
    return TaskManager(
        include_path=[str(Path(p).resolve()) for p in include_paths] or None,
        include_defaults=include_defaults,
    )
