r"""Traces: what a distributed engine reduced and aggregated, checkable against refmoo.

A trace is a directory (format in ``simulate/TRACE_FORMAT.md``)::

    manifest.json              aggregator, languages, D, dtype, parameters, buckets
    partition.safetensors      order [D] int64, sizes [M] int64
    steps/step000003.rank00001.safetensors
                               columns [n] int64, grads [K, n], output [n]
                               optional: local_columns [m] int64, local_grads [K, m]

Each step file holds some columns of one step: the reduced per-language
gradients there and the engine's aggregated output, and optionally the
writer's *local* per-language gradients (what it contributed to the
reduction). Files of one step may come from several ranks and together cover
some or all buckets. :func:`verify` recomputes every bucket that a step covers
completely with the reference aggregator, bucket b with ``key=b``, and, where
every rank's locals cover the bucket, checks the reduction itself:

.. math:: |G_{kj} - \sum_r L^r_{kj}| \le 2\gamma_W \sum_r |L^r_{kj}|,
   \qquad \gamma_n = nu/(1 - nu),

Higham's bound (*Accuracy and Stability of Numerical Algorithms*, §3.1) on
a W-term sum taken in any order, with one rounding to spare (an engine that
divides the sum by W, or accumulates in a wider type, rounds once more);
the factor 2 covers the verifier's own float64 sum.

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
import os
import re
from collections.abc import Callable, Sequence
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
STEP_FILE = re.compile(r"step(\d{6,})\.rank(\d{5,})\.safetensors")
"""Step numbers zero-padded to at least 6 digits, ranks to at least 5."""


class TraceError(ValueError):
    """A trace directory that does not follow the format."""


def step_file_name(step: int, rank: int) -> str:
    return f"step{step:06d}.rank{rank:05d}.safetensors"


def _gamma(n: int, dtype: torch.dtype) -> float:
    """Higham's γ_n = nu/(1 − nu) for the unit roundoff u of ``dtype``."""
    u = torch.finfo(dtype).eps / 2
    return n * u / (1 - n * u)


# -- writing -----------------------------------------------------------------

def _write_atomic(path: Path, root: Path, write: Callable[[str], object]) -> None:
    """``write(tmp)`` then rename onto ``path``: a reader (or a crash) never sees half a
    file. The temporary lies in the trace's root, where :class:`Trace` looks for no
    file, and on the same filesystem, so ``os.replace`` is atomic."""
    tmp = root / f".{path.name}.{os.getpid()}.tmp"
    try:
        write(str(tmp))
        os.replace(tmp, path)
    finally:
        tmp.unlink(missing_ok=True)


def _layout_json(partition: Partition) -> list[list[list[Any]]] | None:
    if partition.layout is None:
        return None
    return [[[p.name, p.start, p.stop] for p in lay.pieces] for lay in partition.layout]


