"""The run_python and run_shell tools inside real agent runs, bad input, and choosing a backend."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import tempfile
from collections.abc import Sequence
from typing import Any

import pytest

from keel import Agent, ConfigError, Runtime
from keel.messages import Message, ToolMessage
from keel.models import ScriptedModel, ToolCall
from keel.sandbox import (
    BubblewrapBackend,
    ExecutionRequest,
    Limits,
    UnsafeLocalBackend,
    UnsafeSandboxWarning,
    get_backend,
    python_tool,
    shell_tool,
)


def run_tool(tool: Any, arguments: dict[str, Any]) -> tuple[str, dict[str, Any]]:
    """Run one call of `tool` in an agent run; return the run's status and the result the model saw."""

    def script(messages: Sequence[Message], tools: Sequence[dict[str, Any]]) -> Any:
        last = messages[-1]
        if isinstance(last, ToolMessage):
            return last.content  # the final answer repeats the tool's result
        return ToolCall(tool.name, arguments)

    agent = Agent("coder", ScriptedModel(script), tools=[tool])
    result = agent.run_sync("compute", runtime=Runtime.in_memory())
    return result.status, json.loads(result.output)


def test_run_python_computes_in_an_agent_run(bubblewrap: BubblewrapBackend) -> None:
    status, out = run_tool(python_tool(bubblewrap), {"code": "print(sum(i * i for i in range(10)))"})
    assert status == "done"
    assert out == {"exit_code": 0, "stdout": "285\n"}  # only the fields that are set reach the model


def test_run_shell_sees_its_files_and_reports_what_it_wrote(bubblewrap: BubblewrapBackend) -> None:
    script = "wc -l < data/input.csv; sort -r data/input.csv > sorted.txt; cat -"
    args = {"script": script, "stdin": "from stdin", "files": {"data/input.csv": "a\nc\nb\n"}}
    status, out = run_tool(shell_tool(bubblewrap), args)
    assert status == "done"
    assert out["stdout"] == "3\nfrom stdin"
    assert {f["path"]: f["size"] for f in out["files"] if f["kind"] == "file"} == {
        "data/input.csv": 6,
        "sorted.txt": 6,
    }


def test_code_that_does_not_compile_is_a_result(bubblewrap: BubblewrapBackend) -> None:
    status, out = run_tool(python_tool(bubblewrap), {"code": "def broken(:\n    pass"})
    assert status == "done"
    assert out["exit_code"] == 1 and "stop_reason" not in out
    assert "SyntaxError" in out["stderr"]


def test_binary_output_is_decoded_with_replacements(bubblewrap: BubblewrapBackend) -> None:
    code = "import sys; sys.stdout.buffer.write(bytes(range(256)) * 4)"
    status, out = run_tool(python_tool(bubblewrap), {"code": code})
    assert status == "done" and out["exit_code"] == 0
    assert "\ufffd" in out["stdout"] and "\\x00" in out["stdout"] and "\x00" not in out["stdout"]


def test_enormous_output_is_cut_with_a_marker_and_the_flood_is_stopped(bubblewrap: BubblewrapBackend) -> None:
    limits = Limits(max_output_bytes=1000, kill_output_bytes=1024 * 1024)
    status, out = run_tool(python_tool(bubblewrap, limits=limits), {"code": "while True:\n    print('x' * 1000)"})
    assert status == "done"
    assert out["stop_reason"] == "output_size"
    kept, marker = out["stdout"].split("\n[... output cut: ", 1)
    assert len(kept.encode()) <= 1000 and "the limit is 1000 bytes per stream]" in marker


def test_a_timeout_is_a_result(bubblewrap: BubblewrapBackend) -> None:
    status, out = run_tool(python_tool(bubblewrap, limits=Limits(timeout_s=1)), {"code": "import time; time.sleep(60)"})
    assert status == "done"
    assert out["stop_reason"] == "timeout" and out["exit_code"] == 137


def test_missing_bubblewrap_is_a_structured_error_naming_the_fix() -> None:
    backend = BubblewrapBackend(bwrap="/nonexistent/bwrap")
    status, out = run_tool(python_tool(backend), {"code": "print(1)"})
    assert status == "done"
    assert out["stop_reason"] == "unavailable" and out["exit_code"] is None
    assert "apt-get install bubblewrap python3-seccomp" in out["error"]


