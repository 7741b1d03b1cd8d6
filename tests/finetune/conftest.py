"""Shared fixtures for the finetune tests: offline mode and one small prepared miniature.

Offline mode is switched on at import, before anything imports ``datasets``, so nothing
in these tests can reach the hub.
"""

from __future__ import annotations

from eval.offline import force_offline

force_offline()

import pytest  # noqa: E402

from finetune.model import PrepareSettings, prepare  # noqa: E402


@pytest.fixture(scope="session")
def prepared_miniature(tmp_path_factory):
    """``prepare`` with ``PrepareSettings.small()`` on the default 8 languages, seed 0.

    A ``finetune.model.Prepared``: ``.data`` (per-language train/eval.jsonl), ``.base``
    (tiny Llama + tokenizer), ``.tasks`` (lm-eval include path), ``.benchmarks``.
    About 10-20 s on 2 cores, once per test session.
    """
    out = tmp_path_factory.mktemp("prepared_miniature")
    return prepare(out, settings=PrepareSettings.small(), progress=False)
