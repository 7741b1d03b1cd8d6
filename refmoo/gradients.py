"""Per-language gradients of an ``nn.Module``, and the reference training step.

G has one row per language and one column per element of the flat parameter
vector (:mod:`refmoo.partitions.flat`: registration order, ``requires_grad``
only, row-major), the same columns every partition builder uses. The
reference step writes ``A_P(G)`` into ``.grad`` so that any torch optimizer
performs ``θ ← θ − η·A_P(G)`` (plain SGD) or its own rule on top.

>>> import torch, torch.nn as nn
>>> from refmoo import MGDA, Partition
>>> net = nn.Linear(2, 1, bias=False)
>>> x = {"en": torch.tensor([[1.0, 0.0]]), "fr": torch.tensor([[0.0, 1.0]])}
>>> G = language_gradients(net, x, lambda m, b: m(b).sum())
>>> G.tolist()
[[1.0, 0.0], [0.0, 1.0]]
>>> [round(x, 12) for x in reference_step(net, G, MGDA(), Partition.single(2)).tolist()]
[0.5, 0.5]
>>> [round(x, 12) for x in net.weight.grad.reshape(-1).tolist()]
[0.5, 0.5]
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from typing import Any

import torch
from torch import Tensor, nn

from ._checks import GradientError
from .aggregators._base import Aggregator
from .bucketwise import bucketwise
from .partitions._partition import Partition, PartitionError
from .partitions.flat import ParamSpan, flat_dim, flat_parameters, trainable_parameters

LossFn = Callable[[nn.Module, Any], Tensor]


def _as_items(losses_or_batches, names: Sequence[str] | None) -> tuple[list, list[str]]:
    if isinstance(losses_or_batches, Mapping):
        if names is not None:
            raise ValueError("names come from the mapping's keys; do not pass names too")
        items = list(losses_or_batches.values())
        names = [str(k) for k in losses_or_batches]
    else:
        if isinstance(losses_or_batches, Tensor):
            # A stacked vector of K losses sharing one graph.
            losses_or_batches = list(losses_or_batches.reshape(-1).unbind())
        items = list(losses_or_batches)
        names = [str(k) for k in range(len(items))] if names is None else [str(n) for n in names]
    if not items:
        raise GradientError("no language given: K = 0, at least one loss or batch is required")
    if len(names) != len(items):
        raise ValueError(f"{len(names)} language names given for K = {len(items)} losses/batches")
    return items, names


def _loss(item, loss_fn: LossFn | None, model: nn.Module, lang: str) -> Tensor:
    if loss_fn is not None:
        loss = loss_fn(model, item)
    elif callable(item):
        loss = item()
    else:
        loss = item
    if not isinstance(loss, Tensor):
        raise TypeError(f"language {lang!r}: the loss must be a torch.Tensor, got "
                        f"{type(loss).__name__}")
    if loss.numel() != 1:
        raise GradientError(f"language {lang!r}: the loss must be a scalar, got shape "
                            f"{tuple(loss.shape)}")
    if not bool(torch.isfinite(loss.detach()).all()):
        raise GradientError(f"language {lang!r}: the loss is {loss.item()}")
    return loss.reshape(())


def _param_at(spans: list[ParamSpan], col: int) -> str:
    for s in spans:
        if s.offset <= col < s.stop:
            return f"{s.name}[{col - s.offset}]"
    return "?"


def language_gradients(model: nn.Module, losses_or_batches, loss_fn: LossFn | None = None, *,
                       names: Sequence[str] | None = None,
                       dtype: torch.dtype | None = None) -> Tensor:
    """The K×D matrix G whose row k is the gradient of language k's loss.

    ``losses_or_batches`` is one of:

    - K scalar losses already computed (a list, a dict ``{language: loss}`` or a
      stacked 1-D tensor); they may share one graph;
    - K zero-argument closures returning a loss (one graph alive at a time);
    - with ``loss_fn``, K batches: row k is the gradient of ``loss_fn(model, batch_k)``.

    One ``torch.autograd.grad`` call per language; ``.grad`` is not touched, and
    the graph of precomputed losses is freed after the last of them, as
    ``backward()`` would. A
    parameter a language's loss does not reach, or a loss that reaches no
    parameter at all, contributes exact zeros (that is its gradient). A
    non-finite loss or gradient raises :class:`GradientError` naming the language
    (and the parameter element). ``dtype`` defaults to the parameters' dtype.
    """
    items, names = _as_items(losses_or_batches, names)
    params = trainable_parameters(model)
    spans = flat_parameters(model)
    dim = flat_dim(spans)
    if dtype is None:
        dtype = params[0][1].dtype
        for _, p in params[1:]:
            dtype = torch.promote_types(dtype, p.dtype)
    device = params[0][1].device
    G = torch.zeros(len(items), dim, dtype=dtype, device=device)
    tensors = [p for _, p in params]
    last_shared = max((k for k, it in enumerate(items) if isinstance(it, Tensor)), default=-1)
    for k, (item, lang) in enumerate(zip(items, names, strict=True)):
        loss = _loss(item, loss_fn, model, lang)
        if not loss.requires_grad:
            continue
        # Precomputed losses may share one graph: keep it until the last of them.
        retain = loss_fn is None and isinstance(item, Tensor) and k < last_shared
        grads = torch.autograd.grad(loss, tensors, retain_graph=retain, allow_unused=True)
        for s, g in zip(spans, grads, strict=True):
            if g is not None:
                G[k, s.offset:s.stop] = g.reshape(-1)
        bad = ~torch.isfinite(G[k])
        if bool(bad.any()):
            col = int(bad.nonzero()[0])
            raise GradientError(f"language {lang!r}: non-finite gradient {G[k, col].item()} at "
                                f"{_param_at(spans, col)} (column {col})")
    return G


def _check_flat(spans: list[ParamSpan], flat: Tensor) -> None:
    dim = flat_dim(spans)
    if flat.dim() != 1 or flat.numel() != dim:
        raise GradientError(f"expected a flat vector of the model's D = {dim} trainable "
                            f"elements, got shape {tuple(flat.shape)}")


def unflatten(model: nn.Module, flat: Tensor) -> dict[str, Tensor]:
    """``{name: tensor shaped like the parameter}`` (views of ``flat`` where possible)."""
    spans = flat_parameters(model)
    _check_flat(spans, flat)
    return {s.name: flat[s.offset:s.stop].reshape(s.shape) for s in spans}


def flat_grad(model: nn.Module) -> Tensor:
    """The model's current ``.grad`` as one flat vector (zeros where ``.grad`` is None)."""
    params = trainable_parameters(model)
    return torch.cat([(p.grad if p.grad is not None else torch.zeros_like(p)).reshape(-1)
                      for _, p in params])


