"""Traces: what a distributed engine reduced and aggregated, checkable against refmoo.

A trace is a directory (format in ``simulate/TRACE_FORMAT.md``)::

    manifest.json              aggregator, languages, D, dtype, parameters, buckets
    partition.safetensors      order [D] int64, sizes [M] int64
    steps/step000003.rank00001.safetensors
                               columns [n] int64, grads [K, n], output [n]

Each step file holds some columns of one step: the reduced per-language
gradients there and the engine's aggregated output. Files of one step may
come from several ranks and together cover some or all buckets. :func:`verify`
recomputes every bucket that a step covers completely with the reference
aggregator, bucket b with ``key=b``, and reports errors and certificates.

>>> import tempfile, torch
>>> from refmoo import MGDA, Partition, bucketwise
>>> G = torch.tensor([[1.0, 0.0, 2.0], [0.0, 1.0, -1.0]], dtype=torch.float64)
>>> P = Partition.from_sizes([2, 1])
>>> with tempfile.TemporaryDirectory() as d:
...     w = TraceWriter(d, partition=P, aggregator="mgda", languages=["en", "fr"],
...                     dtype=torch.float64)
...     _ = w.write(0, torch.arange(3), G, bucketwise(MGDA(), G, P))
...     report = verify(d)
>>> report.ok, report.max_abs_error
(True, 0.0)
"""

from __future__ import annotations

import json
import math
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
from safetensors.torch import load_file, save_file
from torch import Tensor

from .aggregators import Aggregator, get_aggregator
from .bucketwise import bucketwise
from .partitions import Partition
from .stationarity import refined_pareto_stationarity

FORMAT = "refmoo-trace"
VERSION = 1
DEFAULT_RTOL = {torch.float64: 1e-9, torch.float32: 1e-4, torch.bfloat16: 2e-2,
                torch.float16: 5e-3}


class TraceError(ValueError):
    """A trace directory that does not follow the format."""


# -- writing -----------------------------------------------------------------

def _layout_json(partition: Partition) -> list[list[list[Any]]] | None:
    if partition.layout is None:
        return None
    return [[[p.name, p.start, p.stop] for p in lay.pieces] for lay in partition.layout]


class TraceWriter:
    """Writes one process's part of a trace; rank 0 also writes the manifest.

    ``aggregator`` is a registry name (:data:`refmoo.AGGREGATORS`) and
    ``aggregator_kwargs`` its constructor arguments. ``parameters`` lists
    ``(name, offset, numel, shape)`` of the flat vector, if known.
    """

    def __init__(self, directory: str | Path, *, partition: Partition, aggregator: str,
                 aggregator_kwargs: dict[str, Any] | None = None,
                 languages: Sequence[str] | int, rank: int = 0, world_size: int = 1,
                 dtype: torch.dtype | str = torch.float32,
                 parameters: Sequence[tuple[str, int, int, Sequence[int]]] | None = None,
                 meta: dict[str, Any] | None = None) -> None:
        get_aggregator(aggregator, **(aggregator_kwargs or {}))  # fail now, not at verify
        self.dir = Path(directory)
        self.rank = rank
        self.partition = partition
        self.K = languages if isinstance(languages, int) else len(languages)
        (self.dir / "steps").mkdir(parents=True, exist_ok=True)
        if rank != 0:
            return
        names = [str(k) for k in range(languages)] if isinstance(languages, int) \
            else [str(x) for x in languages]
        manifest = {
            "format": FORMAT, "version": VERSION,
            "aggregator": {"name": aggregator, "kwargs": aggregator_kwargs or {}},
            "languages": names, "dim": partition.dim, "dtype": str(dtype).replace("torch.", ""),
            "world_size": world_size,
            "buckets": {"names": partition.names, "sizes": partition.sizes,
                        "layout": _layout_json(partition)},
            "parameters": None if parameters is None else [
                {"name": n, "offset": int(o), "numel": int(c), "shape": list(s)}
                for n, o, c, s in parameters],
            "meta": meta or {},
        }
        save_file({"order": partition.order.contiguous(),
                   "sizes": torch.tensor(partition.sizes, dtype=torch.long)},
                  str(self.dir / "partition.safetensors"))
        (self.dir / "manifest.json").write_text(json.dumps(manifest, indent=1) + "\n")

    def write(self, step: int, columns: Tensor, grads: Tensor, output: Tensor) -> Path:
        """Record, for ``step``, the reduced gradients ``grads [K, n]`` and the aggregated
        ``output [n]`` on the flat ``columns [n]``."""
        columns = torch.as_tensor(columns, dtype=torch.long).reshape(-1)
        if grads.shape != (self.K, columns.numel()) or output.shape != (columns.numel(),):
            raise TraceError(f"expected grads {(self.K, columns.numel())} and output "
                             f"{(columns.numel(),)}, got {tuple(grads.shape)} and "
                             f"{tuple(output.shape)}")
        path = self.dir / "steps" / f"step{step:06d}.rank{self.rank:05d}.safetensors"
        save_file({"columns": columns.detach().cpu().contiguous(),
                   "grads": grads.detach().cpu().contiguous(),
                   "output": output.detach().cpu().contiguous()}, str(path),
                  metadata={"step": str(step), "rank": str(self.rank)})
        return path


