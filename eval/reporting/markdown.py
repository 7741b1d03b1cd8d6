"""Markdown renderings of a run summary, a comparison and a separability analysis."""

from __future__ import annotations

from eval.languages.codes import language_name

SIGNIFICANCE_LEVEL = 0.05


def run_report(summary: dict, plots: dict[str, str] | None = None) -> str:
    agg, err = summary["aggregates"], summary["aggregates_stderr"]
    lines = [
        f"# Evaluation: {summary['label']}",
        "",
        f"- checkpoint: `{summary['checkpoint']}`",
        f"- benchmarks: {', '.join(summary['benchmarks'])}",
        f"- seen: {_langs(summary['seen'])}",
        f"- unseen: {_langs(summary['unseen'])}",
        f"- settings: {_settings(summary['settings'])}",
        "",
    ]
    lines += _coverage_warnings(summary)
    lines += [
        "## Averages",
        "",
        "Macro averages: each language weighs the same, each benchmark within a language too.",
        "",
        "| split | score | stderr |",
        "| --- | --- | --- |",
        f"| seen | {_num(agg['seen'])} | {_num(err['seen'])} |",
        f"| unseen | {_num(agg['unseen'])} | {_num(err['unseen'])} |",
        "",
        "## Per benchmark",
        "",
        "| benchmark | seen | unseen | all |",
        "| --- | --- | --- | --- |",
    ]
    for bench, row in agg["per_benchmark"].items():
        lines.append(
            f"| {bench} | {_num(row['seen'])} | {_num(row['unseen'])} | {_num(row['all'])} |"
        )
    lines += [
        "",
        "## Per language",
        "",
        "| language | split | score | stderr |",
        "| --- | --- | --- | --- |",
    ]
    for lang, split in _in_split_order(summary, agg["per_language"]):
        score = agg["per_language"][lang]
        lines.append(
            f"| {_lang(lang)} | {split} | {_num(score)} | {_num(err['per_language'][lang])} |"
        )
    lines += [
        "",
        "## Units",
        "",
        "| unit | lm-eval task | metric | score | stderr | n |",
        "| --- | --- | --- | --- | --- | --- |",
    ]
    for unit in summary["units"]:
        lines.append(
            f"| {unit['unit']} | `{unit['lm_eval_task']}` | {unit['metric']} | "
            f"{_num(unit['score'])} | {_num(unit['stderr'])} | {unit['n']} |"
        )
    lines += _problems(summary)
    lines += _plot_links(plots)
    return "\n".join(lines) + "\n"


def comparison_report(comparison: dict, plots: dict[str, str] | None = None) -> str:
    base = comparison["baseline"]
    bootstrap = comparison["bootstrap"]
    lines = [f"# Comparison against `{base}`", ""]
    if comparison.get("mismatches"):
        lines += [
            "> **WARNING: these runs were evaluated under different settings; the deltas below",
            "> mix incomparable numbers** (compared with `--allow-mismatch`):",
            *[f"> - {problem}" for problem in comparison["mismatches"]],
            "",
        ]
    lines += [
        f"- seen: {_langs(comparison['seen'])}",
        f"- unseen: {_langs(comparison['unseen'])}",
        f"- significance: {bootstrap['method']}; "
        f"{bootstrap['iterations']} resamples, seed {bootstrap['seed']}; "
        f"`*` marks p ≤ {SIGNIFICANCE_LEVEL}, exactly when the 95% interval excludes 0 "
        "(not corrected for multiple comparisons)",
        "",
        "## What was compared",
        "",
        "| run | checkpoint | settings |",
        "| --- | --- | --- |",
    ]
    for run in comparison["runs"]:
        settings = comparison.get("settings", {}).get(run, {})
        lines.append(f"| {run} | `{comparison['checkpoints'][run]}` | {_settings(settings)} |")
    lines += [
        "",
        "## Deltas",
        "",
        "Both runs averaged on the units they have in common, and the difference:",
        "",
        "| run | seen: base → run | Δ seen [95% CI] | p | unseen: base → run "
        "| Δ unseen [95% CI] | p |",
        "| --- | --- | --- | --- | --- | --- | --- |",
    ]
    for run, delta in comparison["deltas"].items():
        common = delta["on_common_units"]
        row = [run]
        for split in ("seen", "unseen"):
            row += [f"{_num(common[base][split])} → {_num(common[run][split])}",
                    _delta(delta[split]), _p(delta[split])]
        lines.append("| " + " | ".join(row) + " |")
    lines += [
        "",
        "## Averages over each run's own units",
        "",
        "Each run on every unit it finished (a run with other units is not comparable "
        "number for number; the deltas above are):",
        "",
        "| run | seen | unseen |",
        "| --- | --- | --- |",
    ]
    for run in comparison["runs"]:
        agg = comparison["scores"][run]["aggregates"]
        lines.append(f"| {run} | {_num(agg['seen'])} | {_num(agg['unseen'])} |")
    lines += _scores_by_language(comparison)
    for run, delta in comparison["deltas"].items():
        lines += [
            "",
            f"## `{run}` − `{base}`",
            "",
            "| language | Δ [95% CI] | p |",
            "| --- | --- | --- |",
        ]
        for lang, _ in _in_split_order(comparison, delta["per_language"]):
            stats = delta["per_language"][lang]
            lines.append(f"| {_lang(lang)} | {_delta(stats)} | {_p(stats)} |")
        lines += ["", "| benchmark | Δ seen | Δ unseen | Δ all |", "| --- | --- | --- | --- |"]
        for bench, row in delta["per_benchmark"].items():
            lines.append(
                f"| {bench} | {_delta(row['seen'])} | {_delta(row['unseen'])} | "
                f"{_delta(row['all'])} |"
            )
        lines += _unit_deltas(comparison, delta)
        if delta["not_bootstrapped"]:
            lines += ["", "Units without a bootstrap (their averages have no interval):"]
            lines += [f"- {u}: {why}" for u, why in delta["not_bootstrapped"].items()]
        missing = delta["only_in_baseline"] + delta["only_in_run"]
        if missing:
            lines += [
                "",
                f"Units left out (finished in only one of the two runs): {', '.join(missing)}",
            ]
    lines += _plot_links(plots)
    return "\n".join(lines) + "\n"


