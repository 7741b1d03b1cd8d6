r"""Which examples a step trains on, and the loss of one micro-batch.

Language k's examples are read as an endless stream of epochs, epoch e being a
permutation drawn from a generator seeded by (seed, k's name, e). Step s takes
positions :math:`sB .. sB+B-1` of that stream, so a batch is a pure function of
(seed, language, step): a resumed run, and every rank, rebuild it without any
state beyond the step number.

The step's global batch of B examples is cut into micro-batches of b examples
(:math:`n = B/b` of them); rank r of W takes the contiguous run
:math:`[rn/W, (r+1)n/W)`. A micro-batch's loss is its *summed* target-token
cross-entropy divided by :math:`T_k`, the language's target-token count over the
whole global batch, so the sum over micro-batches and ranks is exactly the
global per-language mean loss :math:`L_k`, however the tokens are split.
"""

from __future__ import annotations

import zlib
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from finetune.errors import ConfigError, TrainingError


@dataclass(frozen=True)
class MicroBatch:
    input_ids: Tensor       # [b, T], right-padded
    attention_mask: Tensor  # [b, T]
    targets: Tensor         # [b, T-1] bool: position t predicts token t+1 and is a target
    scale: float            # 1 / T_k

    def to(self, device) -> MicroBatch:
        return MicroBatch(self.input_ids.to(device), self.attention_mask.to(device),
                          self.targets.to(device), self.scale)


def _permutation(n: int, seed: int, language: str, epoch: int) -> Tensor:
    key = zlib.crc32(f"{seed}/{language}/{epoch}".encode())
    return torch.randperm(n, generator=torch.Generator().manual_seed(key))


def step_indices(n: int, seed: int, language: str, step: int, batch_size: int) -> list[int]:
    """Indices (into the language's n examples) of step ``step``'s global batch.

    >>> step_indices(5, 0, "en", 0, 3) == step_indices(5, 0, "en", 0, 3)
    True
    >>> sorted(step_indices(4, 0, "en", 0, 2) + step_indices(4, 0, "en", 1, 2))
    [0, 1, 2, 3]
    """
    out, perms = [], {}
    for pos in range(step * batch_size, (step + 1) * batch_size):
        epoch = pos // n
        if epoch not in perms:
            perms[epoch] = _permutation(n, seed, language, epoch)
        out.append(int(perms[epoch][pos % n]))
    return out


def _collate(examples, scale: float) -> MicroBatch:
    T = max(len(e.input_ids) for e in examples)
    ids = torch.zeros(len(examples), T, dtype=torch.long)
    att = torch.zeros(len(examples), T, dtype=torch.long)
    mask = torch.zeros(len(examples), T, dtype=torch.bool)
    for i, e in enumerate(examples):
        n = len(e.input_ids)
        ids[i, :n] = torch.tensor(e.input_ids)
        att[i, :n] = 1
        mask[i, :n] = torch.tensor(e.loss_mask, dtype=torch.bool)
    return MicroBatch(ids, att, mask[:, 1:], scale)


def micro_batch_count(batch_size: int, micro_batch_size: int | None, world_size: int) -> int:
    """n, the micro-batches per language per step; each rank gets n / W of them."""
    b = micro_batch_size or batch_size // world_size
    if b < 1 or batch_size % b or (batch_size // b) % world_size:
        raise ConfigError(f"batch_size {batch_size} must split into micro-batches of "
                          f"{micro_batch_size or 'batch_size/W'} examples, an equal number per "
                          f"rank (W = {world_size}): choose batch_size = W·m·micro_batch_size")
    return batch_size // b


def rank_batches(examples: dict, seed: int, step: int, batch_size: int, n_micro: int,
                 rank: int, world_size: int) -> dict[str, list[MicroBatch]]:
    """This rank's micro-batches of every language for ``step`` (module docstring)."""
    out = {}
    for lang, rows in examples.items():
        chosen = [rows[i] for i in step_indices(len(rows), seed, lang, step, batch_size)]
        total = sum(sum(e.loss_mask[1:]) for e in chosen)
        if total == 0:
            raise TrainingError(f"step {step + 1}, language {lang!r}: the batch has no target "
                                "tokens (every loss_mask is zero after the first token)")
        b = batch_size // n_micro
        per_rank = n_micro // world_size
        mine = range(rank * per_rank, (rank + 1) * per_rank)
        out[lang] = [_collate(chosen[j * b:(j + 1) * b], 1.0 / total) for j in mine]
    return out


def micro_loss(model: nn.Module, mb: MicroBatch) -> Tensor:
    """Summed next-token cross-entropy over the targets, times 1/T_k."""
    logits = model(input_ids=mb.input_ids, attention_mask=mb.attention_mask).logits[:, :-1]
    logits = logits.to(torch.promote_types(logits.dtype, torch.float32))  # bf16 → fp32 loss
    targets = mb.input_ids[:, 1:]
    ce = F.cross_entropy(logits[mb.targets], targets[mb.targets], reduction="sum")
    return ce * mb.scale
