"""Pretraining the base model: next-token loss on the corpus of all languages.

Each step draws ``batch_size`` documents uniformly (seeded), pads them on the right and
minimises the mean cross-entropy over their real tokens (padding is labelled -100).
AdamW with a learning rate that rises linearly over ``warmup`` steps and then follows a
cosine down to 10 % of its peak:

    lr(t) = lr · t / warmup                                         for t < warmup
    lr(t) = lr · (0.1 + 0.9 · ½ (1 + cos(π (t - warmup) / (T - warmup))))   otherwise

>>> [round(learning_rate(t, 101, 10, 1.0), 3) for t in (0, 5, 10, 55, 100)]
[0.0, 0.5, 1.0, 0.55, 0.1]
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from contextlib import contextmanager


def learning_rate(step: int, total: int, warmup: int, peak: float) -> float:
    """The schedule above at 0-based ``step`` of ``total``."""
    if step < warmup:
        return peak * step / warmup
    progress = (step - warmup) / max(1, total - 1 - warmup)
    return peak * (0.1 + 0.9 * 0.5 * (1 + math.cos(math.pi * min(1.0, progress))))


def encode_documents(texts: Sequence[str], tokenizer, max_length: int) -> list[list[int]]:
    """Token ids of each text (with ``<s>`` and ``</s>``), truncated to ``max_length``."""
    encoded = tokenizer(list(texts), add_special_tokens=True)["input_ids"]
    return [(ids + [tokenizer.eos_token_id])[:max_length] for ids in encoded]


def pretrain(model, documents: list[list[int]], pad_id: int, *, steps: int, batch_size: int,
             lr: float, warmup: int, weight_decay: float, seed: int,
             progress: bool = True) -> list[float]:
    """Train ``model`` in place; return the loss of every step."""
    import torch

    generator = torch.Generator().manual_seed(seed)
    with one_thread():
        return _train(model, documents, pad_id, steps, batch_size, lr, warmup, weight_decay,
                      generator, progress)


@contextmanager
def one_thread():
    """Run torch on one intra-op thread, then restore the previous count.

    The miniature's matrices are tiny (64 wide): splitting them over threads costs more in
    synchronisation than it saves, and on a shared 2-core machine a second thread that
    competes with other processes made steps 10-25 times slower (measured: 0.06 s per
    step with one thread, 1.5 s with two under load). One thread also makes the result
    independent of the machine's core count.
    """
    import torch

    previous = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        yield
    finally:
        torch.set_num_threads(previous)


def _train(model, documents, pad_id, steps, batch_size, lr, warmup, weight_decay, generator,
           progress):
    import torch
    from tqdm import tqdm

    optimizer = torch.optim.AdamW(model.parameters(), lr=lr, weight_decay=weight_decay)
    model.train()
    losses = []
    bar = tqdm(range(steps), desc="pretraining", unit="step", disable=not progress)
    for step in bar:
        picks = torch.randint(len(documents), (batch_size,), generator=generator).tolist()
        input_ids, attention, labels = _batch([documents[i] for i in picks], pad_id)
        for group in optimizer.param_groups:
            group["lr"] = learning_rate(step, steps, warmup, lr)
        loss = model(input_ids=input_ids, attention_mask=attention, labels=labels).loss
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()
        losses.append(loss.item())
        if step % 25 == 0 or step == steps - 1:
            bar.set_postfix(loss=f"{losses[-1]:.3f}")
    model.eval()
    return losses


def _batch(documents: list[list[int]], pad_id: int):
    import torch

    width = max(map(len, documents))
    input_ids = torch.full((len(documents), width), pad_id, dtype=torch.long)
    attention = torch.zeros((len(documents), width), dtype=torch.long)
    for row, ids in enumerate(documents):
        input_ids[row, : len(ids)] = torch.tensor(ids)
        attention[row, : len(ids)] = 1
    labels = input_ids.masked_fill(attention == 0, -100)
    return input_ids, attention, labels
