"""Model: the miniature's tokenizer and tiny Llama, its pretraining, and ``prepare``.

- ``settings``: ``PrepareSettings`` (corpus size, tokenizer, model dims, pretraining);
- ``tokenizer``: byte-level BPE trained on the corpus;
- ``tiny_llama``: the ``LlamaForCausalLM`` built from a config;
- ``pretrain``: the pretraining loop (progress bar, one thread);
- ``prepare``: everything together, cached by content, written atomically;
- ``cli``: ``python -m finetune prepare``.
"""

from finetune.model.prepare import Prepared, prepare
from finetune.model.settings import PrepareSettings

__all__ = ["PrepareSettings", "Prepared", "prepare"]
