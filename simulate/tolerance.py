r"""How far a distributed run may drift from the reference, and whether that check means anything.

Where the arithmetic is the reference's, the run is compared bitwise: at W = 2
gloo's sum of two terms is the plain sum (DESIGN.md), every rank aggregates
the reference's batch of buckets with its code and keys, and element-wise
optimizers give the same bits on a shard as on the whole vector
(:func:`bitwise_expected` says where).

Elsewhere only the order of floating-point sums changes: the W-term gradient
reduction at W ≥ 4 (gloo), the Gram summed over shards (``full-gram``), the
K·W terms of the language-mean gradient (``standard``), the Gram tiles of a
different batch of buckets (``bucket``). Two bounds:

**float32 runs: the float64 shadow (a posteriori).** The reference is run a
second time in float64 from the same initial weights (float32 values are exact
in float64) on the same data. Its distance to the float32 reference,
:math:`s = \max_i|\theta^{32}_{T,i} - \theta^{64}_{T,i}|`, is what float32
rounding *as a whole* (every matmul, the reduction, the aggregator's solve,
the update, fed back through all N steps, with this model's conditioning) did
to this very trajectory; float64's own error is 2^29 times smaller. The
distributed run differs from the float32 reference only in the order of some
sums, a subset of those roundings, so its distance to the float64 trajectory is
of the same size or smaller, and by the triangle inequality
:math:`|\theta^{run} - \theta^{32}| \le |\theta^{run} - \theta^{64}| + s`.
The tolerance is :math:`\text{tol} = c\,s + 2Nu\Theta` with c = SHADOW_FACTOR:
the factor is an allowance, not a proof (measured ratios
:math:`|\theta^{run} - \theta^{32}|/s` at the defaults: at most 0.51 over the
five strategies at W = 2, 4, 8, see simulate/README.md), and the second term
(one unit roundoff of the largest parameter Θ per step) keeps it positive
where float32 happened to be exact. It replaces the worst-case bound, whose
κ = 10⁴ allowance and γ_D term for a D-term Gram made the float32 check
vacuous (17.5 for ``full-gram`` against a total movement of 0.09).

**float64 runs: the a-priori bound** (no wider type to shadow with). Summing
n+1 terms in any order is within :math:`\gamma_n\sum|t_i|`,
:math:`\gamma_n = nu/(1-nu)`, of the exact sum (Higham, *Accuracy and
Stability of Numerical Algorithms*, §3.1), so two orders differ by at most
:math:`2\gamma_n\sum|t_i|`, with n = W − 1 for the reduction, + D for
``full-gram``'s Gram, KW for ``standard``. With S the largest reduced
magnitude :math:`\max\sum_r|G^r|` over the run, an aggregator that outputs at
most K rows' worth of G, N steps of SGD with step size η and momentum μ, a
condition allowance κ for the aggregator's sensitivity and the feedback of
parameter errors, and one rounding flip of θ − ηa per step:
:math:`\text{tol} = N\,(2u\Theta + \kappa\,\eta/(1-\mu)\,2\gamma_n K S)`.

**Meaningful** means tol ≤ 1% of the parameters' total movement
:math:`\max_i|\theta_{T,i} - \theta_{0,i}|` in the reference: then a run that
skipped the update, or scaled it by 1/W, is far outside the tolerance.
"""

from __future__ import annotations

import torch

KAPPA = 1e4
SHADOW_FACTOR = 10.0
MEANINGFUL_FRACTION = 0.01
"""A tolerance above this fraction of the parameters' movement cannot tell a bug from rounding."""


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
    and every rank aggregates exactly the batch of buckets the reference does.

    Not ``standard`` and ``full-gram`` (they reassociate sums), and not
    ``bucket``: its owners aggregate a subset of the buckets, and
    ``refmoo.bucketwise`` tiles the columns of the buckets it is given together
    (commit fb7b559), so the same bucket can round differently in a different
    batch (measured: 3e-7 in a weight of ``chunks:4096`` on the default model).
    """
    return (world_size <= 2 or ordered) and strategy not in ("standard", "full-gram", "bucket")


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


def shadow_tolerance(shadow_gap: float, *, steps: int, param_magnitude: float,
                     dtype: torch.dtype) -> float:
    """``SHADOW_FACTOR · shadow_gap + 2 N u Θ`` (see the module docstring).

    >>> shadow_tolerance(1e-7, steps=5, param_magnitude=1.0, dtype=torch.float32)
    1.5960464477539062e-06
    """
    u = torch.finfo(dtype).eps / 2
    return SHADOW_FACTOR * shadow_gap + 2 * steps * u * param_magnitude


def meaningful(tol: float | None, movement: float) -> bool:
    """Whether a check within ``tol`` can tell a wrong update from rounding.

    >>> meaningful(0.0, 0.0), meaningful(1e-5, 0.01), meaningful(1e-3, 0.01), meaningful(None, 1)
    (True, True, False, False)
    """
    if tol is None:
        return False
    return tol == 0.0 or tol <= MEANINGFUL_FRACTION * movement
