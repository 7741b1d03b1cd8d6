"""Command line: ``python -m simulate run ...`` and ``python -m simulate compare ...``.

``run`` trains the workload with one strategy and writes ``OUT/metrics.json``;
``compare`` runs all five strategies on the same setup and writes a table
(printed, ``compare.md``), a plot (``compare.png``) and ``compare.json``.
Both spawn ``--world-size`` ranks with gloo on this machine, or, started by
``torchrun``, run as this process's rank of the torchrun job (see README.md).
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from .config import RunConfig
from .launch import LaunchError, RankError, under_torchrun
from .strategies import STRATEGIES
from .workload import WorkloadConfig


def _ints(text: str) -> tuple[int, ...]:
    return tuple(int(x) for x in text.split(",") if x)


def _add_setup(p: argparse.ArgumentParser) -> None:
    p.add_argument("--world-size", type=int, default=2)
    p.add_argument("--aggregator", default="mgda", help="any refmoo aggregator name")
    p.add_argument("--partition", default="chunks:4096",
                   help="single | chunks:N | tensor | module[:DEPTH] | ddp[:CAP_MB[:FIRST_MB]]"
                        " | zero[:SIZE] | fsdp2[:UNITS]")
    p.add_argument("--steps", type=int, default=5)
    p.add_argument("--optimizer", default="sgd", choices=["sgd", "adam", "adamw"])
    p.add_argument("--lr", type=float, default=0.1)
    p.add_argument("--momentum", type=float, default=0.0)
    p.add_argument("--model", default="gpt2", choices=["gpt2", "mlp"])
    p.add_argument("--vocab", type=int, default=64)
    p.add_argument("--width", type=int, default=32)
    p.add_argument("--layers", type=int, default=2)
    p.add_argument("--heads", type=int, default=2)
    p.add_argument("--seq-len", type=int, default=16)
    p.add_argument("--batch", type=_ints, default=(4, 4, 4),
                   help="global sequences per language per step, e.g. 8,8,2 (K = 3)")
    p.add_argument("--dtype", default="float32", choices=["float32", "float64"])
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--ordered-reduction", action="store_true",
                   help="reduce by all-to-all + rank-order sum: bitwise equal to the reference "
                        "at any world size, same bytes")
    p.add_argument("--port", type=int, default=0,
                   help="rendezvous port for the spawned ranks (default: a free one)")
    p.add_argument("--timeout", type=float, default=120.0, help="process-group timeout (s)")
    p.add_argument("--no-reference", action="store_true",
                   help="skip the single-process reference (big models)")
    p.add_argument("--out", type=Path, required=True)


def _config(args: argparse.Namespace, strategy: str) -> RunConfig:
    wl = WorkloadConfig(model=args.model, vocab=args.vocab, width=args.width,
                        layers=args.layers, heads=args.heads, seq_len=args.seq_len,
                        batch=args.batch, dtype=args.dtype, seed=args.seed)
    trace = str(args.out / "trace") if getattr(args, "trace", False) else None
    return RunConfig(strategy=strategy, aggregator=args.aggregator, partition=args.partition,
                     world_size=args.world_size, steps=args.steps, optimizer=args.optimizer,
                     lr=args.lr, momentum=args.momentum, workload=wl, timeout_s=args.timeout,
                     trace_dir=trace, reference=not args.no_reference,
                     ordered_reduction=args.ordered_reduction)


def _execute(configs: list[RunConfig], port: int = 0) -> list[dict] | None:
    """Metrics for every config (None on the non-zero ranks of a torchrun job)."""
    if under_torchrun():
        from .torchrun import run_torchrun_many

        return run_torchrun_many(configs)
    from .run import run_many

    return run_many(configs, port=port)


def _run(args: argparse.Namespace) -> int:
    results = _execute([_config(args, args.strategy)], args.port)
    if results is None:
        return 0
    m = results[0]
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / "metrics.json").write_text(json.dumps(m, indent=2) + "\n")
    err = m["max_param_error_vs_reference"]
    print(f"{m['strategy']} W={m['world_size']}: {sum(m['bytes_sent_per_rank'].values()):,.0f} "
          f"bytes/step/rank (predicted {sum(m['bytes_predicted_per_rank'].values()):,.0f}), "
          f"step {m['step_time_s']:.4f} s, max |θ−θ_ref| = {err}; "
          f"wrote {args.out / 'metrics.json'}")
    return 0 if m["accounting_exact"] and m.get("within_tolerance") is not False else 1


def _compare(args: argparse.Namespace) -> int:
    from . import compare

    results = _execute([_config(args, s) for s in STRATEGIES], args.port)
    if results is None:
        return 0
    print(compare.setup_line(results[0]))
    print(compare.text_table(results))
    paths = compare.write(results, args.out)
    print("wrote " + ", ".join(str(p) for p in paths.values()))
    return 0


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="python -m simulate", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = parser.add_subparsers(dest="command", required=True)
    run = sub.add_parser("run", help="train with one strategy; write OUT/metrics.json")
    run.add_argument("--strategy", default="bucket", choices=list(STRATEGIES))
    run.add_argument("--trace", action="store_true", help="also write a trace to OUT/trace")
    _add_setup(run)
    run.set_defaults(func=_run)
    cmp_ = sub.add_parser("compare", help="all five strategies on one setup: table and plot")
    _add_setup(cmp_)
    cmp_.set_defaults(func=_compare)
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        return args.func(args)
    except (RankError, LaunchError) as err:
        print(f"error: {err}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
