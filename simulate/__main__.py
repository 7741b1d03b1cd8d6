"""Command line: ``python -m simulate run ...`` and ``python -m simulate compare ...``.

``run`` trains the workload with one strategy and writes ``OUT/metrics.json``;
``compare`` runs all five strategies on the same setup and writes a table
(printed, ``compare.md``), a plot (``compare.png``) and ``compare.json``.
Both spawn ``--world-size`` ranks with gloo on this machine, or, started by
``torchrun``, run as this process's rank of the torchrun job (see README.md).
The settings, the partition and ``--out`` are checked before any rank starts.

exit status:
  0  every check passed (or --no-reference: nothing to check)
  1  a check failed: parameters outside the tolerance (or not bitwise where
     bitwise is expected), or communication accounting not exact
  2  error: bad settings or --out, a rank failed or hung, the port is taken
  3  the run finished but its check cannot mean anything: no tolerance for
     these settings, or one above 1% of the parameters' total movement
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from .config import RunConfig
from .launch import LaunchError, RankError, under_torchrun
from .preflight import ConfigError
from .strategies import STRATEGIES
from .workload import WorkloadConfig

EXIT_OK, EXIT_FAILED, EXIT_ERROR, EXIT_NOT_MEANINGFUL = 0, 1, 2, 3


def _ints(text: str) -> tuple[int, ...]:
    try:
        return tuple(int(x) for x in text.split(",") if x)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r}: expected integers separated by commas"
                                         ) from None


def _add_setup(p: argparse.ArgumentParser) -> None:
    p.add_argument("--world-size", type=int, default=2)
    p.add_argument("--aggregator", default="mgda", help="any refmoo aggregator name")
    p.add_argument("--partition", default="chunks:4096",
                   help="single | chunks:N | tensor | module[:DEPTH] | ddp[:CAP_MB[:FIRST_MB]]"
                        " | zero[:SIZE] | fsdp2[:UNITS], where UNITS are comma-separated "
                        "submodule names as in model.named_modules() (e.g. "
                        "transformer.h.0,transformer.h.1; default: the transformer blocks)")
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


def _preflight(args: argparse.Namespace, configs: list[RunConfig]) -> None:
    """Everything checkable before the ranks start (ConfigError); warnings to stderr."""
    import os

    from .preflight import check_out, preflight

    rank0 = True
    if under_torchrun():  # the world is torchrun's, whatever --world-size says
        configs = [c.with_(world_size=int(os.environ["WORLD_SIZE"])) for c in configs]
        rank0 = os.environ["RANK"] == "0"
    warnings: list[str] = []
    for cfg in configs:
        warnings += [w for w in preflight(cfg) if w not in warnings]
    check_out(args.out)
    for w in warnings if rank0 else []:
        print(f"warning: {w}", file=sys.stderr)


def _execute(configs: list[RunConfig], port: int = 0) -> list[dict] | None:
    """Metrics for every config (None on the non-zero ranks of a torchrun job)."""
    if under_torchrun():
        from .torchrun import run_torchrun_many

        return run_torchrun_many(configs)
    from .run import run_many

    return run_many(configs, port=port)


def _exit_status(results: list[dict]) -> int:
    status = {m["check"] for m in results}
    if "failed" in status:
        return EXIT_FAILED
    return EXIT_NOT_MEANINGFUL if "not meaningful" in status else EXIT_OK


def check_line(m: dict) -> str:
    """One line: what the comparison with the reference says."""
    err, tol = m["max_param_error_vs_reference"], m.get("tolerance")
    if m["check"] == "skipped":
        return "check: skipped (--no-reference)"
    acc = "" if m["accounting_exact"] else "; communication accounting NOT exact"
    if m.get("bitwise_expected"):
        verdict = "bitwise equal" if m["bitwise_equal_to_reference"] else "NOT bitwise equal"
        return f"check: {verdict} to the reference (max |θ−θ_ref| = {err:.3g}){acc}"
    move = m["param_movement"]
    if tol is None:
        return (f"check: cannot mean anything: no tolerance for {m['strategy']} with these "
                f"settings (max |θ−θ_ref| = {err:.3g}, parameters moved {move:.3g}){acc}")
    head = {"passed": "passed", "failed": "FAILED",
            "not meaningful": "cannot mean anything"}[m["check"]]
    return (f"check: {head}: max |θ−θ_ref| = {err:.3g}, tolerance {tol:.3g} "
            f"({m['tolerance_method']}) = {tol / move if move else float('inf'):.2%} of the "
            f"parameters' movement {move:.3g} (meaningful at <= 1%){acc}")


def _run(args: argparse.Namespace) -> int:
    configs = [_config(args, args.strategy)]
    _preflight(args, configs)
    results = _execute(configs, args.port)
    if results is None:
        return EXIT_OK
    m = results[0]
    (args.out / "metrics.json").write_text(json.dumps(m, indent=2) + "\n")
    print(f"{m['strategy']} W={m['world_size']}: {sum(m['bytes_sent_per_rank'].values()):,.0f} "
          f"bytes/step/rank (predicted {sum(m['bytes_predicted_per_rank'].values()):,.0f}), "
          f"step {m['step_time_s']:.4f} s; wrote {args.out / 'metrics.json'}")
    print(check_line(m))
    return _exit_status(results)


def _compare(args: argparse.Namespace) -> int:
    from . import compare

    configs = [_config(args, s) for s in STRATEGIES]
    _preflight(args, configs)
    results = _execute(configs, args.port)
    if results is None:
        return EXIT_OK
    print(compare.setup_line(results[0]))
    print(compare.text_table(results))
    paths = compare.write(results, args.out)
    print("wrote " + ", ".join(str(p) for p in paths.values()))
    for m in results:
        if m["check"] in ("failed", "not meaningful"):
            print(f"{m['strategy']}: {check_line(m)}")
    return _exit_status(results)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="python -m simulate", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = parser.add_subparsers(dest="command", required=True)
    run = sub.add_parser("run", help="train with one strategy; write OUT/metrics.json",
                         description=__doc__,
                         formatter_class=argparse.RawDescriptionHelpFormatter)
    run.add_argument("--strategy", default="bucket", choices=list(STRATEGIES))
    run.add_argument("--trace", action="store_true", help="also write a trace to OUT/trace")
    _add_setup(run)
    run.set_defaults(func=_run)
    cmp_ = sub.add_parser("compare", help="all five strategies on one setup: table and plot; "
                          "exit 1 if any run fails its check",
                          description=__doc__,
                          formatter_class=argparse.RawDescriptionHelpFormatter)
    _add_setup(cmp_)
    cmp_.set_defaults(func=_compare)
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)  # argparse: usage + one error line, exit 2
    try:
        return args.func(args)
    except (RankError, LaunchError) as err:
        print(f"error: {err}", file=sys.stderr)
        return EXIT_ERROR
    except ConfigError as err:  # bad settings or --out, found before any rank started
        print(f"error: {err}", file=sys.stderr)
        return EXIT_ERROR


if __name__ == "__main__":
    sys.exit(main())
