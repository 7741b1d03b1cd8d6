"""One line per experiment step on stderr: what runs now, how far along, how long so far.

The trainer and the evaluator draw their own bars inside a step; these lines say which
step the bars belong to, and which steps a resumed experiment skipped.
"""

from __future__ import annotations

import sys
import time
from typing import TextIO


class StepProgress:
    """``[3/14 0:42] train bucket-zero seed 1``.

    >>> import io
    >>> out = io.StringIO()
    >>> progress = StepProgress(2, stream=out, clock=lambda: 0.0)
    >>> progress.start("prepare"); progress.skip("train standard seed 0")
    >>> print(out.getvalue(), end="")
    [1/2 0:00] prepare
    [2/2 0:00] train standard seed 0 (done before, skipped)
    """

    def __init__(self, total: int, *, enabled: bool = True, stream: TextIO | None = None,
                 clock=time.monotonic) -> None:
        self.total, self.count, self.enabled = total, 0, enabled
        self.stream, self.clock = stream, clock
        self.started = clock()
        self.skipped = 0

    def start(self, what: str) -> None:
        self._line(what)

    def skip(self, what: str) -> None:
        self.skipped += 1
        self._line(f"{what} (done before, skipped)")

    def _line(self, text: str) -> None:
        self.count += 1
        if not self.enabled:
            return
        elapsed = int(self.clock() - self.started)
        stamp = f"{elapsed // 60}:{elapsed % 60:02d}"
        print(f"[{self.count}/{self.total} {stamp}] {text}", file=self.stream or sys.stderr,
              flush=True)
