"""The miniature's tokenizer: byte-level BPE trained on the corpus with ``tokenizers``.

Digits are split one by one before BPE so that a number is read digit by digit (the
model must compose words from digits, not memorise one token per number). Like Llama's,
the tokenizer prepends ``<s>``; ``</s>`` ends a completion and ``<pad>`` pads batches.
"""

from __future__ import annotations

from collections.abc import Sequence

SPECIAL_TOKENS = ("<unk>", "<s>", "</s>", "<pad>")


def train_tokenizer(texts: Sequence[str], vocab_size: int):
    """A ``PreTrainedTokenizerFast`` (BPE, byte-level, digits split) trained on ``texts``."""
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, processors, trainers
    from transformers import PreTrainedTokenizerFast

    raw = Tokenizer(models.BPE(unk_token="<unk>"))
    raw.pre_tokenizer = pre_tokenizers.Sequence([
        pre_tokenizers.Digits(individual_digits=True),
        pre_tokenizers.ByteLevel(add_prefix_space=False),
    ])
    raw.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(
        vocab_size=vocab_size,
        special_tokens=list(SPECIAL_TOKENS),
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
        show_progress=False,
    )
    raw.train_from_iterator(texts, trainer)
    bos = raw.token_to_id("<s>")
    raw.post_processor = processors.TemplateProcessing(
        single="<s> $A", pair="<s> $A $B:1", special_tokens=[("<s>", bos)])
    return PreTrainedTokenizerFast(
        tokenizer_object=raw, bos_token="<s>", eos_token="</s>", unk_token="<unk>",
        pad_token="<pad>", padding_side="right", model_max_length=4096)