# -- reading -----------------------------------------------------------------

class Trace:
    """A trace directory opened for reading."""

    def __init__(self, directory: str | Path) -> None:
        self.dir = Path(directory)
        try:
            self.manifest = json.loads((self.dir / "manifest.json").read_text())
        except FileNotFoundError as err:
            raise TraceError(f"{self.dir} has no manifest.json: not a trace") from err
        if self.manifest.get("format") != FORMAT or self.manifest.get("version") != VERSION:
            raise TraceError(f"unsupported trace format {self.manifest.get('format')!r} "
                             f"version {self.manifest.get('version')!r}")
        part = load_file(str(self.dir / "partition.safetensors"))
        sizes = part["sizes"].tolist()
        buckets = torch.split(part["order"], sizes)
        self.partition = Partition(list(buckets), dim=int(self.manifest["dim"]),
                                   names=self.manifest["buckets"]["names"])
        self.languages = self.manifest["languages"]
        self.dtype = getattr(torch, self.manifest["dtype"])

    def aggregator(self) -> Aggregator:
        spec = self.manifest["aggregator"]
        return get_aggregator(spec["name"], **spec.get("kwargs", {}))

    def steps(self) -> list[int]:
        steps = {int(p.name[4:10]) for p in (self.dir / "steps").glob("step*.safetensors")}
        return sorted(steps)

    def load_step(self, step: int) -> tuple[Tensor, Tensor, Tensor]:
        """``(G [K, D], output [D], covered [D] bool)`` assembled from the step's files."""
        K, D = len(self.languages), self.partition.dim
        G = torch.zeros(K, D, dtype=self.dtype)
        out = torch.zeros(D, dtype=self.dtype)
        covered = torch.zeros(D, dtype=torch.bool)
        files = sorted((self.dir / "steps").glob(f"step{step:06d}.rank*.safetensors"))
        if not files:
            raise TraceError(f"no file for step {step}")
        for f in files:
            t = load_file(str(f))
            cols = t["columns"]
            if cols.numel() and (int(cols.min()) < 0 or int(cols.max()) >= D):
                raise TraceError(f"{f.name}: columns outside 0..{D - 1}")
            again = covered[cols]
            if bool(again.any()) and not (torch.equal(G[:, cols[again]], t["grads"][:, again])
                                          and torch.equal(out[cols[again]], t["output"][again])):
                raise TraceError(f"{f.name}: columns written twice with different values")
            G[:, cols] = t["grads"].to(self.dtype)
            out[cols] = t["output"].to(self.dtype)
            covered[cols] = True
        return G, out, covered


# -- verification --------------------------------------------------------------

@dataclass
class BucketCheck:
    step: int
    bucket: int
    name: str
    max_abs_error: float
    max_rel_error: float
    """max |out − ref| / max |ref| over the bucket (0 when both are 0)."""
    stationarity: float
    """φ(G^b): the min-norm value over the bucket (0 ⇔ Pareto stationary)."""
    stationary: bool
    ok: bool


