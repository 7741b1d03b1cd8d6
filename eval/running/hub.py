"""Datasets from the Hugging Face hub: fetch them ahead of time, and stop at the first
unit that cannot reach the hub.

Compute nodes of a cluster often have no network. Without ``--offline`` every unit
would then spend about 24 s in ``datasets``' retries before failing, so a plan of
hundreds of units would spend hours failing. Instead, the first unit whose failure is
a hub failure stops the run (:class:`HubUnreachable`) with a message that names the
fix: ``python -m eval prefetch`` on a machine with network (it builds every task of the
plan once through lm-eval, which downloads and caches its dataset), then ``--offline``
on the compute nodes.
"""

from __future__ import annotations

import socket
from collections.abc import Iterator, Sequence

from tqdm import tqdm

from eval.languages.selection import RunPlan

# Messages of the errors datasets / huggingface_hub raise for an unreachable or
# disabled hub (their exception classes differ between versions).
_HUB_MESSAGES = ("couldn't reach", "offline mode", "connection", "failed to resolve",
                 "name or service not known", "temporary failure in name resolution")


class HubUnreachable(ConnectionError):
    """A unit needed the hub and could not reach it; the message says what to do."""


def is_hub_failure(error: BaseException) -> bool:
    """Whether ``error`` (or anything in its cause chain) is a network or hub failure."""
    for err in _chain(error):
        if isinstance(err, (ConnectionError, socket.timeout, socket.gaierror, TimeoutError)):
            return True
        name = type(err).__name__
        if name in ("OfflineModeIsEnabled", "LocalEntryNotFoundError", "ConnectError",
                    "ConnectTimeout", "ReadTimeout"):
            return True
        if any(text in str(err).lower() for text in _HUB_MESSAGES):
            return True
    return False


def hub_failure_message(plan: RunPlan, unit_id: str, error: BaseException,
                        offline: bool) -> str:
    languages = " ".join(sorted({u.language for u in plan.units}))
    benchmarks = " ".join(plan.benchmarks)
    why = "offline mode is on and its dataset is not cached" if offline else \
        "the Hugging Face hub could not be reached"
    return (
        f"unit {unit_id} stopped the run: {why} ({type(error).__name__}: {error}).\n"
        "Fetch the datasets once on a machine with network:\n"
        f"  python -m eval prefetch --benchmark {benchmarks} --languages {languages}\n"
        "then run here with --offline (and the same HF_DATASETS_CACHE / HF_HOME). "
        "Finished units are kept; the same command resumes."
    )


def prefetch(plan: RunPlan, task_manager, show_progress: bool = True) -> list[dict]:
    """Build every task of ``plan`` once through lm-eval, which downloads and caches its
    dataset. Returns one row per unit: its datasets, or the error that stopped it."""
    rows = []
    for unit in tqdm(plan.units, desc="prefetch", unit="unit", disable=not show_progress):
        try:
            tasks = task_manager.load([unit.lm_eval_name])["tasks"]
        except Exception as err:  # one unit's failure must not hide the others'
            rows.append({"unit": unit.unit_id, "ok": False,
                         "error": f"{type(err).__name__}: {err}"})
            continue
        rows.append({"unit": unit.unit_id, "ok": True, "datasets": sorted(_datasets(tasks))})
    return rows


def _datasets(tasks) -> Iterator[str]:
    if isinstance(tasks, dict):
        for value in tasks.values():
            yield from _datasets(value)
        return
    config = getattr(tasks, "config", None)
    if config is not None and getattr(config, "dataset_path", None):
        name = getattr(config, "dataset_name", None)
        yield config.dataset_path + (f" ({name})" if name else "")


def _chain(error: BaseException) -> Sequence[BaseException]:
    seen: list[BaseException] = []
    while error is not None and error not in seen:
        seen.append(error)
        error = error.__cause__ or error.__context__
    return seen
