"""report.md: the experiment's tables and figures, from results.json and the training logs.

The verdict lines are computed from the numbers (which method is ahead, whether its
interval against the baseline excludes zero); nothing in the text assumes a winner.
"""

from __future__ import annotations

from pathlib import Path

from eval.atomic_io import write_text_atomic
from finetune.experiment import figures
from finetune.experiment.layout import Layout
from finetune.experiment.logs import mean_series, read_log, series


def write_report(results: dict, layout: Layout) -> Path:
    """Write the figures and report.md into the experiment directory; return its path."""
    curves = {
        name: mean_series([series(read_log(Path(run["train_dir"]) / "log.jsonl"))
                           for run in results["runs"] if run["method"] == name])
        for name in results["methods"]
    }
    made = {
        "scores": figures.scores(results, layout.plots / "scores.png"),
        "loss": figures.loss_curves(curves, layout.plots / "loss_curves.png"),
        "separability": figures.separability(results, layout.plots / "separability.png"),
        "conflict": figures.conflict(curves, layout.plots / "conflict.png"),
        "stationarity": figures.stationarity(curves, layout.plots / "phi.png"),
        "cost": figures.cost(results, layout.plots / "cost.png"),
    }
    links = {k: p.relative_to(layout.root).as_posix() for k, p in made.items() if p is not None}
    return write_text_atomic(layout.report_path, render(results, links))


def render(results: dict, plots: dict[str, str]) -> str:
    settings = results["settings"]
    train = settings["train"]
    lines = [
        f"# Fine-tuning experiment: `{results['config']}`",
        "",
        f"- seen (fine-tuned on): {', '.join(results['languages']['seen'])}; unseen: "
        f"{', '.join(results['languages']['unseen'])}; the base model was pretrained on "
        f"{', '.join(results['languages']['pretrain'])}",
        f"- benchmarks: {', '.join(results['benchmarks'])}; scores in [0, 1], macro "
        "averages over languages (eval's definitions)",
        f"- training: {', '.join(f'{k}={v}' for k, v in train.items()) or 'trainer defaults'}; "
        f"seeds {', '.join(map(str, settings['seeds']))}, all from the same base model",
        f"- intervals: {results['intervals']}",
        "",
        "## Scores",
        "",
        _score_table(results),
        "",
        *_verdict(results),
        "",
    ]
    lines += _figure(plots, "scores", "seen and unseen scores per method")
    lines += ["## Per language", "", _language_table(results), ""]
    lines += ["## Training", ""]
    lines += _figure(plots, "loss", "per-language training loss, mean over seeds")
    lines += _figure(plots, "conflict",
                     "fraction of per-tensor buckets in conflict (some pair of languages "
                     "with a negative cosine), per layer, mean over seeds")
    lines += _figure(plots, "stationarity", "φ and φ_P over training, mean over seeds")
    lines += ["## Separability by layer", "",
              "Language separability of hidden states on parallel sentences (eval's "
              "measures; layer 0 = embeddings), mean over seeds.", "",
              _separability_table(results), ""]
    lines += _figure(plots, "separability", "separability by layer")
    lines += ["## Cost", "", "Median over steps (the first step pays one-off costs), median "
              "over seeds; peak gradient memory over the run.", "", _cost_table(results), ""]
    lines += _figure(plots, "cost", "step time and gradient memory per method")
    lines += ["## Runs", "", _runs_table(results), ""]
    return "\n".join(lines)


def _score_table(results: dict) -> str:
    baseline = results["baseline"]
    rows = ["| method | what | seen [CI] | unseen [CI] | "
            f"Δ seen vs {baseline} [CI] p | Δ unseen vs {baseline} [CI] p |",
            "| --- | --- | --- | --- | --- | --- |",
            f"| base | before fine-tuning | {_num(results['base']['seen'])} | "
            f"{_num(results['base']['unseen'])} | | |"]
    for name, method in results["methods"].items():
        versus = method["vs_baseline"] or {}
        rows.append(
            f"| {name} | {method['description']} | "
            f"{_num(method['seen'])} {_ci(method['seen_ci'])} | "
            f"{_num(method['unseen'])} {_ci(method['unseen_ci'])} | "
            f"{_delta(versus.get('seen'))} | {_delta(versus.get('unseen'))} |")
    return "\n".join(rows)


