"""The report's PNG figures. Each takes plain data (results.json, mean log series).

Written atomically like every other output (``eval.atomic_io``). Separability by layer
reuses eval's own figure so the experiment and ``python -m eval separability`` agree.
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path

import numpy as np
from matplotlib.figure import Figure  # not pyplot: no backend needed, none switched

from eval.atomic_io import write_atomic
from eval.reporting import plots as eval_plots


def loss_curves(curves: Mapping[str, dict], path: Path) -> Path:
    """One panel per training language, one line per method (mean over seeds)."""
    languages = list(next(iter(curves.values()))["loss"])
    columns = min(4, len(languages))
    rows = -(-len(languages) // columns)
    fig = Figure(figsize=(4 * columns, 3 * rows))
    axes = fig.subplots(rows, columns, squeeze=False)
    for ax, language in zip(axes.flat, languages, strict=False):
        for method, series in curves.items():
            ax.plot(*_logged(series["steps"], series["loss"].get(language, [])), label=method)
        ax.set_title(f"training loss, {language}", fontsize="medium")
        ax.set_xlabel("step")
    for ax in list(axes.flat)[len(languages):]:
        ax.axis("off")
    axes.flat[0].legend(fontsize="small")
    return _save(fig, path)


def scores(results: dict, path: Path) -> Path:
    """Seen and unseen scores per method with their intervals; dots are single seeds."""
    names = ["base", *results["methods"]]
    fig = Figure(figsize=(max(5.0, 1.3 * len(names) + 2), 4))
    ax = fig.subplots()
    x = np.arange(len(names))
    for offset, split in ((-0.2, "seen"), (0.2, "unseen")):
        heights, low, high = [results["base"][split]], [0.0], [0.0]
        for name in results["methods"]:
            method = results["methods"][name]
            heights.append(method[split])
            interval = method[f"{split}_ci"] or [method[split], method[split]]
            low.append(method[split] - interval[0])
            high.append(interval[1] - method[split])
        ax.bar(x + offset, _nan(heights), 0.4, yerr=[low, high], capsize=3, label=split)
        for i, name in enumerate(names[1:], start=1):
            seeds = [r[split] for r in results["runs"] if r["method"] == name]
            ax.scatter([x[i] + offset] * len(seeds), _nan(seeds), color="black", s=8, zorder=3)
    ax.set_xticks(x, names)
    ax.set_ylabel("macro-average score")
    ax.set_title("Seen vs unseen languages (bars: mean over seeds, whiskers: bootstrap CI)",
                 fontsize="medium")
    ax.legend()
    return _save(fig, path)


def separability(results: dict, path: Path) -> Path:
    """Silhouette, probe accuracy, language-specific dimensions per layer (eval's figure)."""
    chance = 1.0 / len(results["languages"]["seen"] + results["languages"]["unseen"])
    entries = {"base": results["base"]["separability"]}
    entries.update({name: m["separability"] for name, m in results["methods"].items()})
    return eval_plots.separability_by_layer(
        {name: {"layers": layers, "probe_chance": chance} for name, layers in entries.items()},
        path)


def conflict(curves: Mapping[str, dict], path: Path) -> Path | None:
    """Per method, the fraction of per-tensor buckets in conflict in each layer over steps."""
    logged = {m: s for m, s in curves.items() if s["conflict"]}
    if not logged:
        return None
    fig = Figure(figsize=(4.5 * len(logged), 3.4))
    axes = fig.subplots(1, len(logged), squeeze=False)
    for ax, (method, series) in zip(axes.flat, logged.items(), strict=True):
        for layer, fractions in series["conflict"].items():
            ax.plot(*_logged(series["steps"], fractions), marker=".", label=layer)
        ax.set_title(f"{method}: buckets in conflict", fontsize="medium")
        ax.set_xlabel("step")
        ax.set_ylim(-0.02, 1.02)
    axes.flat[0].set_ylabel("fraction of buckets with a negative cosine")
    axes.flat[0].legend(fontsize="x-small")
    return _save(fig, path)


def stationarity(curves: Mapping[str, dict], path: Path) -> Path | None:
    """φ (full vector) and φ_P (the run's partition) over training, per method."""
    if not any(v is not None for s in curves.values() for v in s["phi"] + s["phi_p"]):
        return None
    fig = Figure(figsize=(10, 3.6))
    axes = fig.subplots(1, 2)
    for ax, key, title in ((axes[0], "phi", "φ(G): full vector"),
                           (axes[1], "phi_p", "φ_P(G): the run's partition")):
        for method, series in curves.items():
            steps, values = _logged(series["steps"], series[key])
            if len(values):
                ax.plot(steps, values, marker=".", label=method)
        ax.set_yscale("log")
        ax.set_title(title, fontsize="medium")
        ax.set_xlabel("step")
    axes[0].legend(fontsize="small")
    return _save(fig, path)


def cost(results: dict, path: Path) -> Path:
    """Median step time split by phase, and peak gradient memory, per method."""
    names = list(results["methods"])
    fig = Figure(figsize=(max(8.0, 2.2 * len(names) + 3), 3.8))
    left, right = fig.subplots(1, 2)
    bottom = np.zeros(len(names))
    for phase in ("backward", "aggregate", "optimizer"):
        values = np.array([results["methods"][n]["time"].get(phase, 0.0) for n in names])
        left.bar(names, values * 1e3, bottom=bottom * 1e3, label=phase)
        bottom += values
    total = np.array([results["methods"][n]["time"].get("step", np.nan) for n in names])
    other = np.clip(total - bottom, 0.0, None)
    left.bar(names, other * 1e3, bottom=bottom * 1e3, label="other", color="lightgrey")
    left.set_ylabel("ms per step (median)")
    left.set_title("step time by phase", fontsize="medium")
    left.legend(fontsize="small")
    memory = [(results["methods"][n]["grad_memory_bytes"] or 0) / 2**20 for n in names]
    right.bar(names, memory, color="tab:purple")
    right.set_ylabel("MiB")
    right.set_title("peak gradient memory (G and .grad)", fontsize="medium")
    for ax in (left, right):
        ax.tick_params(axis="x", labelrotation=20)
    return _save(fig, path)


def _logged(steps, values) -> tuple[np.ndarray, np.ndarray]:
    """The steps that logged a value, and the values: diagnostics run every few steps,
    and a line through NaN gaps would draw nothing at all."""
    steps, values = np.asarray(steps, dtype=float), _nan(values)
    logged = np.isfinite(values)
    return steps[logged], values[logged]


def _nan(values) -> np.ndarray:
    return np.array([np.nan if v is None else v for v in values], dtype=float)


def _save(fig, path: Path) -> Path:
    fig.tight_layout()
    return write_atomic(path, lambda tmp: fig.savefig(tmp, format="png", dpi=100))