def _dtype(dtype: torch.dtype | str) -> torch.dtype:
    out = getattr(torch, dtype, None) if isinstance(dtype, str) else dtype
    if not isinstance(out, torch.dtype) or not out.is_floating_point:
        raise TraceError(f"{dtype!r} is not a floating-point torch dtype")
    return out


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
        self.dtype = _dtype(dtype)
        self.K = languages if isinstance(languages, int) else len(languages)
        (self.dir / "steps").mkdir(parents=True, exist_ok=True)
        if rank != 0:
            return
        names = [str(k) for k in range(languages)] if isinstance(languages, int) \
            else [str(x) for x in languages]
        manifest = {
            "format": FORMAT, "version": VERSION,
            "aggregator": {"name": aggregator, "kwargs": aggregator_kwargs or {}},
            "languages": names, "dim": partition.dim,
            "dtype": str(self.dtype).replace("torch.", ""),
            "world_size": world_size,
            "buckets": {"names": partition.names, "sizes": partition.sizes,
                        "layout": _layout_json(partition)},
            "parameters": None if parameters is None else [
                {"name": n, "offset": int(o), "numel": int(c), "shape": list(s)}
                for n, o, c, s in parameters],
            "meta": meta or {},
        }
        # The manifest is written last: a directory with one has a complete partition.
        _write_atomic(self.dir / "partition.safetensors", self.dir, lambda tmp: save_file(
            {"order": partition.order.contiguous(),
             "sizes": torch.tensor(partition.sizes, dtype=torch.long)}, tmp))
        text = json.dumps(manifest, indent=1) + "\n"
        _write_atomic(self.dir / "manifest.json", self.dir,
                      lambda tmp: Path(tmp).write_text(text))

    def write(self, step: int, columns: Tensor, grads: Tensor, output: Tensor, *,
              local_columns: Tensor | None = None, local_grads: Tensor | None = None) -> Path:
        """Record, for ``step``, the reduced gradients ``grads [K, n]`` and the aggregated
        ``output [n]`` on the flat ``columns [n]``; optionally this writer's own
        contribution to the reduction, ``local_grads [K, m]`` on ``local_columns [m]``
        (a rank that aggregates nothing passes empty columns and only its locals)."""
        columns = torch.as_tensor(columns, dtype=torch.long).reshape(-1)
        if grads.shape != (self.K, columns.numel()) or output.shape != (columns.numel(),):
            raise TraceError(f"expected grads {(self.K, columns.numel())} and output "
                             f"{(columns.numel(),)}, got {tuple(grads.shape)} and "
                             f"{tuple(output.shape)}")
        tensors = {"columns": columns.detach().cpu().contiguous(),
                   "grads": grads.detach().cpu().contiguous(),
                   "output": output.detach().cpu().contiguous()}
        if (local_columns is None) != (local_grads is None):
            raise TraceError("give both local_columns and local_grads, or neither")
        if local_grads is not None:
            lc = torch.as_tensor(local_columns, dtype=torch.long).reshape(-1)
            if local_grads.shape != (self.K, lc.numel()):
                raise TraceError(f"expected local_grads {(self.K, lc.numel())}, got "
                                 f"{tuple(local_grads.shape)}")
            tensors["local_columns"] = lc.cpu().contiguous()
            tensors["local_grads"] = local_grads.detach().cpu().contiguous()
        for name in ("grads", "output", "local_grads"):
            if name in tensors and tensors[name].dtype != self.dtype:
                raise TraceError(f"{name} is {tensors[name].dtype}, the trace is {self.dtype}")
        path = self.dir / "steps" / step_file_name(step, self.rank)
        _write_atomic(path, self.dir, lambda tmp: save_file(
            tensors, tmp, metadata={"step": str(step), "rank": str(self.rank)}))
        return path


# -- reading -----------------------------------------------------------------

@dataclass
class StepData:
    """One step assembled from its files."""

    grads: Tensor
    """``[K, D]`` reduced gradients (zero where not covered)."""
    output: Tensor
    covered: Tensor
    """``[D]`` bool: columns some file wrote."""
    writer: Tensor
    """``[D]``: the rank whose file wrote the reduced column (−1: none)."""
    local_sum: Tensor | None = None
    """``[K, D]`` float64: Σ over ranks of the locals (None: no file has locals)."""
    local_abs: Tensor | None = None
    """``[K, D]`` float64: Σ over ranks of |locals|."""
    local_count: Tensor | None = None
    """``[D]``: how many ranks' locals cover the column."""
    local_files: dict[int, Path] = field(default_factory=dict)


