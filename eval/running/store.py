"""On-disk layout of one evaluation run; what makes it incremental and resumable.

```
<run>/manifest.json          settings that must not change when a run is resumed
<run>/raw/<unit>.json        lm-eval's output for one unit, untouched (samples removed)
<run>/samples/<unit>.jsonl   lm-eval's logged samples for that unit, one row per example
<run>/failures/<unit>.json   the error of a unit that failed (removed once it succeeds)
<run>/summary.json           scores and averages, rebuilt from the files above
```

A unit is finished when its raw file exists; the samples file is written first, so a raw
file always has its samples. Every write is atomic, so an interrupted run leaves only
finished units behind and a resumed run skips exactly those.
"""

from __future__ import annotations

import traceback
from pathlib import Path

from eval.atomic_io import (
    CorruptFileError,
    read_json,
    read_jsonl,
    write_json_atomic,
    write_jsonl_atomic,
)
from eval.languages.registry import LanguageUnit

# Changing any of these would mix incomparable numbers in one run directory.
FINGERPRINT_KEYS = ("checkpoint", "limit", "num_fewshot", "apply_chat_template", "seed",
                    "dtype", "batch_size", "tokenizer", "revision", "peft",
                    "system_instruction", "gen_kwargs", "max_length")


class RunSettingsMismatch(ValueError):
    """Resuming a run directory with settings that differ from the ones it was started with."""


class RunStore:
    def __init__(self, root: str | Path) -> None:
        self.root = Path(root)

    # ---------------------------------------------------------------- paths
    @staticmethod
    def file_stem(unit: LanguageUnit) -> str:
        return f"{unit.benchmark}__{unit.language}"

    def raw_path(self, unit: LanguageUnit) -> Path:
        return self.root / "raw" / f"{self.file_stem(unit)}.json"

    def samples_path(self, unit: LanguageUnit) -> Path:
        return self.root / "samples" / f"{self.file_stem(unit)}.jsonl"

    def failure_path(self, unit: LanguageUnit) -> Path:
        return self.root / "failures" / f"{self.file_stem(unit)}.json"

    @property
    def summary_path(self) -> Path:
        return self.root / "summary.json"

    @property
    def manifest_path(self) -> Path:
        return self.root / "manifest.json"

    # ---------------------------------------------------------------- state
    def start(self, manifest: dict) -> None:
        """Record the run's settings, or check them against the ones already recorded."""
        if self.manifest_path.exists():
            previous = read_json(self.manifest_path)
            changed = {
                key: (previous.get(key), manifest.get(key))
                for key in FINGERPRINT_KEYS
                if previous.get(key) != manifest.get(key)
            }
            if changed:
                raise RunSettingsMismatch(
                    f"{self.root} was started with other settings {changed} (old, new); "
                    "use a new output directory"
                )
        write_json_atomic(self.manifest_path, manifest)

    def manifest(self) -> dict:
        return read_json(self.manifest_path)

    def is_done(self, unit: LanguageUnit) -> bool:
        """A unit is done when its raw file and its samples both parse: a file truncated by
        a crash or a full disk (written outside this store, or by an older version) is run
        again rather than counted as done forever."""
        if not (self.raw_path(unit).exists() and self.samples_path(unit).exists()):
            return False
        try:
            read_json(self.raw_path(unit))
            read_jsonl(self.samples_path(unit))
        except CorruptFileError:
            return False
        return True

    def save_unit(self, unit: LanguageUnit, output: dict) -> None:
        output = dict(output)
        samples = output.pop("samples", {}) or {}
        rows = [{"task": task, **row} for task, task_rows in samples.items() for row in task_rows]
        write_jsonl_atomic(self.samples_path(unit), rows)
        write_json_atomic(self.raw_path(unit), output)
        self.failure_path(unit).unlink(missing_ok=True)

    def save_failure(self, unit: LanguageUnit, error: BaseException) -> None:
        write_json_atomic(
            self.failure_path(unit),
            {
                "unit": unit.unit_id,
                "lm_eval_task": unit.lm_eval_name,
                "error": f"{type(error).__name__}: {error}",
                "traceback": traceback.format_exception(error),
            },
        )

    def load_raw(self, unit: LanguageUnit) -> dict:
        return read_json(self.raw_path(unit))

    def load_samples(self, unit: LanguageUnit) -> list[dict]:
        return read_jsonl(self.samples_path(unit))

    def load_failure(self, unit: LanguageUnit) -> dict | None:
        path = self.failure_path(unit)
        return read_json(path) if path.exists() else None
