"""Fixtures for the eval tests: offline mode, a network guard, tiny checkpoints, local tasks.

Offline mode is switched on at import, before anything imports ``datasets``; the guard
then turns any remaining network attempt into a recorded, failing error.
"""

from __future__ import annotations

import atexit
import os
import shutil
import socket
import tempfile

from eval.running.offline import force_offline

force_offline()
# A private datasets cache: nothing can be served from an earlier, online session.
if "HF_DATASETS_CACHE" not in os.environ:
    os.environ["HF_DATASETS_CACHE"] = tempfile.mkdtemp(prefix="refmoo-eval-datasets-")
    atexit.register(shutil.rmtree, os.environ["HF_DATASETS_CACHE"], ignore_errors=True)

import pytest  # noqa: E402

from eval.languages.registry import build_registry, load_task_manager  # noqa: E402
from eval.languages.selection import plan_run  # noqa: E402
from eval.running.checkpoints import from_objects, load_checkpoint  # noqa: E402
from eval.running.local_tasks import write_local_suite  # noqa: E402
from eval.running.runner import EvalSettings, run_evaluation  # noqa: E402
from tests.eval.tiny_models import (  # noqa: E402
    SEEN,
    UNSEEN,
    build_model,
    fine_tune,
    save_checkpoint,
    train_tokenizer,
)

_LOCAL_HOSTS = {"localhost", "127.0.0.1", "::1", "0.0.0.0", ""}


class NetworkGuard:
    """Refuses and records every socket connection or DNS lookup to a non-local host."""

    def __init__(self) -> None:
        self.attempts: list[str] = []

    def refuse(self, what: str) -> None:
        self.attempts.append(what)
        raise ConnectionRefusedError(f"network access blocked in tests: {what}")

    def check_address(self, address) -> None:
        if isinstance(address, tuple) and str(address[0]) not in _LOCAL_HOSTS:
            self.refuse(f"connect {address!r}")


@pytest.fixture
def network_guard(monkeypatch) -> NetworkGuard:
    guard = NetworkGuard()
    real_connect, real_connect_ex = socket.socket.connect, socket.socket.connect_ex
    real_getaddrinfo = socket.getaddrinfo

    def connect(sock, address):
        guard.check_address(address)
        return real_connect(sock, address)

    def connect_ex(sock, address):
        guard.check_address(address)
        return real_connect_ex(sock, address)

    def getaddrinfo(host, *args, **kwargs):
        if host is not None and str(host) not in _LOCAL_HOSTS:
            guard.refuse(f"resolve {host!r}")
        return real_getaddrinfo(host, *args, **kwargs)

    monkeypatch.setattr(socket.socket, "connect", connect)
    monkeypatch.setattr(socket.socket, "connect_ex", connect_ex)
    monkeypatch.setattr(socket, "getaddrinfo", getaddrinfo)
    return guard


@pytest.fixture(scope="session")
def local_suite(tmp_path_factory):
    return write_local_suite(tmp_path_factory.mktemp("local_suite"))


@pytest.fixture(scope="session")
def local_task_manager(local_suite):
    return load_task_manager([local_suite], include_defaults=False)


@pytest.fixture(scope="session")
def local_registry(local_task_manager):
    return build_registry(local_task_manager)


@pytest.fixture(scope="session")
def default_task_manager():
    """lm-eval's index of every task it ships (indexing takes seconds)."""
    return load_task_manager([], include_defaults=True)


@pytest.fixture(scope="session")
def default_registry(default_task_manager):
    """The registry over every task the installed lm-eval ships."""
    return build_registry(default_task_manager)


@pytest.fixture(scope="session")
def tokenizer():
    return train_tokenizer()


@pytest.fixture(scope="session")
def base_checkpoint(tmp_path_factory, tokenizer):
    model = build_model(tokenizer, seed=0)
    return save_checkpoint(model, tokenizer, tmp_path_factory.mktemp("base"))


@pytest.fixture(scope="session")
def finetuned_checkpoint(tmp_path_factory, tokenizer):
    model = fine_tune(build_model(tokenizer, seed=0), tokenizer, SEEN)
    return save_checkpoint(model, tokenizer, tmp_path_factory.mktemp("finetuned"))


@pytest.fixture(scope="session")
def local_plan(local_registry):
    return plan_run(local_registry, SEEN, UNSEEN)


@pytest.fixture(scope="session")
def base_run(tmp_path_factory, base_checkpoint, local_plan, local_task_manager, local_registry):
    """A finished run of the base checkpoint on the whole local suite (no limit)."""
    out = tmp_path_factory.mktemp("runs") / "base"
    summary = run_evaluation(
        load_checkpoint(base_checkpoint),
        local_plan,
        local_task_manager,
        out,
        EvalSettings(batch_size=8),
        local_registry.metric_preferences,
        label="base",
        show_progress=False,
    )
    return out, summary


@pytest.fixture
def in_memory(tokenizer):
    return from_objects(build_model(tokenizer, seed=0), tokenizer)
