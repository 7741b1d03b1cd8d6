"""Turn "seen languages, unseen languages, benchmarks" into the units one run evaluates."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from eval.languages.registry import LanguageUnit, Registry

EVERY_OTHER = "rest"  # unseen = every covered language that is not seen


@dataclass(frozen=True)
class RunPlan:
    benchmarks: tuple[str, ...]
    seen: tuple[str, ...]
    unseen: tuple[str, ...]
    units: tuple[LanguageUnit, ...]
    # Requested languages that no selected benchmark covers: reported, never dropped.
    uncovered_seen: tuple[str, ...]
    uncovered_unseen: tuple[str, ...]

    def split_of(self, language: str) -> str:
        return "seen" if language in self.seen else "unseen"


def plan_run(
    registry: Registry,
    seen: Sequence[str],
    unseen: Sequence[str] | str = EVERY_OTHER,
    benchmarks: Sequence[str] | None = None,
) -> RunPlan:
    """Resolve names, pick units, and refuse selections lm-eval would run twice."""
    chosen = tuple(registry.check_benchmarks(benchmarks) if benchmarks else registry.benchmarks())
    seen_tags = _unique(registry.resolve_language(code) for code in seen)
    if isinstance(unseen, str) and unseen == EVERY_OTHER:
        unseen_tags = [lang for lang in registry.languages(chosen) if lang not in seen_tags]
    else:
        unseen_tags = _unique(registry.resolve_language(code) for code in unseen)
    both = sorted(set(seen_tags) & set(unseen_tags))
    if both:
        raise ValueError(f"languages requested as both seen and unseen: {both}")

    units = []
    uncovered: dict[str, list[str]] = {"seen": [], "unseen": []}
    for split, languages in (("seen", seen_tags), ("unseen", unseen_tags)):
        for language in languages:
            found = [u for b in chosen if (u := registry.unit(b, language)) is not None]
            if not found:
                uncovered[split].append(language)
            units.extend(found)
    _refuse_shared_tasks(registry, units)
    return RunPlan(
        benchmarks=chosen,
        seen=tuple(seen_tags),
        unseen=tuple(unseen_tags),
        units=tuple(units),
        uncovered_seen=tuple(uncovered["seen"]),
        uncovered_unseen=tuple(uncovered["unseen"]),
    )


def _refuse_shared_tasks(registry: Registry, units: Sequence[LanguageUnit]) -> None:
    # lm-eval refuses a request with two groups that share a task, and a task shared by
    # two units would be counted twice in the averages; catch both before any work.
    owner: dict[str, LanguageUnit] = {}
    for unit in units:
        for task in registry.leaf_tasks(unit.lm_eval_name):
            if task in owner:
                raise ValueError(
                    f"units {owner[task].unit_id} and {unit.unit_id} both run lm-eval task "
                    f"{task!r}; select only one of them"
                )
            owner[task] = unit


def _unique(items) -> list[str]:
    return list(dict.fromkeys(items))
