import os
import subprocess
import sys

SCRIPT = """
import datasets
from eval.running.offline import force_offline
try:
    force_offline()
except RuntimeError as err:
    print("refused:", err)
"""


def test_offline_mode_set_after_datasets_import_is_refused_loudly():
    env = {
        k: v for k, v in os.environ.items() if k not in ("HF_HUB_OFFLINE", "HF_DATASETS_OFFLINE")
    }
    done = subprocess.run(
        [sys.executable, "-c", SCRIPT], env=env, capture_output=True, text=True, check=True
    )
    assert "refused: `datasets` was imported before offline mode was set" in done.stdout


def test_offline_mode_is_in_force_for_the_test_session():
    import datasets.config
    import huggingface_hub.constants

    assert datasets.config.HF_HUB_OFFLINE
    assert huggingface_hub.constants.HF_HUB_OFFLINE
