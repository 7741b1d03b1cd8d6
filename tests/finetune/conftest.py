"""Shared fixtures for the finetune tests: offline mode and one small prepared miniature.

Offline mode is switched on at import, before anything imports ``datasets``, so nothing
in these tests can reach the hub.
"""

from __future__ import annotations

from eval.running.offline import force_offline

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


@pytest.fixture
def one_thread():
    """The same kernels, in the same order, as the single-threaded rank subprocesses the
    trainer tests compare with bitwise."""
    import torch

    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


@pytest.fixture(scope="session")
def tiny(tmp_path_factory):
    """(model dir, data dir) of the trainer tests: a tiny random Llama with its tokenizer
    and a few rows per language (read only by the tests)."""
    from test_train_support import write_data, write_model

    root = tmp_path_factory.mktemp("tiny")
    return write_model(root / "base"), write_data(root / "data")