class Trace:
    """A trace directory opened for reading; every check of the format raises TraceError."""

    def __init__(self, directory: str | Path) -> None:
        self.dir = Path(directory)
        try:
            self.manifest = json.loads((self.dir / "manifest.json").read_text())
        except FileNotFoundError as err:
            raise TraceError(f"{self.dir} has no manifest.json: not a trace") from err
        except json.JSONDecodeError as err:
            raise TraceError(f"{self.dir / 'manifest.json'}: not JSON ({err})") from err
        m = self.manifest
        if m.get("format") != FORMAT or m.get("version") != VERSION:
            raise TraceError(f"unsupported trace format {m.get('format')!r} "
                             f"version {m.get('version')!r}")
        for key in ("aggregator", "languages", "dim", "dtype", "buckets"):
            if key not in m:
                raise TraceError(f"manifest.json has no {key!r}")
        try:
            self.dtype = _dtype(str(m["dtype"]))
            part = load_file(str(self.dir / "partition.safetensors"))
            sizes = part["sizes"].tolist()
            names = m["buckets"].get("names")
            self.partition = Partition(list(torch.split(part["order"], sizes)),
                                       dim=int(m["dim"]), names=names)
        except TraceError:
            raise
        except Exception as err:  # noqa: BLE001 (any malformed file is a format error)
            raise TraceError(f"{self.dir}: partition.safetensors does not fit the manifest "
                             f"({type(err).__name__}: {err})") from err
        if m["buckets"].get("sizes") not in (None, sizes):
            raise TraceError("manifest buckets.sizes differs from partition.safetensors sizes")
        self.languages = m["languages"]
        self.world_size = int(m.get("world_size", 1))
        self._check_layout()

    def _check_layout(self) -> None:
        """``buckets.layout``: per bucket, pieces ``[parameter, start, stop]`` of flat
        columns whose concatenation is exactly the bucket's columns, in order."""
        layout = self.manifest["buckets"].get("layout")
        if layout is None:
            return
        P, D = self.partition, self.partition.dim
        params = {p["name"]: p for p in self.manifest.get("parameters") or []}
        if len(layout) != len(P):
            raise TraceError(f"buckets.layout has {len(layout)} buckets, the partition {len(P)}")
        for b, pieces in enumerate(layout):
            where = f"buckets.layout[{b}] ({P.names[b]!r})"
            cols = []
            for piece in pieces:
                if not (isinstance(piece, list) and len(piece) == 3):
                    raise TraceError(f"{where}: a piece is [name, start, stop], got {piece!r}")
                name, start, stop = piece
                if not (isinstance(start, int) and isinstance(stop, int)
                        and 0 <= start < stop <= D):
                    raise TraceError(f"{where}: piece {piece!r} needs 0 <= start < stop <= {D}")
                if params:
                    if name not in params:
                        raise TraceError(f"{where}: parameter {name!r} is not in 'parameters'")
                    lo, n = params[name]["offset"], params[name]["numel"]
                    if start < lo or stop > lo + n:
                        raise TraceError(f"{where}: piece {piece!r} leaves parameter {name!r} "
                                         f"(flat columns {lo}..{lo + n})")
                cols.append(torch.arange(start, stop))
            total = sum(int(c.numel()) for c in cols)
            if total != P.sizes[b]:
                raise TraceError(f"{where}: pieces add up to {total} columns, the bucket "
                                 f"has {P.sizes[b]}")
            if total and not torch.equal(torch.cat(cols), P.indices(b)):
                raise TraceError(f"{where}: the pieces are not the bucket's columns in "
                                 "partition order")

    def aggregator(self) -> Aggregator:
        spec = self.manifest["aggregator"]
        try:
            return get_aggregator(spec["name"], **spec.get("kwargs", {}))
        except (TypeError, ValueError, KeyError) as err:
            raise TraceError(f"manifest aggregator {spec!r}: {err}") from err

    def files(self) -> dict[int, dict[int, Path]]:
        """step → rank → file."""
        out: dict[int, dict[int, Path]] = {}
        for p in sorted((self.dir / "steps").glob("*")):
            match = STEP_FILE.fullmatch(p.name)
            if match is None:
                raise TraceError(f"steps/{p.name}: not a step file name (expected "
                                 "stepTTTTTT.rankRRRRR.safetensors, zero-padded)")
            out.setdefault(int(match[1]), {})[int(match[2])] = p
        return out

    def steps(self) -> list[int]:
        return sorted(self.files())

    def _load(self, path: Path) -> dict[str, Tensor]:
        try:
            t = load_file(str(path))
        except Exception as err:  # noqa: BLE001
            raise TraceError(f"{path.name}: not a safetensors file ({err})") from err
        K = len(self.languages)
        for name in ("columns", "grads", "output"):
            if name not in t:
                raise TraceError(f"{path.name}: no {name!r} tensor")
        pairs = [("columns", "grads", "output")]
        if "local_columns" in t or "local_grads" in t:
            pairs.append(("local_columns", "local_grads", None))
        for cols, rows, vec in pairs:
            if cols not in t or rows not in t:
                raise TraceError(f"{path.name}: {cols} and {rows} go together")
            n = t[cols].numel()
            if t[cols].dtype != torch.int64 or t[cols].dim() != 1:
                raise TraceError(f"{path.name}: {cols} must be int64 [n], got "
                                 f"{t[cols].dtype} {tuple(t[cols].shape)}")
            for name, shape in ((rows, (K, n)), (vec, (n,))):
                if name is None:
                    continue
                if t[name].dtype != self.dtype:
                    raise TraceError(f"{path.name}: {name} is "
                                     f"{str(t[name].dtype).replace('torch.', '')}, the "
                                     f"manifest says {self.manifest['dtype']}")
                if tuple(t[name].shape) != shape:
                    raise TraceError(f"{path.name}: {name} has shape {tuple(t[name].shape)}, "
                                     f"expected {shape} (K = {K} languages, {n} columns)")
            if n and (int(t[cols].min()) < 0 or int(t[cols].max()) >= self.partition.dim):
                raise TraceError(f"{path.name}: {cols} outside 0..{self.partition.dim - 1}")
            if n and torch.unique(t[cols]).numel() != n:
                raise TraceError(f"{path.name}: {cols} lists a column more than once")
        return t

    def load_step(self, step: int) -> StepData:
        """The step's reduced gradients, output and locals, assembled from its files."""
        K, D = len(self.languages), self.partition.dim
        files = self.files().get(step)
        if not files:
            raise TraceError(f"no file for step {step}")
        data = StepData(torch.zeros(K, D, dtype=self.dtype), torch.zeros(D, dtype=self.dtype),
                        torch.zeros(D, dtype=torch.bool), torch.full((D,), -1))
        for rank, f in sorted(files.items()):
            t = self._load(f)
            cols = t["columns"]
            again = data.covered[cols]
            if bool(again.any()):
                self._check_twice(step, data, files, f, t, again)
            data.grads[:, cols] = t["grads"]
            data.output[cols] = t["output"]
            data.covered[cols] = True
            data.writer[cols] = rank
            if "local_grads" in t:
                if data.local_sum is None:
                    data.local_sum = torch.zeros(K, D, dtype=torch.float64)
                    data.local_abs = torch.zeros(K, D, dtype=torch.float64)
                    data.local_count = torch.zeros(D, dtype=torch.long)
                lc, lg = t["local_columns"], t["local_grads"].double()
                data.local_sum[:, lc] += lg
                data.local_abs[:, lc] += lg.abs()
                data.local_count[lc] += 1
                data.local_files[rank] = f
        return data

    def _check_twice(self, step: int, data: StepData, files: dict[int, Path], f: Path,
                     t: dict[str, Tensor], again: Tensor) -> None:
        cols = t["columns"][again]
        g_old, g_new = data.grads[:, cols], t["grads"][:, again]
        o_old, o_new = data.output[cols], t["output"][again]
        differ = ((g_old != g_new) & ~(g_old.isnan() & g_new.isnan())).any(0) | \
            ((o_old != o_new) & ~(o_old.isnan() & o_new.isnan()))
        if not bool(differ.any()):
            return
        bad = cols[differ]
        others = sorted({files[int(r)].name for r in data.writer[bad].unique()})
        buckets = sorted(set(self.partition.bucket_of[bad].tolist()))
        dg = float((g_old - g_new).abs()[:, differ].max())
        do = float((o_old - o_new).abs()[differ].max())
        shown = ", ".join(map(str, bad[:6].tolist())) + (", ..." if bad.numel() > 6 else "")
        raise TraceError(
            f"step {step}: columns written twice with different values: {f.name} and "
            f"{', '.join(others)} disagree on {bad.numel()} columns ({shown}) in bucket(s) "
            + ", ".join(f"{b} ({self.partition.names[b]!r})" for b in buckets[:6])
            + f"; max |difference| {dg:.3e} in grads, {do:.3e} in output")

    def load_locals(self, step: int, rank: int) -> Tensor:
        """``[K, D]`` float64: rank ``rank``'s locals at ``step`` (zero where absent)."""
        t = self._load(self.files()[step][rank])
        out = torch.zeros(len(self.languages), self.partition.dim, dtype=torch.float64)
        out[:, t["local_columns"]] = t["local_grads"].double()
        return out


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
class ReductionCheck:
    """Reduced gradient vs the sum of every rank's locals, on one bucket of one step."""

    step: int
    bucket: int
    name: str
    max_abs_error: float
    """max |G − Σ_r L^r| over the bucket and languages."""
    max_error_over_bound: float
    """max of |G − Σ_r L^r| / (2γ_W Σ_r |L^r|): above 1 fails."""
    failed_languages: list[str]
    reduced_by: list[int]
    """Ranks whose files hold the bucket's reduced values."""
    diagnosis: str
    ok: bool


