"""Evaluate multilingual checkpoints with lm-evaluation-harness on seen and unseen languages.

Entry points: ``python -m eval --help`` and ``eval.api`` (see eval/README.md). The
subpackages follow the pipeline: ``languages`` -> ``running`` -> ``comparing`` ->
``separability`` -> ``reporting``. Independent of ``refmoo``.
"""
