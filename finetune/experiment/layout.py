"""Where an experiment keeps its files, and which of its steps are finished.

```
DIR/experiment.json                      the config it was started with (a resume must match)
DIR/prepared/                            prepare's output (base model, data, tasks)
DIR/base/eval/, DIR/base/separability/   the base model, evaluated once
DIR/runs/METHOD/seed-S/                  train's OUT: log.jsonl, summary.json, final/
DIR/runs/METHOD/seed-S/eval/             eval's run directory for that checkpoint
DIR/runs/METHOD/seed-S/separability/     its separability by layer
DIR/steps/*.json                         one marker per finished step
DIR/results.json, DIR/report.md, DIR/plots/
```

A step is finished when its marker exists. Markers are written atomically and only after
the step's own outputs, so an interrupted experiment redoes at most the step it was in.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

from eval.atomic_io import read_json, write_json_atomic
from finetune.errors import ConfigError

BASE = "base"
UNCOMPARED = ("name",)  # settings a resume may change (see Layout.claim)


@dataclass(frozen=True)
class Layout:
    root: Path

    @property
    def config_path(self) -> Path:
        return self.root / "experiment.json"

    @property
    def results_path(self) -> Path:
        return self.root / "results.json"

    @property
    def report_path(self) -> Path:
        return self.root / "report.md"

    @property
    def plots(self) -> Path:
        return self.root / "plots"

    def run_dir(self, method: str, seed: int | None) -> Path:
        """Directory of one method × seed (``seed=None`` with method ``base``: the base)."""
        if method == BASE and seed is None:
            return self.root / BASE
        return self.root / "runs" / method / f"seed-{seed}"

    def eval_dir(self, method: str, seed: int | None) -> Path:
        return self.run_dir(method, seed) / "eval"

    def separability_dir(self, method: str, seed: int | None) -> Path:
        return self.run_dir(method, seed) / "separability"

    # ------------------------------------------------------------- markers
    def marker(self, step: str) -> Path:
        return self.root / "steps" / (step.replace("/", "__") + ".json")

    def is_done(self, step: str) -> bool:
        return self.marker(step).is_file()

    def mark_done(self, step: str, payload: dict) -> None:
        write_json_atomic(self.marker(step), payload)

    def done_payload(self, step: str) -> dict:
        return read_json(self.marker(step))

    # ------------------------------------------------------------- settings
    def claim(self, settings: dict) -> None:
        """Record ``settings``, or refuse when DIR already holds an experiment with others.

        Mixing runs of two configs in one directory would compare incomparable numbers.
        """
        settings = json.loads(json.dumps(settings))  # as read back: tuples become lists
        if self.root.exists() and not self.root.is_dir():
            raise ConfigError(f"--out {self.root} is a file, not a directory")
        if self.config_path.is_file():
            previous = read_json(self.config_path)
            # The name is the config file's stem: it titles the report and decides no
            # number, so a renamed copy of the same config resumes.
            changed = sorted(k for k in set(previous) | set(settings)
                             if k not in UNCOMPARED and previous.get(k) != settings.get(k))
            if changed:
                details = "; ".join(f"{k}: {previous.get(k)!r} -> {settings.get(k)!r}"
                                    for k in changed[:3])
                raise ConfigError(f"{self.root} holds an experiment with other settings "
                                  f"({details}); use a new --out directory")
        try:
            write_json_atomic(self.config_path, settings)
        except OSError as err:  # unwritable, or a file on the way to it: before any work
            raise ConfigError(f"--out {self.root}: cannot write {self.config_path.name} "
                              f"({err.strerror}: {err.filename})") from err
