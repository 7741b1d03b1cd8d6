"""Flat views of a model's trainable parameters and gradients, in registration order.

The flat order is ``model.named_parameters()`` order, trainable parameters
only, each tensor row-major: the order refmoo's partition builders use. The
model itself is not changed: gradients land in one flat buffer because each
``p.grad`` is bound to a view of it (as DDP's ``gradient_as_bucket_view``
does), and parameters are copied back after every update.
"""

from __future__ import annotations

import torch
from torch import Tensor, nn

from refmoo.partitions import flat_parameters, trainable_parameters


class GradMemory:
    """Live and peak bytes of the gradient buffers a rank holds.

    Counted: every tensor that stores gradient values (the local gradient,
    send buffers, reduced shards, gathered copies, the update direction);
    not parameters, activations or optimizer state.

    >>> m = GradMemory()
    >>> _ = m.hold("a", torch.zeros(10)); _ = m.hold("b", torch.zeros(5)); m.drop("a")
    >>> m.peak_bytes, m.live_bytes
    (60, 20)
    """

    def __init__(self) -> None:
        self.live: dict[str, int] = {}
        self.peak_bytes = 0

    def hold(self, name: str, tensor: Tensor) -> Tensor:
        self.live[name] = tensor.numel() * tensor.element_size()
        self.peak_bytes = max(self.peak_bytes, self.live_bytes)
        return tensor

    def drop(self, name: str) -> None:
        self.live.pop(name, None)

    @property
    def live_bytes(self) -> int:
        return sum(self.live.values())


class FlatModel:
    """The trainable parameters of ``model`` seen as one vector of length D."""

    def __init__(self, model: nn.Module) -> None:
        named = trainable_parameters(model)
        if not named:
            raise ValueError("the model has no trainable parameters")
        dtypes = {p.dtype for _, p in named}
        if len(dtypes) != 1:
            raise ValueError("trainable parameters must share one dtype, got "
                             f"{sorted(map(str, dtypes))}")
        self.spans = flat_parameters(model)
        self.names = [s.name for s in self.spans]
        self.params = [p for _, p in named]
        self.offsets = [s.offset for s in self.spans] + [self.spans[-1].stop]
        self.dim = self.offsets[-1]
        self.dtype = self.params[0].dtype
        self.device = self.params[0].device
        self._grad_ext: Tensor | None = None

    # -- parameters ---------------------------------------------------------
    def read_params(self) -> Tensor:
        return torch.cat([p.detach().reshape(-1) for p in self.params])

    @torch.no_grad()
    def write_params(self, flat: Tensor) -> None:
        for p, a, b in zip(self.params, self.offsets[:-1], self.offsets[1:], strict=True):
            p.copy_(flat[a:b].view_as(p))

    # -- gradients ----------------------------------------------------------
    def bind_grads(self, memory: GradMemory | None = None) -> Tensor:
        """Allocate the flat gradient (plus one trailing zero used as padding) and
        point every ``p.grad`` into it; returns the extended buffer ``[D + 1]``."""
        ext = torch.zeros(self.dim + 1, dtype=self.dtype, device=self.device)
        if memory is not None:
            memory.hold("local_grad", ext[:self.dim])
        self._grad_ext = ext
        self._rebind()
        return ext

    def _rebind(self) -> None:
        ext = self._grad_ext
        for p, a, b in zip(self.params, self.offsets[:-1], self.offsets[1:], strict=True):
            p.grad = ext[a:b].view_as(p)

    @property
    def grad(self) -> Tensor:
        """The flat local gradient ``[D]`` (a view)."""
        if self._grad_ext is None:
            raise RuntimeError("bind_grads() first")
        return self._grad_ext[:self.dim]

    def zero_grad(self) -> None:
        self.grad.zero_()

    def sync_grads(self) -> None:
        """Make sure every gradient is in the flat buffer after a backward pass.

        Autograd accumulates in place into an existing ``.grad``, but code that
        replaced ``.grad`` (or set it to None) would otherwise be missed.
        """
        ext = self._grad_ext
        for p, a, b in zip(self.params, self.offsets[:-1], self.offsets[1:], strict=True):
            g = p.grad
            if g is None:
                ext[a:b].zero_()
            elif g.data_ptr() != ext[a:].data_ptr():
                ext[a:b].copy_(g.reshape(-1))
        self._rebind()

    def unbind_grads(self) -> None:
        for p in self.params:
            p.grad = None
        self._grad_ext = None
