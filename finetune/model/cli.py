"""``python -m finetune prepare --out DIR [--languages ...] [--seed 0]``."""

from __future__ import annotations

import argparse

from finetune.data.corpus import DEFAULT_LANGUAGES


def add_prepare_command(subparsers) -> argparse.ArgumentParser:
    parser = subparsers.add_parser(
        "prepare",
        help="build the embedded miniature: corpus, lm-eval tasks, pretrained base model",
        description="Write DIR/data (fine-tuning rows per language), DIR/tasks (lm-eval "
                    "include path) and DIR/base (pretrained tiny Llama + tokenizer). "
                    "Cached by content: the same command again does nothing.")
    parser.add_argument("--out", required=True, metavar="DIR", help="output directory")
    parser.add_argument("--languages", nargs="+", default=list(DEFAULT_LANGUAGES),
                        metavar="LANG", help="languages of the corpus and the base model "
                        f"(default: {' '.join(DEFAULT_LANGUAGES)})")
    parser.add_argument("--seed", type=int, default=0, help="seed of the split and the model")
    parser.add_argument("--quiet", action="store_true", help="no progress bar")
    parser.set_defaults(handler=_run)
    return parser


def _run(args: argparse.Namespace) -> int:
    from finetune.model.prepare import prepare

    prepared = prepare(args.out, args.languages, args.seed, progress=not args.quiet)
    print(f"data:   {prepared.data}\nbase:   {prepared.base}\ntasks:  {prepared.tasks}\n"
          f"benchmarks: {' '.join(prepared.benchmarks)}")
    return 0
