"""Per-layer sentence representations: hidden states mean-pooled over a sentence's tokens."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import torch


@torch.no_grad()
def sentence_representations(
    model, tokenizer, sentences: Sequence[str], batch_size: int = 16
) -> np.ndarray:
    """Array of shape (layers + 1, len(sentences), hidden): index 0 is the embedding layer.

    Special tokens (BOS/EOS) are left out of the mean: in a causal model the BOS state is
    the same for every sentence and would only dilute the differences being measured.
    Batches are right-padded by hand, so a tokenizer without a pad token works and
    padded positions, which real tokens never attend to, are masked out of the mean.
    """
    device = next(model.parameters()).device
    pooled_batches = []
    for start in range(0, len(sentences), batch_size):
        batch = list(sentences[start : start + batch_size])
        encoded = [tokenizer(text, return_special_tokens_mask=True) for text in batch]
        width = max(len(e["input_ids"]) for e in encoded)
        ids = torch.zeros((len(batch), width), dtype=torch.long)
        attention = torch.zeros((len(batch), width), dtype=torch.long)
        content = torch.zeros((len(batch), width), dtype=torch.float32)
        for row, e in enumerate(encoded):
            length = len(e["input_ids"])
            ids[row, :length] = torch.tensor(e["input_ids"])
            attention[row, :length] = 1
            content[row, :length] = 1.0 - torch.tensor(
                e["special_tokens_mask"], dtype=torch.float32
            )
        if (content.sum(dim=1) == 0).any():
            raise ValueError("a sentence tokenised to special tokens only")
        outputs = model(
            input_ids=ids.to(device), attention_mask=attention.to(device), output_hidden_states=True
        )
        weights = (content / content.sum(dim=1, keepdim=True)).to(device)
        pooled = torch.stack(
            [torch.einsum("bt,bth->bh", weights, layer.float()) for layer in outputs.hidden_states]
        )
        pooled_batches.append(pooled.cpu().numpy())
    return np.concatenate(pooled_batches, axis=1)
