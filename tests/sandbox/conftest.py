"""Backends for the sandbox tests: every backend that can run on this machine, real ones only."""

from __future__ import annotations

import os
import tempfile
from collections.abc import Iterator

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


SESSION_UID = 62000 + os.getpid() % 1000
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