def _scores_by_language(comparison: dict) -> list[str]:
    """Languages x runs: each run's per-language score (macro over its benchmarks)."""
    runs = comparison["runs"]
    per_language = {run: comparison["scores"][run]["aggregates"]["per_language"]
                    for run in runs}
    present = {lang for scores in per_language.values() for lang in scores}
    lines = [
        "",
        "## Scores per language",
        "",
        "Each run's own per-language score (mean over the benchmarks it finished):",
        "",
        "| language | split | " + " | ".join(runs) + " |",
        "| --- | --- | " + " | ".join("---" for _ in runs) + " |",
    ]
    for lang, split in _in_split_order(comparison, present):
        cells = [_num(per_language[run].get(lang)) for run in runs]
        lines.append(f"| {_lang(lang)} | {split} | " + " | ".join(cells) + " |")
    return lines


def _unit_deltas(comparison: dict, delta: dict) -> list[str]:
    """Languages x benchmarks: the Δ of every unit with its p-value."""
    by_unit = delta["per_unit"]
    benches = sorted({unit_id.split("/", 1)[0] for unit_id in by_unit})
    present = {unit_id.split("/", 1)[1] for unit_id in by_unit}
    lines = [
        "",
        "Per benchmark and language, Δ (p):",
        "",
        "| language | " + " | ".join(benches) + " |",
        "| --- | " + " | ".join("---" for _ in benches) + " |",
    ]
    for lang, _ in _in_split_order(comparison, present):
        cells = []
        for bench in benches:
            stats = by_unit.get(f"{bench}/{lang}")
            if not stats:
                cells.append("")
                continue
            text = f"{stats['delta']:+.4f}"
            if stats["p_value"] is not None:
                text += f" ({stats['p_value']:.3f})"
                if stats["p_value"] <= SIGNIFICANCE_LEVEL:
                    text += " *"
            cells.append(text)
        lines.append(f"| {_lang(lang)} | " + " | ".join(cells) + " |")
    return lines


def headline(comparison: dict) -> list[str]:
    """One line per run: its seen and unseen Δ with interval and p, for the console."""
    lines = []
    for run, delta in comparison["deltas"].items():
        parts = []
        for split in ("seen", "unseen"):
            stats = delta[split]
            parts.append(f"{split} {_delta(stats)} (p {_p(stats)})")
        lines.append(f"{run} − {comparison['baseline']}: " + "; ".join(parts))
    return lines


def _in_split_order(splits: dict, present) -> list[tuple[str, str]]:
    """(language, split) pairs, seen languages first, in the order they were requested."""
    ordered = [(lang, "seen") for lang in splits["seen"]]
    ordered += [(lang, "unseen") for lang in splits["unseen"]]
    return [(lang, split) for lang, split in ordered if lang in present]


