"""The trainer: standard, full-vector and bucket-level MOO on every engine.

==================  ==========================================================
``config``          :class:`TrainConfig`, its checks and its fingerprint
``loop``            :func:`train`, the loop, resume, the log and the summary
``batches``         which examples a step trains on; the micro-batch loss
``engines/``        single, DDP, FSDP2, DeepSpeed (through ``simulate.adapters``)
``partitioning``    ``--partition`` specs (simulate's syntax) on HF models
``diagnostics``     φ, φ_P, conflicts per layer, the logged weights
``checkpoint``      atomic checkpoints, pruning, RNG state
``optim``           AdamW/SGD, warmup + cosine
``loading``         the model and tokenizer, found before any work
``distributed``     process group, device, backend (gloo / NCCL)
``cli``             ``python -m finetune train``
==================  ==========================================================
"""

from .config import TrainConfig
from .loop import TrainResult, train

__all__ = ["TrainConfig", "TrainResult", "train"]
