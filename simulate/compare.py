"""All five strategies on one setup: a table (printed and Markdown) and a plot."""

from __future__ import annotations

import json
from collections.abc import Sequence
from pathlib import Path
from typing import Any

COLUMNS = ("strategy", "bytes/step measured", "bytes/step predicted", "wire bytes/step",
           "grad mem/rank (max)", "step time (s)", "max |θ−θ_ref|", "exact")


def _mib(x: float) -> str:
    return f"{x / 2**20:.3f} MiB"


def rows(results: Sequence[dict[str, Any]]) -> list[list[str]]:
    out = []
    for m in results:
        err = m.get("max_param_error_vs_reference")
        if err is None:
            exact = "-"
        elif m.get("bitwise_expected"):
            exact = "bitwise" if m.get("bitwise_equal_to_reference") else "NOT bitwise"
        elif m.get("within_tolerance") is None:
            exact = "no bound"
        elif not m["within_tolerance"]:
            exact = f"OVER tol {m['tolerance']:.1e}"
        elif not m.get("tolerance_meaningful"):
            exact = f"tol {m['tolerance']:.1e} > 1% of movement: no useful bound"
        else:
            exact = f"≤ tol {m['tolerance']:.1e} ({m['tolerance'] / m['param_movement']:.1e} " \
                "of movement)"
        out.append([
            m["strategy"],
            _mib(sum(m["bytes_sent_per_rank"].values())),
            _mib(sum(m["bytes_predicted_per_rank"].values())),
            _mib(sum(m["wire_bytes_per_rank"].values())),
            _mib(max(m["grad_peak_bytes_per_rank"])),
            f"{m['step_time_s']:.4f}",
            "-" if err is None else f"{err:.2e}",
            exact,
        ])
    return out


def text_table(results: Sequence[dict[str, Any]]) -> str:
    table = [list(COLUMNS)] + rows(results)
    widths = [max(len(r[i]) for r in table) for i in range(len(COLUMNS))]
    lines = ["  ".join(c.ljust(w) for c, w in zip(r, widths, strict=True)) for r in table]
    lines.insert(1, "  ".join("-" * w for w in widths))
    return "\n".join(lines)


def markdown_table(results: Sequence[dict[str, Any]]) -> str:
    lines = ["| " + " | ".join(COLUMNS) + " |", "|" + "---|" * len(COLUMNS)]
    lines += ["| " + " | ".join(r) + " |" for r in rows(results)]
    return "\n".join(lines)


def setup_line(m: dict[str, Any]) -> str:
    return (f"W = {m['world_size']}, K = {m['languages']}, D = {m['dim']:,} ({m['dtype']}), "
            f"partition `{m['partition']}` ({m['buckets']} buckets), aggregator "
            f"{m.get('aggregator_requested', m['aggregator'])}, {m['steps']} steps")


def plot(results: Sequence[dict[str, Any]], path: Path) -> None:
    from matplotlib.figure import Figure  # no pyplot: no backend switched in the caller

    names = [m["strategy"] for m in results]
    x = list(range(len(names)))
    fig = Figure(figsize=(14, 4))
    axes = fig.subplots(1, 3)
    ax = axes[0]
    issued = [sum(m["bytes_sent_per_rank"].values()) / 2**20 for m in results]
    wire = [sum(m["wire_bytes_per_rank"].values()) / 2**20 for m in results]
    formula = [sum(m["bytes_predicted_per_rank"].values()) / 2**20 for m in results]
    ax.bar([i - 0.2 for i in x], issued, 0.4, color="tab:blue", label="issued (ring)")
    ax.bar([i + 0.2 for i in x], wire, 0.4, color="tab:gray", label="on the wire")
    ax.scatter([i - 0.2 for i in x], formula, color="tab:red", marker="_", s=300, zorder=3,
               label="formula")
    ax.legend(fontsize=8)
    ax.set_title("communication per rank per step (MiB)", fontsize=10)
    panels = [("gradient memory per rank (MiB)",
               [max(m["grad_peak_bytes_per_rank"]) / 2**20 for m in results]),
              ("step time (s)", [m["step_time_s"] for m in results])]
    for ax, (title, values) in zip(axes[1:], panels, strict=True):
        ax.bar(x, values, color="tab:blue")
        ax.set_title(title, fontsize=10)
    for ax in axes:
        ax.set_xticks(x, names, rotation=30, ha="right", fontsize=8)
    fig.suptitle(setup_line(results[0]), fontsize=9)
    fig.tight_layout()
    fig.savefig(path, dpi=120)


def write(results: Sequence[dict[str, Any]], out: Path) -> dict[str, Path]:
    out.mkdir(parents=True, exist_ok=True)
    paths = {"json": out / "compare.json", "markdown": out / "compare.md",
             "png": out / "compare.png"}
    paths["json"].write_text(json.dumps(list(results), indent=2) + "\n")
    paths["markdown"].write_text(
        f"# Strategy comparison\n\n{setup_line(results[0])}.\n\n{markdown_table(results)}\n")
    plot(results, paths["png"])
    return paths