def write_flat_grad(model: nn.Module, flat: Tensor, *, accumulate: bool = False,
                    alias: bool = False) -> None:
    """Set every trainable parameter's ``.grad`` to its slice of ``flat`` (a copy in the
    parameter's dtype and device), or add to the existing ``.grad`` with ``accumulate``.

    ``alias``: make each ``.grad`` a view of its slice instead of a copy, wherever the
    dtype and device already match the parameter's (a copy elsewhere), as DDP's
    ``gradient_as_bucket_view`` does: no second D-vector and no copy pass, but ``flat``
    must then stay as it is until the optimizer has used the gradients.
    """
    if alias and accumulate:
        raise ValueError("alias and accumulate exclude each other: accumulating into views "
                         "of flat would change flat")
    spans = flat_parameters(model)
    _check_flat(spans, flat)
    for (_, p), s in zip(trainable_parameters(model), spans, strict=True):
        g = flat[s.offset:s.stop].detach().reshape(s.shape)
        if accumulate and p.grad is not None:
            p.grad.add_(g.to(p.grad.dtype))
        else:
            p.grad = g.to(dtype=p.dtype, device=p.device, copy=not alias)


def _check_layout(spans: list[ParamSpan], partition: Partition) -> None:
    if partition.layout is None:
        return
    by_name = {s.name: s for s in spans}
    for lay in partition.layout:
        for piece in lay.pieces:
            s = by_name.get(piece.name)
            if s is None or s.offset != piece.param_offset or piece.stop > s.stop:
                raise PartitionError(
                    f"bucket {lay.name!r} refers to {piece.name!r} at columns "
                    f"{piece.start}..{piece.stop}, which is not where the model holds it: "
                    "the partition was built from a different model")


def reference_step(model: nn.Module, G: Tensor, aggregator: Aggregator,
                   partition: Partition | None = None) -> Tensor:
    """Write ``A_P(G)`` (``bucketwise``; full-vector if ``partition`` is None) into every
    trainable parameter's ``.grad`` and return it; then call ``optimizer.step()``."""
    spans = flat_parameters(model)
    dim = flat_dim(spans)
    if G.dim() != 2 or G.shape[1] != dim:
        raise GradientError(f"G must be K × D with D = {dim} (the model's trainable elements), "
                            f"got shape {tuple(G.shape)}")
    if partition is None:
        partition = Partition.single(dim)
    elif partition.dim != dim:
        raise PartitionError(f"the partition covers {partition.dim} columns but the model "
                             f"has D = {dim}")
    _check_layout(spans, partition)
    update = bucketwise(aggregator, G, partition)
    write_flat_grad(model, update)
    return update
