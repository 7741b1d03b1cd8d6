"""``python -m finetune train``: the arguments, mapped one to one onto :class:`TrainConfig`."""

from __future__ import annotations

import argparse
import json
import os

from .config import DTYPES, ENGINES, METHODS, OPTIMIZERS, TrainConfig


def add_train_command(subparsers) -> None:
    p = subparsers.add_parser(
        "train", help="fine-tune with standard, full-vector or bucket-level MOO",
        description="Fine-tune a causal LM on several languages. Under `torchrun "
                    "--nproc-per-node N -m finetune train ... --engine ddp|fsdp2|deepspeed` "
                    "each process is one rank. Running the same command again resumes.")
    p.add_argument("--model", required=True, help="local HF model directory or hub id")
    p.add_argument("--data", required=True, help="directory with one folder per language, "
                   "or a datasets spec file")
    p.add_argument("--languages", nargs="+", required=True)
    p.add_argument("--out", required=True)
    p.add_argument("--method", default="standard",
                   help=f"one of {', '.join(METHODS)} (default: standard)")
    p.add_argument("--aggregator", default="mgda")
    p.add_argument("--aggregator-kwargs", type=json.loads, default={},
                   help='JSON, e.g. \'{"c": 0.4}\' for cagrad')
    p.add_argument("--partition", default="tensor",
                   help="single, chunks:N, tensor, module[:DEPTH], ddp[:CAP_MB[:FIRST_MB]], "
                        "zero[:SIZE], fsdp2[:UNIT,...] (default: tensor)")
    p.add_argument("--partition-world-size", type=int, default=None,
                   help="cut zero/fsdp2 buckets for this many ranks (default: the run's)")
    p.add_argument("--steps", type=int, required=True)
    p.add_argument("--save-every", type=int, default=None)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--optimizer", default="adamw", help=f"one of {', '.join(OPTIMIZERS)}")
    p.add_argument("--lr", type=float, default=1e-3)
    p.add_argument("--weight-decay", type=float, default=0.0)
    p.add_argument("--warmup-steps", type=int, default=0)
    p.add_argument("--min-lr-ratio", type=float, default=0.0)
    p.add_argument("--batch-size", type=int, default=8,
                   help="global examples per language per step")
    p.add_argument("--micro-batch-size", type=int, default=None,
                   help="examples per backward (gradient accumulation); default: B/W")
    p.add_argument("--max-length", type=int, default=128)
    p.add_argument("--chat-template", action="store_true")
    p.add_argument("--engine", default="single", help=f"one of {', '.join(ENGINES)}")
    p.add_argument("--dtype", default="float32", help=f"one of {', '.join(DTYPES)}")
    p.add_argument("--diagnostics-every", type=int, default=1)
    p.add_argument("--keep-checkpoints", type=int, default=2)
    p.add_argument("--no-progress", action="store_true")
    p.set_defaults(handler=_run)


def config_from_args(args: argparse.Namespace) -> TrainConfig:
    return TrainConfig(
        model=args.model, data=args.data, languages=tuple(args.languages), out=args.out,
        method=args.method, aggregator=args.aggregator,
        aggregator_kwargs=args.aggregator_kwargs, partition=args.partition,
        partition_world_size=args.partition_world_size, steps=args.steps,
        save_every=args.save_every, seed=args.seed, optimizer=args.optimizer, lr=args.lr,
        weight_decay=args.weight_decay, warmup_steps=args.warmup_steps,
        min_lr_ratio=args.min_lr_ratio, batch_size=args.batch_size,
        micro_batch_size=args.micro_batch_size, max_length=args.max_length,
        chat_template=args.chat_template, engine=args.engine, dtype=args.dtype,
        diagnostics_every=args.diagnostics_every, keep_checkpoints=args.keep_checkpoints)


def _run(args: argparse.Namespace) -> int:
    from .loop import train

    result = train(config_from_args(args), progress=not args.no_progress)
    if os.environ.get("RANK", "0") == "0":
        print(f"final model: {result.final}")
    return 0