@dataclass
class VerifyReport:
    rtol: float
    atol: float
    checks: list[BucketCheck] = field(default_factory=list)
    incomplete: dict[int, list[int]] = field(default_factory=dict)
    """Step → buckets only partly present (not checked)."""

    @property
    def ok(self) -> bool:
        return bool(self.checks) and all(c.ok for c in self.checks)

    @property
    def max_abs_error(self) -> float:
        return max((c.max_abs_error for c in self.checks), default=math.nan)

    @property
    def max_rel_error(self) -> float:
        return max((c.max_rel_error for c in self.checks), default=math.nan)

    def to_json(self) -> dict[str, Any]:
        return {"ok": self.ok, "rtol": self.rtol, "atol": self.atol,
                "max_abs_error": self.max_abs_error, "max_rel_error": self.max_rel_error,
                "incomplete": {str(k): v for k, v in self.incomplete.items()},
                "buckets": [c.__dict__ for c in self.checks]}


def verify(directory: str | Path, *, rtol: float | None = None, atol: float = 0.0,
           stationarity_tol: float = 1e-6) -> VerifyReport:
    """Recompute every completely traced bucket with the reference aggregator.

    A bucket passes when ``max|out − ref| <= atol + rtol · max|ref|``; ``rtol``
    defaults to a few thousand unit roundoffs of the trace's dtype
    (:data:`DEFAULT_RTOL`), which a correct engine meets even when it sums in
    another order (a Gram from partial sums, a ring reduction).
    """
    trace = Trace(directory)
    aggregator = trace.aggregator()
    if rtol is None:
        rtol = DEFAULT_RTOL.get(trace.dtype, 1e-4)
    report = VerifyReport(rtol, atol)
    P = trace.partition
    for step in trace.steps():
        G, out, covered = trace.load_step(step)
        counts = torch.zeros(len(P), dtype=torch.long).index_add_(
            0, P.bucket_of, covered.long())
        complete = [b for b in range(len(P)) if int(counts[b]) == P.sizes[b]]
        partial = [b for b in range(len(P)) if 0 < int(counts[b]) < P.sizes[b]]
        if partial:
            report.incomplete[step] = partial
        if not complete:
            continue
        idx = torch.cat([P.indices(b) for b in complete])
        local = Partition.from_sizes([P.sizes[b] for b in complete])
        ref = bucketwise(aggregator, G[:, idx], local, keys=complete)
        cert = refined_pareto_stationarity(G[:, idx], local, stationarity_tol)
        for i, (b, r, o) in enumerate(zip(complete, local.split(ref.unsqueeze(0)),
                                          local.split(out[idx].unsqueeze(0)), strict=True)):
            scale = float(r.abs().max())
            err = float((o - r).abs().max())
            rel = err / scale if scale > 0 else (0.0 if err == 0 else math.inf)
            report.checks.append(BucketCheck(
                step, b, P.names[b], err, rel, float(cert.bucket_residuals[i]),
                bool(cert.bucket_stationary[i]), err <= atol + rtol * scale))
    return report


def format_report(report: VerifyReport, *, worst: int = 10) -> str:
    lines = [f"{len(report.checks)} bucket-steps checked; max abs error "
             f"{report.max_abs_error:.3e}, max rel error {report.max_rel_error:.3e} "
             f"(rtol {report.rtol:g}, atol {report.atol:g}): "
             f"{'OK' if report.ok else 'FAILED'}"]
    if report.incomplete:
        lines.append("partly traced buckets (not checked): " + ", ".join(
            f"step {s}: {b[:8]}{'...' if len(b) > 8 else ''}"
            for s, b in report.incomplete.items()))
    ranked = sorted(report.checks, key=lambda c: (c.ok, -c.max_rel_error))[:worst]
    if ranked:
        lines.append(f"{'step':>5} {'bucket':>6}  {'abs err':>10} {'rel err':>10} "
                     f"{'phi(G^b)':>10}  stationary  name")
        for c in ranked:
            lines.append(f"{c.step:>5} {c.bucket:>6}  {c.max_abs_error:>10.3e} "
                         f"{c.max_rel_error:>10.3e} {c.stationarity:>10.3e}  "
                         f"{'yes' if c.stationary else 'no':>10}  {c.name}"
                         f"{'' if c.ok else '  <-- FAIL'}")
    return "\n".join(lines)
