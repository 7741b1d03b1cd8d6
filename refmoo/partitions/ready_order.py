"""The order in which a backward pass makes parameter gradients ready.

DDP rebuilds its buckets after the first step in this order, and DeepSpeed
ZeRO-2 fills its IPG buckets in it. It is usually close to reverse
registration order but not equal to it: a LayerNorm's weight is ready before
its bias, and a model that calls its modules out of registration order
reorders whole blocks.

>>> import torch, torch.nn as nn
>>> net = nn.Sequential(nn.Linear(2, 2), nn.LayerNorm(2))
>>> gradient_ready_order(net, lambda: net(torch.ones(1, 2)).pow(2).sum())
['1.weight', '1.bias', '0.bias', '0.weight']
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

from torch import Tensor, nn

from .flat import ParamSpan, trainable_parameters


def gradient_ready_order(model: nn.Module, loss: Tensor | Callable[[], Tensor]) -> list[str]:
    """Names of the trainable parameters in the order their gradients are accumulated
    by ``loss.backward()``; parameters the loss does not reach are left out.

    The backward pass runs for real (that is the only way to observe the order),
    but every ``.grad`` is restored afterwards, so the model is left unchanged.
    """
    params = trainable_parameters(model)
    saved = [p.grad for _, p in params]
    order: list[str] = []
    handles = [p.register_post_accumulate_grad_hook(lambda _p, n=n: order.append(n))
               for n, p in params]
    try:
        for _, p in params:
            p.grad = None
        value = loss() if callable(loss) else loss
        value.backward()
    finally:
        for h in handles:
            h.remove()
        for (_, p), g in zip(params, saved, strict=True):
            p.grad = g
    return order


def ordered_spans(spans: list[ParamSpan], ready_order: Sequence[str] | None) -> list[ParamSpan]:
    """``spans`` in the given gradient-ready order (names), or reversed if None."""
    if ready_order is None:
        return spans[::-1]
    by_name = {s.name: s for s in spans}
    names = list(ready_order)
    unknown = [n for n in names if n not in by_name]
    missing = [n for n in by_name if n not in set(names)]
    if unknown or missing or len(set(names)) != len(names):
        raise ValueError(
            "ready_order must list every trainable parameter exactly once; "
            f"unknown: {unknown[:5]}, missing: {missing[:5]}, "
            f"repeated: {len(names) - len(set(names))}")
    return [by_name[n] for n in names]
