"""Which benchmarks cover which languages, as data (for --json) and as a text table."""

from __future__ import annotations

from collections.abc import Sequence

from eval.languages.codes import language_name
from eval.languages.registry import Registry


def coverage_listing(registry: Registry, benchmarks: Sequence[str] | None = None) -> dict:
    chosen = registry.check_benchmarks(benchmarks) if benchmarks else registry.benchmarks()
    languages: dict[str, dict] = {}
    for unit in sorted(registry.units, key=lambda u: (u.language, u.benchmark)):
        if unit.benchmark in chosen:
            entry = languages.setdefault(
                unit.language, {"name": language_name(unit.language), "benchmarks": {}}
            )
            entry["benchmarks"][unit.benchmark] = unit.lm_eval_name
    return {
        "languages": languages,
        "benchmarks": {
            name: {
                "description": registry.specs[name].description,
                "languages": registry.languages([name]),
            }
            for name in chosen
        },
        "notes": list(registry.notes),
    }


def format_coverage(listing: dict) -> str:
    lines = [
        f"{len(listing['languages'])} languages in {len(listing['benchmarks'])} benchmarks",
        "",
    ]
    width = max((len(tag) for tag in listing["languages"]), default=4)
    for tag, entry in listing["languages"].items():
        benches = ", ".join(entry["benchmarks"])
        lines.append(
            f"{tag:<{width}}  {entry['name'][:28]:<28}  {len(entry['benchmarks']):>2}  {benches}"
        )
    lines += ["", "benchmarks:"]
    for name, entry in listing["benchmarks"].items():
        lines.append(f"  {name:<22} {len(entry['languages']):>3} languages  {entry['description']}")
    if listing["notes"]:
        lines += ["", "not placed:"] + [f"  {note}" for note in listing["notes"]]
    return "\n".join(lines)
