r"""How far a distributed run may drift from the reference, from the summation order.

Where the arithmetic is the reference's, the run is compared bitwise: at W = 2
gloo's sum of two terms is the plain sum (DESIGN.md), the owners aggregate
their buckets with the reference's own code and keys, and element-wise
optimizers give the same bits on a shard as on the whole vector.

Elsewhere only the order of a floating-point sum changes. Summing n+1 terms
in any order is within :math:`\gamma_n\sum|t_i|`, :math:`\gamma_n = nu/(1-nu)`, of the exact
sum (Higham, *Accuracy and Stability of Numerical Algorithms*, §3.1), so two
orders differ by at most :math:`2\gamma_n\sum|t_i|`. The reordered sums are:

- ``bucket``, ``full-naive``, ``full-gram``, ``bucket-replicated``: the W-term
  gradient reduction (n = W − 1);
- ``full-gram`` also: the Gram, summed over D columns in a different grouping
  (n = D);
- ``standard``: the K·W terms of the language-mean gradient (n = KW).

With S the largest reduced magnitude :math:`\max\sum_r|G^r|` over the run, an aggregator
that outputs at most K rows' worth of G, N steps of SGD with step size η (and
momentum μ, so an input error is applied :math:`1/(1-\mu)` times), the first-order
bound on the error of the update is :math:`\eta/(1-\mu)\cdot 2\gamma_n\cdot K S` per step,
multiplied by a condition allowance κ for the aggregator's sensitivity (MGDA's
weights move by at most κ times a relative Gram perturbation) and the feedback
of parameter errors into later gradients. A perturbed update can also flip
the rounding of θ − ηa, by one unit roundoff of the largest parameter Θ:
:math:`2u\Theta` per step. Over N steps,
:math:`\text{tol} = N\,(2u\Theta + \kappa\,\eta/(1-\mu)\,2\gamma_n K S)`.
κ = 10⁴ is an allowance, not a proof; at float64 it still leaves the
tolerance many orders of magnitude below the update size (the tests check
this, so that a real bug cannot hide under it).
"""

from __future__ import annotations

import torch

KAPPA = 1e4


def gamma(n: int, dtype: torch.dtype) -> float:
    """Higham's γ_n for the unit roundoff of ``dtype``.

    >>> gamma(1, torch.float64) == 2.0 ** -53 / (1 - 2.0 ** -53)
    True
    """
    u = torch.finfo(dtype).eps / 2
    return n * u / (1 - n * u)


def reordered_terms(strategy: str, *, world_size: int, languages: int, dim: int) -> int:
    n = world_size - 1
    if strategy == "standard":
        n = languages * world_size
    elif strategy == "full-gram":
        n += dim
    return n


def bitwise_expected(strategy: str, world_size: int, ordered: bool = False) -> bool:
    """Whether the run must reproduce the reference bit for bit: where the
    reduction sums in the reference's order (W ≤ 2, or the ordered reduction)
    and nothing else is reassociated (``standard`` and ``full-gram`` are)."""
    return (world_size <= 2 or ordered) and strategy not in ("standard", "full-gram")


def tolerance(strategy: str, *, world_size: int, languages: int, dim: int, steps: int,
              ordered: bool = False,
              lr: float, momentum: float, optimizer: str, dtype: torch.dtype,
              input_magnitude: float, param_magnitude: float) -> float | None:
    """The parameter tolerance (0.0 where bitwise is expected; None for adaptive optimizers,
    whose 1/√v scaling has no useful bound, so only bitwise runs are checked)."""
    if bitwise_expected(strategy, world_size, ordered):
        return 0.0
    if optimizer != "sgd":
        return None
    n = reordered_terms(strategy, world_size=world_size, languages=languages, dim=dim)
    lr_eff = lr / (1.0 - momentum)
    u = torch.finfo(dtype).eps / 2
    per_step = 2 * u * param_magnitude + \
        KAPPA * lr_eff * 2 * gamma(n, dtype) * languages * input_magnitude
    return steps * per_step
