"""Stage 2, running one checkpoint: a run plan evaluated unit by unit into a run directory.

``checkpoints`` loads the model once, ``runner`` calls lm-eval per (benchmark, language)
unit, ``store`` lays out and resumes the run directory, ``scores`` reads a unit's metric,
``aggregate`` and ``summary`` average them into summary.json; ``offline``, ``hub`` and
``local_tasks`` keep runs working without network.
"""
