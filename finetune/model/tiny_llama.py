"""The miniature's model: a tiny ``LlamaForCausalLM`` built from a config.

With the default settings (hidden 64, 4 layers, MLP 192, vocab 768, untied head) it has
about 0.3 M parameters in 39 tensors (9 per block, embeddings, final norm, head): small
enough that 4 methods × 3 seeds of fine-tuning with K per-language backward passes fit
the experiment's 10 minutes on 2 CPU cores.
"""

from __future__ import annotations


def build_model(settings, tokenizer, seed: int):
    """A freshly initialised model, seeded, sized by ``settings`` (``PrepareSettings``)."""
    import torch
    from transformers import LlamaConfig, LlamaForCausalLM

    config = LlamaConfig(
        vocab_size=len(tokenizer),
        hidden_size=settings.hidden_size,
        intermediate_size=settings.intermediate_size,
        num_hidden_layers=settings.num_layers,
        num_attention_heads=settings.num_heads,
        num_key_value_heads=settings.num_heads,
        max_position_embeddings=max(128, settings.max_length),
        bos_token_id=tokenizer.bos_token_id,
        eos_token_id=tokenizer.eos_token_id,
        pad_token_id=tokenizer.pad_token_id,
        tie_word_embeddings=False,
    )
    torch.manual_seed(seed)
    return LlamaForCausalLM(config)
