"""``python -m finetune experiment --config {miniature,quick,PATH.toml} --out DIR``."""

from __future__ import annotations

import argparse


def add_experiment_command(subparsers) -> None:
    parser = subparsers.add_parser(
        "experiment",
        help="methods × seeds: train, evaluate on seen/unseen languages, compare, report",
        description="Prepare the base model once; for each method and seed of the config, "
        "fine-tune, evaluate on seen and unseen languages and measure separability; compare "
        "every method with the baseline (paired bootstrap) and write DIR/results.json and "
        "DIR/report.md. Running it again resumes: finished steps are skipped.")
    parser.add_argument("--config", required=True,
                        help="a shipped config (miniature, quick) or a path to a .toml file")
    parser.add_argument("--out", required=True, help="experiment directory")
    parser.add_argument("--prepare-dir", default=None,
                        help="share prepare's cache between experiments (default: OUT/prepared)")
    parser.add_argument("--quiet", action="store_true", help="no progress output")
    parser.set_defaults(handler=run_command)


def run_command(args: argparse.Namespace) -> int:
    # The miniature's tasks are local files; offline mode keeps `datasets` off the hub,
    # and must be set before anything imports it.
    from eval.running.offline import force_offline

    force_offline()
    from finetune.experiment.config import load_config
    from finetune.experiment.pipeline import run_experiment

    config = load_config(args.config)
    report = run_experiment(config, args.out, prepare_dir=args.prepare_dir,
                            progress=not args.quiet)
    print(f"report: {report}")
    print(f"results: {report.parent / 'results.json'}")
    return 0
