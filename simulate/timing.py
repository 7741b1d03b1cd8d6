"""Wall time per phase, exclusive: time spent in a nested phase is not charged to its parent.

Communication issued while the update runs (the parameter all-gather) is
therefore counted as communication, not as update.

>>> t = PhaseTimer()
>>> with t.phase("update"):
...     with t.phase("communication"):
...         pass
>>> sorted(t.totals)
['communication', 'update']
"""

from __future__ import annotations

import time
from collections import defaultdict
from contextlib import contextmanager


class PhaseTimer:
    def __init__(self) -> None:
        self.totals: dict[str, float] = defaultdict(float)
        self._stack: list[list] = []

    @contextmanager
    def phase(self, name: str):
        start = time.perf_counter()
        frame = [name, 0.0]  # [name, time spent in children]
        self._stack.append(frame)
        try:
            yield
        finally:
            self._stack.pop()
            elapsed = time.perf_counter() - start
            self.totals[name] += elapsed - frame[1]
            if self._stack:
                self._stack[-1][1] += elapsed

    def reset(self) -> dict[str, float]:
        out = dict(self.totals)
        self.totals.clear()
        return out
