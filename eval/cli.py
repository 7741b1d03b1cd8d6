"""Command line: ``python -m eval {languages,run,compare,separability,local-suite}``.

Heavy libraries (torch, transformers, lm_eval, datasets) are imported inside the command
handlers, after ``--offline`` has had the chance to set the hub variables.
"""

from __future__ import annotations

import argparse
import json
import logging
import sys
from collections.abc import Sequence
from pathlib import Path


def main(argv: Sequence[str] | None = None) -> int:
    parser = _parser()
    args = parser.parse_args(argv)
    logging.basicConfig(
        level=logging.INFO if args.verbose else logging.WARNING,
        format="%(levelname)s %(name)s: %(message)s",
    )
    if getattr(args, "offline", False):
        from eval.running.offline import force_offline

        force_offline()
    from eval.running.checkpoints import CheckpointError
    from eval.running.hub import HubUnreachable
    from eval.running.store import RunSettingsMismatch
    from eval.suggestions import UnknownNameError

    try:
        return args.handler(args)
    except (
        UnknownNameError,
        CheckpointError,
        RunSettingsMismatch,
        HubUnreachable,
        FileNotFoundError,
        ValueError,
    ) as err:
        if args.verbose:  # keep the traceback when asked for details
            raise
        print(f"error: {err}", file=sys.stderr)
        return 2


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="python -m eval", description=__doc__)
    parser.add_argument("-v", "--verbose", action="store_true", help="log progress details")
    commands = parser.add_subparsers(required=True, metavar="command")

    languages = commands.add_parser("languages", help="list benchmark coverage per language")
    _task_source_args(languages)
    languages.add_argument("--benchmark", nargs="+", help="only these benchmarks")
    languages.add_argument("--json", action="store_true", help="machine-readable output")
    languages.set_defaults(handler=_languages)

    run = commands.add_parser("run", help="evaluate one checkpoint on seen and unseen languages")
    run.add_argument("--model", required=True, help="HF checkpoint directory or hub id")
    run.add_argument("--tokenizer", help="tokenizer path if not stored with the model")
    run.add_argument("--seen", nargs="+", required=True, help="languages fine-tuned on")
    run.add_argument(
        "--unseen",
        nargs="+",
        default=["rest"],
        help="unseen languages, or 'rest' (default): every other covered language",
    )
    run.add_argument("--benchmark", nargs="+", help="benchmarks to run (default: all)")
    run.add_argument("--limit", type=float, help="examples per task (<1: a fraction)")
    run.add_argument("--num-fewshot", type=int)
    run.add_argument(
        "--batch-size",
        help="an int, or 'auto' (lm-eval finds the largest that fits); default: auto on "
        "GPUs, 1 on cpu/mps",
    )
    run.add_argument(
        "--apply-chat-template",
        action="store_true",
        help="wrap each prompt in the tokenizer's chat template (instruction-tuned models; "
        "few-shot examples become turns)",
    )
    run.add_argument(
        "--system-instruction", help="system message put before every prompt"
    )
    run.add_argument(
        "--max-length", type=int, help="context cap in tokens (default: the model's own)"
    )
    run.add_argument(
        "--gen-kwargs",
        help="generation settings for generative tasks, e.g. 'temperature=0,max_gen_toks=256'",
    )
    run.add_argument(
        "--cache-requests",
        action="store_true",
        help="let lm-eval cache each task's built requests (a rerun skips dataset processing)",
    )
    run.add_argument(
        "--use-cache",
        metavar="PATH",
        help="lm-eval's SQLite cache of model answers (PATH_rank<N>.db); one per checkpoint",
    )
    run.add_argument("--seed", type=int, default=1234)
    run.add_argument("--label", help="name of this run in reports (default: the out dir name)")
    run.add_argument("--out", required=True, help="run directory (resumed if it exists)")
    _model_placement_args(run)
    _task_source_args(run)
    run.set_defaults(handler=_run)

    prefetch = commands.add_parser(
        "prefetch", help="download the datasets of a plan, for nodes that run with --offline")
    prefetch.add_argument("--benchmark", nargs="+", help="benchmarks (default: all)")
    prefetch.add_argument("--languages", nargs="+", required=True,
                          help="languages whose datasets to fetch, or 'rest': all covered")
    _task_source_args(prefetch)
    prefetch.set_defaults(handler=_prefetch)

    compare = commands.add_parser("compare", help="deltas and paired bootstrap between runs")
    compare.add_argument("runs", nargs="+", help="run directories")
    compare.add_argument("--baseline", required=True, help="label of the baseline run")
    compare.add_argument("--iterations", type=int, default=10_000)
    compare.add_argument("--seed", type=int, default=0)
    compare.add_argument("--out", required=True)
    compare.add_argument(
        "--allow-mismatch",
        action="store_true",
        help="compare runs evaluated under different settings (few-shot, limit, chat "
        "template, dtype, benchmarks); the report then opens with a warning",
    )
    compare.set_defaults(handler=_compare)

    separability = commands.add_parser("separability", help="language separability per layer")
    separability.add_argument("--model", nargs="+", required=True, metavar="LABEL=PATH")
    separability.add_argument(
        "--parallel-file", help="JSONL of {language: sentence}; default: bundled corpus"
    )
    separability.add_argument(
        "--parallel-dir",
        help="a larger local parallel corpus, one file per language: FLORES-style "
        "(eng_Latn.devtest, a sentence per line) or Belebele-style (eng_Latn.jsonl)",
    )
    separability.add_argument(
        "--bootstrap-iterations", type=int, default=1000,
        help="resamples of sentences for intervals and the between-checkpoint test (0: none)",
    )
    separability.add_argument(
        "--baseline", help="label the other checkpoints are tested against (default: first)"
    )
    separability.add_argument("--languages", nargs="+", help="subset of the parallel languages")
    separability.add_argument(
        "--threshold",
        type=float,
        default=0.5,
        help="eta² above which a dimension counts as language-specific",
    )
    separability.add_argument("--seed", type=int, default=0)
    separability.add_argument("--batch-size", type=int, default=16)
    separability.add_argument("--out", required=True)
    separability.add_argument("--offline", action="store_true")
    _model_placement_args(separability)
    separability.set_defaults(handler=_separability)

    suite = commands.add_parser("local-suite", help="write the offline task suite (YAML+JSONL)")
    suite.add_argument("dest")
    suite.set_defaults(handler=_local_suite)
    return parser