def _coverage_warnings(summary: dict) -> list[str]:
    lines = []
    for split in ("seen", "unseen"):
        missing = summary["uncovered"][split]
        if missing:
            lines += [
                f"> **No coverage** for {split} languages {_langs(missing)} in the selected "
                "benchmarks; they are not in any average.",
                "",
            ]
    return lines


def _problems(summary: dict) -> list[str]:
    lines = []
    if summary["failures"]:
        lines += ["", "## Failed units", ""]
        lines += [f"- {f['unit']}: {f['error']}" for f in summary["failures"]]
    if summary["pending"]:
        lines += ["", "## Not evaluated yet", "", ", ".join(summary["pending"])]
    return lines


def _plot_links(plots: dict[str, str] | None) -> list[str]:
    if not plots:
        return []
    lines = ["", "## Plots", ""]
    for title, path in plots.items():
        lines += [f"![{title}]({path})", ""]
    return lines


def _settings(settings: dict) -> str:
    return ", ".join(f"{k}={v}" for k, v in settings.items())


def _langs(tags) -> str:
    return ", ".join(_lang(tag) for tag in tags) or "none"


def _lang(tag: str) -> str:
    return f"{tag} ({language_name(tag)})"


def _num(value) -> str:
    return "–" if value is None else f"{value:.4f}"


def _delta(stats: dict | None) -> str:
    if not stats:
        return "–"
    text = f"{stats['delta']:+.4f}"
    if stats["ci_low"] is not None:
        text += f" [{stats['ci_low']:+.4f}, {stats['ci_high']:+.4f}]"
    if stats["p_value"] is not None and stats["p_value"] <= SIGNIFICANCE_LEVEL:
        text += " *"
    return text


def _p(stats: dict | None) -> str:
    return "–" if not stats or stats["p_value"] is None else f"{stats['p_value']:.4f}"


def separability_report(results: dict, comparisons: dict | None = None, baseline: str = "") -> str:
    """The per-layer table of every checkpoint, then each one's test against the baseline."""
    any_result = next(iter(results.values()))
    lines = [
        "# Language separability per layer",
        "",
        f"- languages: {', '.join(any_result['languages'])}; "
        f"{any_result['n_sentences']} sentences in all",
        f"- probe chance: {any_result['probe_chance']:.3f}; language-specific dimension: "
        f"eta² >= {any_result['threshold']} (eta² expected with no language effect: "
        f"{any_result['eta2_null']:.3f})",
        "",
        "- intervals: 95 % bootstrap over sentences (every translation of a sentence "
        "resampled together); they say how much a measure moves on another sample of "
        "sentences this size",
        "",
        "| checkpoint | layer | silhouette [95% CI] | probe acc [95% CI] | lang-specific dims "
        "| fraction |",
        "| --- | --- | --- | --- | --- | --- |",
    ]
    for label, result in results.items():
        for row in result["layers"]:
            lines.append(
                f"| {label} | {row['layer']} | {_with_ci(row, 'silhouette')} | "
                f"{_with_ci(row, 'probe_accuracy')} | {row['language_specific_dims']} | "
                f"{row['language_specific_fraction']:.4f} |"
            )
    for label, rows in (comparisons or {}).items():
        lines += [
            "",
            f"## `{label}` − `{baseline}`",
            "",
            "Paired bootstrap over sentences; `*` marks p ≤ 0.05 (the interval excludes 0).",
            "",
            "| layer | Δ silhouette [95% CI] | p | Δ probe acc [95% CI] | p |",
            "| --- | --- | --- | --- | --- |",
        ]
        for row in rows:
            cells = []
            for key in ("silhouette", "probe_accuracy"):
                stats = row[key]
                star = " *" if stats["p_value"] <= 0.05 else ""
                cells += [f"{stats['delta']:+.4f} [{stats['ci_low']:+.4f}, "
                          f"{stats['ci_high']:+.4f}]{star}", f"{stats['p_value']:.4f}"]
            lines.append(f"| {row['layer']} | " + " | ".join(cells) + " |")
    lines += ["", "![separability per layer](separability.png)", ""]
    return "\n".join(lines)


def _with_ci(row: dict, key: str) -> str:
    interval = row.get(f"{key}_ci")
    text = f"{row[key]:.4f}"
    return text if not interval else text + f" [{interval[0]:.4f}, {interval[1]:.4f}]"
