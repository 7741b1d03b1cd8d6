"""Evaluate multilingual checkpoints with lm-evaluation-harness on seen and unseen languages.

Entry point: ``python -m eval --help`` (see eval/README.md). Independent of ``refmoo``.
"""
