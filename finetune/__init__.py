"""finetune: multilingual fine-tuning with standard, full-vector and bucket-level MOO.

The main job of the package. One loss per language (arXiv 2606.05613 casts
multilingual fine-tuning as multi-objective optimisation); the update is

- ``standard``: one backward pass of the mean loss;
- ``full``: an aggregator of ``refmoo`` applied to the K×D matrix of
  per-language gradients;
- ``bucket``: the same aggregator applied per bucket of a partition
  (``refmoo.bucketwise``), as a distributed engine would on its own buckets.

The pieces, one responsibility each:

==================  =========================================================
``data/``           the embedded multilingual corpus, reading user data,
                    tokenised examples
``model/``          the miniature's tokenizer and tiny Llama, its pretraining,
                    and ``prepare``
``train/``          the trainer loop, the update methods, the engines (single,
                    DDP, FSDP2, DeepSpeed ZeRO-2 through ``simulate.adapters``),
                    checkpoints and resume, the per-step log
``experiment/``     methods × seeds: train, evaluate with ``eval`` on seen and
                    unseen languages, compare, report
==================  =========================================================

Dependencies flow one way: this package imports ``refmoo``, ``simulate.adapters``
and ``eval``; none of them imports it.
"""