@dataclass
class VerifyReport:
    rtol: float
    atol: float
    checks: list[BucketCheck] = field(default_factory=list)
    incomplete: dict[int, list[int]] = field(default_factory=dict)
    """Step → buckets only partly present (not checked)."""
    reductions: list[ReductionCheck] = field(default_factory=list)
    locals_incomplete: dict[int, list[int]] = field(default_factory=dict)
    """Step → complete buckets whose locals come from fewer than world_size ranks."""

    @property
    def ok(self) -> bool:
        return bool(self.checks) and all(c.ok for c in self.checks) \
            and all(r.ok for r in self.reductions)

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
                "locals_incomplete": {str(k): v for k, v in self.locals_incomplete.items()},
                "buckets": [c.__dict__ for c in self.checks],
                "reductions": [r.__dict__ for r in self.reductions]}


def verify(directory: str | Path, *, rtol: float | None = None, atol: float = 0.0,
           stationarity_tol: float = 1e-6) -> VerifyReport:
    """Recompute every completely traced bucket with the reference aggregator, and check
    its reduction where the trace carries every rank's locals.

    A bucket passes when ``max|out − ref| <= atol + rtol · max|ref|``; ``rtol``
    defaults to a few thousand unit roundoffs of the trace's dtype
    (:data:`DEFAULT_RTOL`), which a correct engine meets even when it sums in
    another order (a Gram from partial sums, a ring reduction). The reduction
    passes when every entry is within 2γ_W Σ_r|L^r| of the sum of the locals.
    """
    trace = Trace(directory)
    aggregator = trace.aggregator()
    if rtol is None:
        rtol = DEFAULT_RTOL.get(trace.dtype, 1e-4)
    report = VerifyReport(rtol, atol)
    P = trace.partition
    for step in trace.steps():
        data = trace.load_step(step)
        counts = torch.zeros(len(P), dtype=torch.long).index_add_(
            0, P.bucket_of, data.covered.long())
        complete = [b for b in range(len(P)) if int(counts[b]) == P.sizes[b]]
        partial = [b for b in range(len(P)) if 0 < int(counts[b]) < P.sizes[b]]
        if partial:
            report.incomplete[step] = partial
        if not complete:
            continue
        G, out = data.grads, data.output
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
        if data.local_sum is not None:
            _check_reductions(trace, step, data, complete, report)
    return report