def _task_source_args(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--include-path", nargs="+", default=[], help="local task config dirs")
    parser.add_argument(
        "--local-suite", metavar="DIR", help="write the bundled offline suite to DIR and include it"
    )
    parser.add_argument(
        "--no-defaults",
        action="store_true",
        help="skip lm-eval's built-in tasks (fast; local tasks only)",
    )
    parser.add_argument(
        "--offline",
        action="store_true",
        help="never contact the hub (set before datasets is imported)",
    )


def _model_placement_args(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--device", default="cpu", help="cpu, cuda, cuda:0, mps, or auto (spread over all GPUs)"
    )
    parser.add_argument("--dtype", default="auto", help="auto, float32, bfloat16 ...")
    parser.add_argument("--revision", help="hub branch, tag or commit of the checkpoint")
    parser.add_argument(
        "--trust-remote-code",
        action="store_true",
        help="run the model code stored with a hub checkpoint",
    )
    parser.add_argument("--peft", metavar="DIR", help="PEFT (LoRA...) adapter applied on top")


def _include_paths(args) -> list[str]:
    from eval.running.local_tasks import write_local_suite

    paths = list(args.include_path)
    if args.local_suite:
        paths.append(str(write_local_suite(args.local_suite)))
    return paths


def _languages(args) -> int:
    from eval.languages.coverage import coverage_listing, format_coverage
    from eval.languages.registry import build_registry, load_task_manager

    registry = build_registry(load_task_manager(_include_paths(args), not args.no_defaults))
    listing = coverage_listing(registry, args.benchmark)
    print(
        json.dumps(listing, indent=2, ensure_ascii=False) if args.json else format_coverage(listing)
    )
    return 0


def _run(args) -> int:
    from eval.api import evaluate_checkpoint
    from eval.languages.selection import EVERY_OTHER
    from eval.running.runner import EvalSettings

    limit = None if args.limit is None else (int(args.limit) if args.limit >= 1 else args.limit)
    settings = EvalSettings(
        limit=limit,
        num_fewshot=args.num_fewshot,
        batch_size=_batch_size(args.batch_size, args.device),
        apply_chat_template=args.apply_chat_template,
        seed=args.seed,
        system_instruction=args.system_instruction,
        gen_kwargs=args.gen_kwargs,
        max_length=args.max_length,
        cache_requests=args.cache_requests,
        use_cache=args.use_cache,
    )
    summary = evaluate_checkpoint(
        args.model,
        tokenizer=args.tokenizer,
        seen=args.seen,
        unseen=EVERY_OTHER if args.unseen == [EVERY_OTHER] else args.unseen,
        benchmarks=args.benchmark,
        out_dir=args.out,
        label=args.label,
        settings=settings,
        device=args.device,
        dtype=args.dtype,
        include_paths=_include_paths(args),
        include_defaults=not args.no_defaults,
        revision=args.revision,
        trust_remote_code=args.trust_remote_code,
        peft=args.peft,
    )
    agg, uncovered = summary["aggregates"], summary["uncovered"]
    print(
        f"seen {_fmt(agg['seen'])}  unseen {_fmt(agg['unseen'])}  "
        f"({len(summary['units'])} units done, {len(summary['failures'])} failed)"
    )
    if uncovered["seen"] or uncovered["unseen"]:
        print(f"no coverage: seen {uncovered['seen']}, unseen {uncovered['unseen']}")
    print(f"report: {Path(args.out) / 'report.md'}")
    return 1 if summary["failures"] else 0


def _batch_size(given: str | None, device: str) -> int | str:
    """lm-eval's "auto" on GPUs; 1 on cpu and mps, where running out of memory kills the
    process instead of raising the error lm-eval's search backs off from."""
    if given is None:
        return 1 if device.split(":")[0] in ("cpu", "mps") else "auto"
    if given == "auto" or given.startswith("auto:"):
        return given
    try:
        return int(given)
    except ValueError:
        raise ValueError(f"--batch-size takes an int or 'auto', got {given!r}") from None


def _prefetch(args) -> int:
    from eval.languages.registry import build_registry, load_task_manager
    from eval.languages.selection import EVERY_OTHER, plan_run
    from eval.running.hub import prefetch

    manager = load_task_manager(_include_paths(args), not args.no_defaults)
    registry = build_registry(manager)
    languages = args.languages
    if languages == [EVERY_OTHER]:  # every language the benchmarks cover, as `run` does
        languages = registry.languages(registry.check_benchmarks(args.benchmark or []) or None)
    plan = plan_run(registry, languages, [], args.benchmark)
    rows = prefetch(plan, manager)
    for row in rows:
        print(f"{row['unit']}: " + (", ".join(row["datasets"]) if row["ok"] else row["error"]))
    failed = [row for row in rows if not row["ok"]]
    print(f"{len(rows) - len(failed)} of {len(rows)} units cached")
    return 1 if failed else 0


def _compare(args) -> int:
    from eval.comparing.compare import compare_runs, load_run
    from eval.reporting.markdown import headline
    from eval.reporting.write import write_comparison_report

    runs = [load_run(path) for path in args.runs]
    comparison = compare_runs(runs, args.baseline, iterations=args.iterations, seed=args.seed,
                              allow_mismatch=args.allow_mismatch)
    for problem in comparison["mismatches"]:
        print(f"WARNING: settings differ: {problem}", file=sys.stderr)
    report = write_comparison_report(args.out, comparison, [run.summary for run in runs])
    for line in headline(comparison):
        print(line)
    print(f"report: {report} (tables as CSV: scores.csv, deltas.csv)")
    return 0


def _separability(args) -> int:
    from functools import partial

    from eval.api import analyse_checkpoints
    from eval.parallel_corpus import SENTENCES
    from eval.running.checkpoints import load_checkpoint
    from eval.separability.corpus import load_parallel_dir, load_parallel_file

    models = dict(_label_path(spec) for spec in args.model)
    if args.parallel_file and args.parallel_dir:
        raise ValueError("give --parallel-file or --parallel-dir, not both")
    if args.parallel_dir:
        parallel = load_parallel_dir(args.parallel_dir)
    else:
        parallel = load_parallel_file(args.parallel_file) if args.parallel_file else dict(SENTENCES)
    if args.languages:
        from eval.languages.codes import canonical_language
        from eval.suggestions import UnknownNameError

        wanted = [canonical_language(code) for code in args.languages]
        for language in wanted:
            if language not in parallel:
                raise UnknownNameError("parallel-corpus language", language, parallel)
        parallel = {language: parallel[language] for language in wanted}
    # Loaders, not loaded models: one checkpoint in memory at a time.
    checkpoints = {
        label: partial(load_checkpoint, path, device=args.device, dtype=args.dtype,
                       revision=args.revision, trust_remote_code=args.trust_remote_code,
                       peft=args.peft)
        for label, path in models.items()
    }
    analyse_checkpoints(
        checkpoints,
        parallel,
        args.out,
        threshold=args.threshold,
        seed=args.seed,
        batch_size=args.batch_size,
        bootstrap_iterations=args.bootstrap_iterations,
        baseline=args.baseline,
    )
    print(f"report: {args.out}/separability.md")
    return 0


def _local_suite(args) -> int:
    from eval.running.local_tasks import write_local_suite

    print(write_local_suite(args.dest))
    return 0


def _label_path(spec: str) -> tuple[str, str]:
    label, sep, path = spec.partition("=")
    if not sep or not label or not path:
        raise ValueError(f"--model takes LABEL=PATH, got {spec!r}")
    return label, path


def _fmt(value) -> str:
    return "–" if value is None else f"{value:.4f}"
