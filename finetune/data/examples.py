"""Rows → token ids with a loss mask: what the trainer consumes.

Two kinds of row exist:

- ``{"text": t}``: plain language modelling; every token of ``t`` (and the end-of-sequence
  token) is a target;
- ``{"prompt": p, "completion": c}``: only the completion's tokens (and end-of-sequence)
  are targets, the prompt is context.

For a prompt/completion row the ids are ``enc(p) ++ enc'(c) ++ [eos]``, where ``enc`` adds
the tokenizer's own special tokens (a BOS for Llama-style tokenizers) and ``enc'`` adds
none; the prompt and completion are encoded apart so that the mask boundary is exact.
This is also how lm-eval scores a continuation after a context, so training and
evaluation see the same token sequence. With ``chat_template=True`` the tokenizer's chat
template renders the prompt as a user turn and the completion as the assistant's reply;
the template then supplies its own special tokens.

``loss_mask`` is aligned with ``input_ids`` (the trainer shifts for next-token loss):

>>> from tokenizers import Tokenizer, models, pre_tokenizers
>>> from transformers import PreTrainedTokenizerFast
>>> vocab = {c: i for i, c in enumerate(["<unk>", "</s>", "a", "b", "=", "|"])}
>>> raw = Tokenizer(models.WordLevel(vocab, unk_token="<unk>"))
>>> raw.pre_tokenizer = pre_tokenizers.Split("", "isolated")
>>> tok = PreTrainedTokenizerFast(tokenizer_object=raw, eos_token="</s>", unk_token="<unk>")
>>> tokenize_row({"prompt": "a|b=", "completion": "ab"}, tok)
TokenizedExample(input_ids=[2, 5, 3, 4, 2, 3, 1], loss_mask=[0, 0, 0, 0, 1, 1, 1])
>>> tokenize_row({"text": "ab"}, tok, max_length=2)
TokenizedExample(input_ids=[2, 3], loss_mask=[1, 1])
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass


@dataclass(frozen=True)
class TokenizedExample:
    """One training example: token ids and which of them are loss targets (1) or not (0)."""

    input_ids: list[int]
    loss_mask: list[int]

    def __post_init__(self) -> None:
        if len(self.input_ids) != len(self.loss_mask):
            raise ValueError("input_ids and loss_mask must have the same length")


class RowTooLong(ValueError):
    """After truncation to ``max_length`` no target token is left."""


class TemplateMismatch(ValueError):
    """The chat template renders the prompt differently inside the full conversation."""


def tokenize_row(row: Mapping[str, str], tokenizer, *, max_length: int = 128,
                 chat_template: bool = False) -> TokenizedExample:
    """Tokenise a validated row (see ``rows.check_row``); truncate to ``max_length``."""
    if "text" in row:
        ids = _encode(tokenizer, row["text"], special=True) + _eos(tokenizer)
        mask = [1] * len(ids)
    elif chat_template:
        prompt_ids, completion_ids = _chat_parts(tokenizer, row["prompt"], row["completion"])
        ids = prompt_ids + completion_ids
        mask = [0] * len(prompt_ids) + [1] * len(completion_ids)
    else:
        prompt_ids = _encode(tokenizer, row["prompt"], special=True)
        completion_ids = _encode(tokenizer, row["completion"], special=False) + _eos(tokenizer)
        ids = prompt_ids + completion_ids
        mask = [0] * len(prompt_ids) + [1] * len(completion_ids)
    ids, mask = ids[:max_length], mask[:max_length]
    # A target needs a preceding token to be predicted from, hence the sum over mask[1:].
    if sum(mask[1:]) == 0:
        raise RowTooLong(f"no target token left within max_length={max_length}")
    return TokenizedExample(input_ids=ids, loss_mask=mask)


def _encode(tokenizer, text: str, *, special: bool) -> list[int]:
    return list(tokenizer(text, add_special_tokens=special)["input_ids"])


def _eos(tokenizer) -> list[int]:
    return [] if tokenizer.eos_token_id is None else [tokenizer.eos_token_id]


def _chat_parts(tokenizer, prompt: str, completion: str) -> tuple[list[int], list[int]]:
    """Prompt ids (user turn + generation prompt) and the assistant reply's ids.

    The conversation is rendered as text and split where the prompt's rendering ends, so
    that the reply's tokens are exactly those the model must produce after the prompt.
    """
    user = [{"role": "user", "content": prompt}]
    prompt_text = tokenizer.apply_chat_template(user, add_generation_prompt=True, tokenize=False)
    full_text = tokenizer.apply_chat_template(
        user + [{"role": "assistant", "content": completion}], tokenize=False)
    if not full_text.startswith(prompt_text):
        raise TemplateMismatch(
            "the chat template renders the prompt differently once a reply follows")
    return (_encode(tokenizer, prompt_text, special=False),
            _encode(tokenizer, full_text[len(prompt_text):], special=False))
