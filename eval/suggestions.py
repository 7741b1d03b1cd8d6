"""Errors for names that do not exist, with the closest existing names as hints."""

from __future__ import annotations

import difflib
from collections.abc import Iterable


class UnknownNameError(ValueError):
    """A language, benchmark or task name that the registry does not know.

    >>> str(UnknownNameError("benchmark", "xnlii", ["xnli", "xcopa"]))
    "unknown benchmark 'xnlii'; did you mean: xnli"
    """

    def __init__(
        self, kind: str, name: str, candidates: Iterable[str], *, note: str = ""
    ) -> None:
        self.kind = kind
        self.name = name
        self.close_matches = close_matches(name, candidates)
        hint = (
            f"; did you mean: {', '.join(self.close_matches)}"
            if self.close_matches
            else "; no similar name is known"
        )
        super().__init__(f"unknown {kind} {name!r}{hint}" + (f" ({note})" if note else ""))


def close_matches(name: str, candidates: Iterable[str], limit: int = 5) -> list[str]:
    """Candidates most similar to ``name``, compared case-insensitively."""
    by_lower: dict[str, str] = {}
    for candidate in candidates:
        by_lower.setdefault(candidate.lower(), candidate)
    matches = difflib.get_close_matches(name.lower(), list(by_lower), n=limit, cutoff=0.6)
    return [by_lower[m] for m in matches]
