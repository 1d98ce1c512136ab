"""The WebAssembly backend runs only the CPython build whose SHA-256 is pinned, and runs Python only."""

from __future__ import annotations

from pathlib import Path

import pytest

from keel.sandbox import ExecutionRequest

wasm = pytest.importorskip("keel.sandbox.wasm")
pytest.importorskip("wasmtime", reason="the wasm backend needs the sandbox-wasm extra")


def test_a_wasm_file_with_another_hash_is_refused(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, workspace_base: str
) -> None:
    tampered = tmp_path / "python-3.12.0.wasm"
    tampered.write_bytes(b"\x00asm\x01\x00\x00\x00 not the pinned build")
    saved = dict(wasm._state)
    wasm._state.clear()
    monkeypatch.setattr(wasm, "_wasm_file", lambda: tampered)
    try:
        result = wasm.WasmBackend(workspace_dir=workspace_base).run(
            ExecutionRequest(language="python", code="print(1)")
        )
    finally:
        wasm._state.clear()
        wasm._state.update(saved)
    assert result.stop_reason == "unavailable" and result.exit_code is None
    assert f"not the pinned {wasm.PYTHON_WASM_SHA256}" in (result.error or "")


def test_shell_requests_are_an_error_result(workspace_base: str) -> None:
    result = wasm.WasmBackend(workspace_dir=workspace_base).run(ExecutionRequest(language="shell", code="ls"))
    assert result.stop_reason == "error" and "runs Python only" in (result.error or "")
