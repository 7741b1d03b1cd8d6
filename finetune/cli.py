"""``python -m finetune {prepare,train,experiment}``: each command's arguments live beside
the code that runs it; this module only dispatches."""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence


def build_parser() -> argparse.ArgumentParser:
    from finetune.experiment.cli import add_experiment_command
    from finetune.model.cli import add_prepare_command
    from finetune.train.cli import add_train_command

    parser = argparse.ArgumentParser(
        prog="python -m finetune",
        description="Multilingual fine-tuning with standard, full-vector and bucket-level MOO.")
    commands = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    add_prepare_command(commands)
    add_train_command(commands)
    add_experiment_command(commands)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Each ``add_*_command`` sets ``handler``: a function of the parsed arguments that
    returns the exit status. Errors in the user's input are reported in one line."""
    _tell_deepspeed_the_device()
    args = build_parser().parse_args(argv)
    from finetune.errors import FinetuneError

    try:
        return int(args.handler(args) or 0)
    except FinetuneError as error:
        print(f"error: {error}", file=sys.stderr)
        return 2


def _tell_deepspeed_the_device() -> None:
    """Without CUDA the trainer runs on the CPU (``finetune.train.distributed``); say so to
    DeepSpeed, which accelerate imports whenever a model is saved and which otherwise
    guesses, then warns "Setting accelerator to CPU" on every command. A value the user
    set is kept."""
    import os

    if "DS_ACCELERATOR" not in os.environ:
        import torch

        if not torch.cuda.is_available():
            os.environ["DS_ACCELERATOR"] = "cpu"
