"""Partitions that follow the model's structure: one bucket per tensor or per module.

>>> import torch.nn as nn
>>> net = nn.Sequential(nn.Linear(2, 2), nn.Sequential(nn.Linear(2, 1), nn.LayerNorm(1)))
>>> per_tensor(net).names
['0.weight', '0.bias', '1.0.weight', '1.0.bias', '1.1.weight', '1.1.bias']
>>> per_module(net).names
['0', '1.0', '1.1']
>>> per_module(net, depth=1).sizes
[6, 5]
>>> per_module(net, prefixes=["1.1"]).names
['<other>', '1.1']
"""

from __future__ import annotations

from collections.abc import Sequence

from torch import nn

from ._partition import Partition
from .flat import ParamSpan, flat_dim, flat_parameters
from .layout import BucketLayout, ParamPiece, partition_from_layout

ROOT = "<root>"
OTHER = "<other>"


def per_tensor(model: nn.Module) -> Partition:
    """One bucket per trainable parameter tensor, named after it."""
    spans = flat_parameters(model)
    layouts = [BucketLayout(s.name, (ParamPiece.of(s),)) for s in spans]
    return partition_from_layout(layouts, flat_dim(spans))


def _module_path(name: str) -> str:
    return name.rpartition(".")[0]


def _under(name: str, prefix: str) -> bool:
    # Component-wise, so that "layers.1" does not capture "layers.10".
    return name == prefix or name.startswith(prefix + ".")


def per_module(model: nn.Module, depth: int | None = None,
               prefixes: Sequence[str] | None = None) -> Partition:
    """Group parameters by module name; buckets appear in flat order.

    - neither argument: one bucket per module that owns parameters directly
      (a Linear's weight and bias together);
    - ``depth=d``: by the first ``d`` components of the owning module's name,
      e.g. ``depth=3`` on a Llama gives ``model.layers.0``, ``model.layers.1``...
      (one layer per bucket) next to ``model.embed_tokens``, ``model.norm`` and
      ``lm_head``;
    - ``prefixes``: each parameter goes to the longest prefix it lies under
      (matched on whole name components); parameters under none of them share
      one bucket named ``"<other>"``. A prefix that matches nothing is an error.

    Parameters registered on the root module itself go to a ``"<root>"`` bucket.
    """
    if depth is not None and prefixes is not None:
        raise ValueError("give either depth or prefixes, not both")
    if depth is not None and depth < 1:
        raise ValueError(f"depth must be at least 1, got {depth}")
    spans = flat_parameters(model)
    if prefixes is not None:
        prefixes = [str(p) for p in prefixes]
        if any(not p for p in prefixes):
            raise ValueError("an empty prefix would capture every parameter; "
                             "use Partition.single for one bucket")
        unused = [p for p in prefixes if not any(_under(s.name, p) for s in spans)]
        if unused:
            raise ValueError(f"prefixes match no trainable parameter: {unused}")

    def key(span: ParamSpan) -> str:
        if prefixes is not None:
            hits = [p for p in prefixes if _under(span.name, p)]
            return max(hits, key=len) if hits else OTHER
        path = _module_path(span.name)
        if not path:
            return ROOT
        return path if depth is None else ".".join(path.split(".")[:depth])

    groups: dict[str, list[ParamPiece]] = {}
    for s in spans:
        groups.setdefault(key(s), []).append(ParamPiece.of(s))
    layouts = [BucketLayout(k, tuple(pieces)) for k, pieces in groups.items()]
    return partition_from_layout(layouts, flat_dim(spans))