def _verdict(results: dict) -> list[str]:
    """Which method is ahead on seen and on unseen languages, and whether it is resolved.

    Methods tied at the top are all named: naming the first of them (the baseline, by the
    config's order) would declare a winner the numbers do not have."""
    lines = []
    for split in ("seen", "unseen"):
        scores = {name: method[split] for name, method in results["methods"].items()
                  if method[split] is not None}
        if not scores:
            lines.append(f"- **{split}**: no scores")
            continue
        top = max(scores.values())
        tied = [name for name, score in scores.items() if score == top]
        if len(tied) > 1:
            names = ", ".join(f"`{name}`" for name in tied)
            text = f"- **{split}**: highest mean score {_num(top)}, tied between {names}"
            if results["baseline"] in tied:
                text += ": no method is ahead of the baseline"
            lines.append(text)
            continue
        name, best = tied[0], results["methods"][tied[0]]
        text = f"- **{split}**: highest mean score: `{name}` ({_num(top)})"
        if best["vs_baseline"] is not None:
            stats = best["vs_baseline"][split]
            resolved = (stats and stats["ci_low"] is not None
                        and (stats["ci_low"] > 0 or stats["ci_high"] < 0))
            text += (f"; against `{results['baseline']}` {_delta(stats)}: "
                     + ("the interval excludes 0" if resolved
                        else "the interval includes 0, so the evaluation set does not "
                             "separate them"))
        else:
            text += " (the baseline itself)"
        lines.append(text)
    return lines


def _language_table(results: dict) -> str:
    names = list(results["methods"])
    header = "| language | split | base | " + " | ".join(names) + " |"
    rows = [header, "|" + " --- |" * (3 + len(names))]
    for split in ("seen", "unseen"):
        for lang in results["languages"][split]:
            cells = [_num(results["base"]["per_language"].get(lang))]
            cells += [_num(results["methods"][n]["per_language"].get(lang)) for n in names]
            rows.append(f"| {lang} | {split} | " + " | ".join(cells) + " |")
    return "\n".join(rows)


def _separability_table(results: dict) -> str:
    entries = {"base": results["base"]["separability"]}
    entries.update({n: m["separability"] for n, m in results["methods"].items()})
    rows = ["| checkpoint | layer | silhouette | probe accuracy | language-specific dims |",
            "| --- | --- | --- | --- | --- |"]
    for name, layers in entries.items():
        for row in layers:
            rows.append(f"| {name} | {row['layer']} | {_num(row['silhouette'])} | "
                        f"{_num(row['probe_accuracy'])} | "
                        f"{_num(row['language_specific_fraction'])} |")
    return "\n".join(rows)


def _cost_table(results: dict) -> str:
    rows = ["| method | backward ms | aggregate ms | optimizer ms | step ms | "
            "aggregate / step | gradient memory MiB |",
            "| --- | --- | --- | --- | --- | --- | --- |"]
    for name, method in results["methods"].items():
        t = method["time"]
        share = (t["aggregate"] / t["step"]) if t.get("aggregate") is not None and t.get("step") \
            else None
        memory = method["grad_memory_bytes"]
        rows.append(f"| {name} | {_ms(t.get('backward'))} | {_ms(t.get('aggregate'))} | "
                    f"{_ms(t.get('optimizer'))} | {_ms(t.get('step'))} | "
                    f"{'–' if share is None else f'{share:.1%}'} | "
                    f"{'–' if memory is None else f'{memory / 2**20:.2f}'} |")
    return "\n".join(rows)


def _runs_table(results: dict) -> str:
    rows = ["| method | seed | seen | unseen | training s | checkpoint |",
            "| --- | --- | --- | --- | --- | --- |"]
    for run in results["runs"]:
        seconds = run["train_seconds"]
        rows.append(f"| {run['method']} | {run['seed']} | {_num(run['seen'])} | "
                    f"{_num(run['unseen'])} | {'–' if seconds is None else f'{seconds:.1f}'} | "
                    f"`{run['checkpoint']}` |")
    return "\n".join(rows)


def _figure(plots: dict[str, str], key: str, caption: str) -> list[str]:
    if key not in plots:
        return [f"({caption}: not logged by these runs)", ""]
    return [f"![{caption}]({plots[key]})", ""]


def _num(value) -> str:
    return "–" if value is None else f"{value:.4f}"


def _ms(value) -> str:
    return "–" if value is None else f"{value * 1e3:.1f}"


def _ci(interval) -> str:
    return "" if not interval else f"[{interval[0]:.4f}, {interval[1]:.4f}]"


def _delta(stats: dict | None) -> str:
    """``+0.0125 [-0.0100, +0.0350] p=0.31``; – without a baseline comparison.

    >>> _delta({"delta": 0.0125, "ci_low": -0.01, "ci_high": 0.035, "p_value": 0.31})
    '+0.0125 [-0.0100, +0.0350] p=0.310'
    """
    if not stats:
        return "–"
    text = f"{stats['delta']:+.4f}"
    if stats["ci_low"] is not None:
        text += f" [{stats['ci_low']:+.4f}, {stats['ci_high']:+.4f}] p={stats['p_value']:.3f}"
    return text