def _check_reductions(trace: Trace, step: int, data: StepData, complete: list[int],
                      report: VerifyReport) -> None:
    P, W = trace.partition, trace.world_size
    err = (data.grads.double() - data.local_sum).abs()
    bound = 2 * _gamma(W, trace.dtype) * data.local_abs
    # err / bound, with 0/0 = 0 (both exactly zero) and x/0 = inf.
    ratio = torch.where(bound > 0, err / bound.clamp_min(torch.finfo(torch.float64).tiny),
                        torch.where(err > 0, math.inf, 0.0))
    for b in complete:
        idx = P.indices(b)
        n = data.local_count[idx]
        if not bool((n == W).all()):
            if bool((n > 0).any()):
                report.locals_incomplete.setdefault(step, []).append(b)
            continue
        r = ratio[:, idx]
        worst = float(r.max()) if r.numel() else 0.0
        failed = [k for k in range(r.shape[0]) if bool((r[k] > 1).any())]
        diagnosis = "; ".join(_diagnose(trace, step, data, idx, k) for k in failed)
        report.reductions.append(ReductionCheck(
            step, b, P.names[b], float(err[:, idx].max()) if idx.numel() else 0.0, worst,
            [trace.languages[k] for k in failed], sorted(set(data.writer[idx].tolist())),
            diagnosis, not failed))


