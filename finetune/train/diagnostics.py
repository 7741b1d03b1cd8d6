r"""What the log says about the gradients of a step: φ, φ_P, conflicts, weights.

- :math:`\varphi(G) = \min_{\lambda\in\Delta_K}\|G^\top\lambda\|` (full vector) and
  :math:`\varphi_P(G) = (\sum_b \varphi(G^b)^2)^{1/2}` for the run's partition, from
  ``refmoo.pareto_stationarity`` / ``refined_pareto_stationarity`` where a rank
  holds G;
- where no rank holds G (FSDP2) the same numbers from the all-reduced bucket
  Grams: :math:`\varphi(G^b)^2 = \lambda_b^\top Q^b\lambda_b` with :math:`\lambda_b` the
  min-norm weights of :math:`Q^b` (accurate to about :math:`\sqrt{\epsilon}\,\|g\|` near
  stationarity instead of :math:`\epsilon\,\|g\|`; a log, not a certificate);
- a per-tensor bucket is *in conflict* when some pair of languages has a negative
  inner product there (the sign of the cosine), counted per layer.
"""

from __future__ import annotations

from collections import defaultdict

import torch
from torch import Tensor

from refmoo import Partition, bucket_grams, pareto_stationarity, refined_pareto_stationarity
from refmoo.min_norm import solve_min_norm

from .partitioning import layer_of

MAX_ROWS = 64


def conflicts(Q: Tensor, names: list[str]) -> dict[str, list[int]]:
    """``{layer: [buckets in conflict, buckets]}`` from per-tensor Grams ``[M, K, K]``."""
    K = Q.shape[-1]
    off = ~torch.eye(K, dtype=torch.bool, device=Q.device)
    bad = ((Q < 0) & off).flatten(1).any(1).tolist()
    out: dict[str, list[int]] = defaultdict(lambda: [0, 0])
    for name, b in zip(names, bad, strict=True):
        row = out[layer_of(name)]
        row[0] += int(b)
        row[1] += 1
    return dict(out)


def from_matrix(G: Tensor, run: Partition, tensors: Partition) -> dict:
    G = G.detach()
    return {"phi": float(pareto_stationarity(G).residual),
            "phi_p": float(refined_pareto_stationarity(G, run).measure),
            "conflict": conflicts(bucket_grams(G.double(), tensors), tensors.names)}


def _phi_sq(Q: Tensor) -> Tensor:
    lam = solve_min_norm(Q).weights
    return torch.einsum("bk,bkl,bl->b", lam, Q, lam).clamp_min(0)


def from_grams(Q_tensor: Tensor, Q_run: Tensor, names: list[str]) -> dict:
    Q_tensor, Q_run = Q_tensor.double(), Q_run.double()
    return {"phi": float(_phi_sq(Q_tensor.sum(0, keepdim=True)).sqrt()),
            "phi_p": float(_phi_sq(Q_run).sum().sqrt()),
            "conflict": conflicts(Q_tensor, names)}


def weights_row(weights: Tensor | None):
    """The log's ``weights``: one row per bucket, or mean/min/max beyond 64 buckets."""
    if weights is None:
        return None
    w = weights.detach().double().cpu()
    if w.shape[0] <= MAX_ROWS:
        return w.tolist()
    return {"mean": w.mean(0).tolist(), "min": w.min(0).values.tolist(),
            "max": w.max(0).values.tolist()}
