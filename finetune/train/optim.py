r"""AdamW or SGD, with linear warmup then a cosine to ``lr · min_lr_ratio``.

Step s (0-based) uses :math:`\eta_s = \eta\,f(s)` with
:math:`f(s) = (s+1)/w` for :math:`s < w` and
:math:`f(s) = r + (1-r)\tfrac12(1+\cos(\pi\,\tfrac{s-w}{\max(1,N-w)}))` after,
for w warmup steps, N steps and floor ratio r.
"""

from __future__ import annotations

import math

import torch


def lr_factor(step: int, warmup: int, total: int, floor: float) -> float:
    """
    >>> [round(lr_factor(s, 2, 6, 0.0), 3) for s in range(6)]
    [0.5, 1.0, 1.0, 0.854, 0.5, 0.146]
    """
    if step < warmup:
        return (step + 1) / warmup
    progress = (step - warmup) / max(1, total - warmup)
    return floor + (1 - floor) * 0.5 * (1 + math.cos(math.pi * progress))


def make_optimizer(config, params):
    if config.optimizer == "adamw":
        optimizer = torch.optim.AdamW(params, lr=config.lr, weight_decay=config.weight_decay)
    else:
        optimizer = torch.optim.SGD(params, lr=config.lr, weight_decay=config.weight_decay)
    scheduler = torch.optim.lr_scheduler.LambdaLR(
        optimizer, lambda s: lr_factor(s, config.warmup_steps, config.steps, config.min_lr_ratio))
    return optimizer, scheduler
