"""The flat parameter vector: THE column order of G everywhere in refmoo.

Column ``j`` of the K×D gradient matrix is element ``j`` of the concatenation,
in ``model.named_parameters()`` registration order, of every parameter with
``requires_grad``, each flattened row-major (``p.reshape(-1)``). Shared
parameters appear once, under the first name ``named_parameters`` gives them,
which is also how DDP and FSDP2 deduplicate them.

>>> import torch.nn as nn
>>> [(s.name, s.offset, s.numel, s.shape) for s in flat_parameters(nn.Linear(3, 2))]
[('weight', 0, 6, (2, 3)), ('bias', 6, 2, (2,))]
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import nn


@dataclass(frozen=True)
class ParamSpan:
    """Where one parameter lies in the flat vector: columns ``offset .. offset+numel``."""

    name: str
    offset: int
    numel: int
    shape: tuple[int, ...]
    dtype: torch.dtype = torch.float32

    @property
    def stop(self) -> int:
        return self.offset + self.numel

    @property
    def columns(self) -> slice:
        return slice(self.offset, self.stop)

    @property
    def row_numel(self) -> int:
        """Elements per dim-0 row (1 for a 0-d or 1-d parameter)."""
        rows = self.shape[0] if self.shape else 1
        return self.numel // rows if rows else 0


def trainable_parameters(model: nn.Module) -> list[tuple[str, nn.Parameter]]:
    """``(name, parameter)`` in flat order: registration order, ``requires_grad`` only."""
    return [(n, p) for n, p in model.named_parameters() if p.requires_grad]


def flat_parameters(model: nn.Module) -> list[ParamSpan]:
    """The :class:`ParamSpan` of every trainable parameter, in flat order."""
    spans, offset = [], 0
    for name, p in trainable_parameters(model):
        spans.append(ParamSpan(name, offset, p.numel(), tuple(p.shape), p.dtype))
        offset += p.numel()
    return spans


def flat_dim(spans: list[ParamSpan]) -> int:
    """D, the length of the flat vector; raises if the model has nothing to train."""
    dim = spans[-1].stop if spans else 0
    if dim == 0:
        raise ValueError("the model has no trainable parameter elements (D = 0)")
    return dim
