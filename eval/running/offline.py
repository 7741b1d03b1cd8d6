"""Switch Hugging Face libraries to offline mode before they read their configuration.

``datasets`` and ``huggingface_hub`` read HF_HUB_OFFLINE / HF_DATASETS_OFFLINE once, at
import time; setting them later has no effect and ``load_dataset("json", ...)`` then
still calls the hub. So offline mode must be chosen before the first import.
"""

from __future__ import annotations

import os
import sys

OFFLINE_VARIABLES = ("HF_HUB_OFFLINE", "HF_DATASETS_OFFLINE")


def force_offline() -> None:
    """Set the offline variables; fail loudly if it is already too late for them to work."""
    for name in OFFLINE_VARIABLES:
        os.environ[name] = "1"
    # huggingface_hub (imported by transformers) reads its constant at call time, so an
    # already imported copy can still be switched; datasets copies it at import time.
    hub = sys.modules.get("huggingface_hub.constants")
    if hub is not None:
        hub.HF_HUB_OFFLINE = True
    if "datasets" in sys.modules and not sys.modules["datasets"].config.HF_HUB_OFFLINE:
        raise RuntimeError(
            "`datasets` was imported before offline mode was set, so it would still reach "
            "the hub; call eval.running.offline.force_offline() (or export HF_HUB_OFFLINE=1 "
            "HF_DATASETS_OFFLINE=1) before importing datasets or lm_eval"
        )