def test_a_workspace_dir_is_no_longer_used_and_says_so() -> None:
    private = tempfile.mkdtemp(prefix="keel-private-")  # mode 0700: unreachable to the sandbox uid
    try:
        with pytest.warns(DeprecationWarning, match="workspace_dir is no longer used"):
            backend = BubblewrapBackend(workspace_dir=private)
        if backend.unavailable_reason() is not None:
            pytest.skip("bubblewrap cannot run here")
        result = backend.run(ExecutionRequest(language="python", code="open('out.txt', 'w').write('x')"))
        assert result.ok and [f.path for f in result.files] == ["out.txt"], result
        assert os.listdir(private) == []  # the workspace lived inside the sandbox
    finally:
        os.rmdir(private)


def test_file_paths_that_leave_the_workspace_are_a_structured_error(bubblewrap: BubblewrapBackend) -> None:
    status, out = run_tool(python_tool(bubblewrap), {"code": "print(1)", "files": {"../../etc/x": "owned"}})
    assert status == "done"
    assert out["stop_reason"] == "error" and "leaves the workspace" in out["error"]


def test_root_is_refused_as_the_sandbox_uid() -> None:
    with pytest.raises(ConfigError, match="never runs as root"):
        BubblewrapBackend(uid=0)


def test_the_interpreter_must_be_visible_inside_the_sandbox() -> None:
    with pytest.raises(ConfigError, match="not under /usr"):
        BubblewrapBackend(python="/opt/venv/bin/python")


def test_unsafe_local_needs_explicit_opt_in_and_warns(workspace_base: str) -> None:
    with pytest.raises(ConfigError, match="acknowledge_unsafe=True"):
        UnsafeLocalBackend()
    with pytest.warns(UnsafeSandboxWarning, match="NOT a sandbox"):
        backend = UnsafeLocalBackend(acknowledge_unsafe=True, workspace_dir=workspace_base)
    result = backend.run(ExecutionRequest(language="python", code="import os; print(os.getuid())"))
    assert result.exit_code == 0 and result.backend == "unsafe-local"
    assert result.stdout.strip() != "0", "code ran as root"
    stopped = backend.run(ExecutionRequest(language="shell", code="sleep 60", limits=Limits(timeout_s=1)))
    assert stopped.stop_reason == "timeout"


def test_get_backend_names_the_choices(monkeypatch: pytest.MonkeyPatch) -> None:
    with pytest.raises(ConfigError, match="bubblewrap, wasm, remote, unsafe-local"):
        get_backend("docker")
    monkeypatch.delenv("KEEL_SANDBOX_URL", raising=False)
    with pytest.raises(ConfigError, match="KEEL_SANDBOX_URL"):
        get_backend("remote")
    monkeypatch.delenv("KEEL_SANDBOX_ALLOW_UNSAFE", raising=False)
    with pytest.raises(ConfigError, match="acknowledge_unsafe"):
        get_backend("unsafe-local")
    monkeypatch.setenv("KEEL_SANDBOX_BACKEND", "bubblewrap")
    assert get_backend().name == "bubblewrap"


def test_import_keel_does_not_import_the_sandbox() -> None:
    code = "import sys, keel; print(sorted(m for m in sys.modules if m.startswith('keel.sandbox') or m == 'wasmtime'))"
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert done.stdout.strip() == "[]"


def test_a_final_expression_is_printed_as_in_a_repl(bubblewrap: BubblewrapBackend) -> None:
    status, out = run_tool(python_tool(bubblewrap), {"code": "prices = [19.90, 34.90, 4.95]\nround(sum(prices), 2)"})
    assert status == "done" and out == {"exit_code": 0, "stdout": "59.75\n"}
    status, out = run_tool(python_tool(bubblewrap), {"code": "x = 2\nprint(x)"})
    assert out["stdout"] == "2\n"  # no second print of a statement that prints
    status, out = run_tool(python_tool(bubblewrap), {"code": "None"})
    assert out["stdout"] == ""


def test_the_code_only_variant_offers_just_code(bubblewrap: BubblewrapBackend) -> None:
    tool = python_tool(bubblewrap, with_files=False)
    assert list(tool.parameters["properties"]) == ["code"] and len(tool.description) < 120
    status, out = run_tool(tool, {"code": "6 * 7"})
    assert out == {"exit_code": 0, "stdout": "42\n"}
