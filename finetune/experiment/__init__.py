"""The experiment: methods × seeds on one base model, evaluated, compared and reported.

``python -m finetune experiment --config miniature --out runs/demo`` (``make demo``).

==================  =========================================================
``config``          the TOML config (shipped: ``configs/miniature.toml``,
                    ``configs/quick.toml``), checked before any work
``pipeline``        prepare once; train, evaluate, measure each method × seed;
                    resume from step markers
``layout``          where each step's files live; the markers
``parallel``        parallel sentences for separability in any language
``significance``    seed-averaged (paired) bootstrap intervals on eval's bootstrap
``logs``            series and costs from the trainer's log.jsonl
``results``         results.json, rebuilt from the files the steps wrote
``figures``         the report's PNGs; ``report``: report.md
==================  =========================================================
"""

from finetune.experiment.config import ExperimentConfig, MethodSpec, load_config
from finetune.experiment.pipeline import run_experiment

__all__ = ["ExperimentConfig", "MethodSpec", "load_config", "run_experiment"]
