"""Command line: ``python -m refmoo demo`` and ``python -m refmoo verify TRACE``."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path


def _demo(args: argparse.Namespace) -> int:
    from .demo import main as demo_main

    return demo_main(seed=args.seed)


def _verify(args: argparse.Namespace) -> int:
    import json

    from .trace import TraceError, format_report, verify

    try:
        report = verify(args.trace, rtol=args.rtol, atol=args.atol)
    except TraceError as err:
        print(f"error: {err}", file=sys.stderr)
        return 2
    print(format_report(report, worst=args.worst))
    if args.json is not None:
        args.json.write_text(json.dumps(report.to_json(), indent=1) + "\n")
    return 0 if report.ok else 1


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="python -m refmoo", description=__doc__)
    sub = parser.add_subparsers(dest="command", required=True)
    demo = sub.add_parser("demo", help="full-vector vs bucket-level MGDA on a small model")
    demo.add_argument("--seed", type=int, default=0)
    demo.set_defaults(func=_demo)
    ver = sub.add_parser(
        "verify", help="recompute a distributed trace with the reference; exit 1 past the "
        "tolerance",
        description="Recompute every completely traced bucket with the reference aggregator "
        "and, where the trace carries every rank's local gradients, check that the reduced "
        "gradient is their sum (within 2γ_W·Σ|local|). Exit status: 0 every checked bucket "
        "passes, 1 an aggregation or a reduction fails (named: step, bucket, language, "
        "ranks), 2 not a valid trace (format error, wrong dtype, bad layout, columns "
        "written twice with different values). Format: simulate/TRACE_FORMAT.md.")
    ver.add_argument("trace", help="trace directory (see simulate/TRACE_FORMAT.md)")
    ver.add_argument("--rtol", type=float, default=None,
                     help="relative tolerance per bucket (default: by dtype)")
    ver.add_argument("--atol", type=float, default=0.0)
    ver.add_argument("--worst", type=int, default=10, help="buckets listed")
    ver.add_argument("--json", type=Path, default=None, help="also write the full report")
    ver.set_defaults(func=_verify)
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    return args.func(args)


if __name__ == "__main__":
    sys.exit(main())