def _diagnose(trace: Trace, step: int, data: StepData, idx: Tensor, k: int) -> str:
    """What a failed reduction of language k looks like: one rank's local, or a
    multiple of the sum (an extra 1/W, a missing average)."""
    W = trace.world_size
    g, s = data.grads[k, idx].double(), data.local_sum[k, idx]
    bound = 2 * _gamma(W, trace.dtype) * data.local_abs[k, idx]
    name = trace.languages[k]
    for rank in sorted(data.local_files):
        L = trace.load_locals(step, rank)[k, idx]
        if bool(((g - L).abs() <= bound).all()) and not bool(((s - L).abs() <= bound).all()):
            return f"language {name!r}: reduced equals rank {rank}'s local (not reduced?)"
    ss = float(s @ s)
    if ss > 0:
        alpha = float(g @ s) / ss
        if bool(((g - alpha * s).abs() <= bound * max(1.0, abs(alpha))).all()):
            hint = ""
            for label, value in ((f"divided by W = {W} once more", 1 / W),
                                 (f"multiplied by W = {W}", float(W))):
                if abs(alpha - value) <= 1e-3 * value:
                    hint = f" ({label})"
            return f"language {name!r}: reduced = {alpha:.6g} × Σ locals{hint}"
    return f"language {name!r}: reduced differs from Σ locals"


def format_report(report: VerifyReport, *, worst: int = 10) -> str:
    lines = [f"{len(report.checks)} bucket-steps checked; max abs error "
             f"{report.max_abs_error:.3e}, max rel error {report.max_rel_error:.3e} "
             f"(rtol {report.rtol:g}, atol {report.atol:g}): "
             f"{'OK' if report.ok else 'FAILED'}"]
    if report.incomplete:
        lines.append("partly traced buckets (not checked): " + ", ".join(
            f"step {s}: {b[:8]}{'...' if len(b) > 8 else ''}"
            for s, b in report.incomplete.items()))
    red = report.reductions
    if red:
        bad = [r for r in red if not r.ok]
        lines.append(f"reduction: {len(red)} bucket-steps checked against the sum of the "
                     f"ranks' locals (bound 2γ_W·Σ|local|), worst error/bound "
                     f"{max(r.max_error_over_bound for r in red):.3g}: "
                     f"{'FAILED' if bad else 'OK'}")
        for r in bad[:worst]:
            lines.append(f"  REDUCTION FAIL step {r.step} bucket {r.bucket} ({r.name}), "
                         f"language(s) {', '.join(r.failed_languages)}: max |reduced − Σ "
                         f"locals| {r.max_abs_error:.3e} ({r.max_error_over_bound:.3g} × "
                         f"bound); reduced written by rank(s) "
                         f"{', '.join(map(str, r.reduced_by))}; {r.diagnosis}")
    else:
        lines.append("reduction: not checked (no bucket has every rank's local gradients; "
                     "see TRACE_FORMAT.md, local_grads)")
    if report.locals_incomplete:
        lines.append("buckets whose locals miss some rank (reduction not checked): "
                     + ", ".join(f"step {s}: {b[:8]}" for s, b in
                                 report.locals_incomplete.items()))
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
