"""Backends for the sandbox tests: every backend that can run on this machine, real ones only."""

from __future__ import annotations

import atexit
import fcntl
import os
import tempfile
from collections.abc import Iterator
from typing import IO

import pytest

from keel.sandbox import BubblewrapBackend, SandboxBackend


@pytest.fixture(scope="session")
def workspace_base() -> Iterator[str]:
    # Not under pytest's tmp_path: that sits in a 0700 directory the unprivileged sandbox uid cannot enter.
    base = tempfile.mkdtemp(prefix="keel-sandbox-tests-")
    os.chmod(base, 0o711)
    yield base
    leftovers = os.listdir(base)
    os.rmdir(base)
    assert not leftovers, f"workspaces were not removed: {leftovers}"


def _claim_uid() -> tuple[int, IO[bytes]]:
    """A sandbox uid no other test session on this machine uses: held by a lock for this process's life.

    Test sessions run side by side (several checkouts, CI jobs); a uid taken from the pid alone could be
    the same in two of them, and one would take the other's sandbox processes for its own leftovers.
    """
    start = os.getpid() % 1000
    for offset in range(1000):
        uid = 62000 + (start + offset) % 1000
        lock = open(os.path.join(tempfile.gettempdir(), f"keel-sandbox-uid-{uid}.lock"), "ab")  # noqa: SIM115
        try:
            fcntl.flock(lock, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            lock.close()
            continue
        atexit.register(lock.close)  # the lock is released when the session's process ends
        return uid, lock
    raise RuntimeError("no free sandbox uid between 62000 and 62999: 1,000 test sessions hold them all")


SESSION_UID, _UID_LOCK = _claim_uid()
"""The sandbox uid of this test session (as root): a process of it left behind was left by these tests."""


@pytest.fixture(scope="session")
def bubblewrap(workspace_base: str) -> BubblewrapBackend:
    backend = BubblewrapBackend(uid=SESSION_UID)
    reason = backend.unavailable_reason()
    if reason is not None:
        pytest.skip(f"bubblewrap cannot run here: {reason} (`make sysdeps` installs it)")
    return backend


@pytest.fixture(scope="session")
def wasm(workspace_base: str) -> SandboxBackend:
    pytest.importorskip("wasmtime", reason="the wasm backend needs the sandbox-wasm extra")
    from keel.sandbox.wasm import WasmBackend

    backend = WasmBackend(workspace_dir=workspace_base)
    reason = backend.unavailable_reason()
    if reason is not None:
        pytest.skip(reason)
    backend.warm()  # one compile (or cache load) per session, shared by every wasm test
    return backend


@pytest.fixture(params=["bubblewrap", pytest.param("wasm", marks=pytest.mark.slow)])
def backend(request: pytest.FixtureRequest) -> SandboxBackend:
    """Each backend that isolates code (unsafe-local does not, so it is not in the escape suite)."""
    found: SandboxBackend = request.getfixturevalue(request.param)
    return found
