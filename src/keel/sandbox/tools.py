"""The ``run_python`` and ``run_shell`` tools, and choosing a backend.

Both tools return an `ExecutionResult` for every call (shown to the model as
`ExecutionResult.for_model`: the fields that are set): code that does not compile, a crash, binary or
enormous output, a limit reached, even a backend that cannot run on this machine, all come back as a
structured result the model reads, never as an exception that stops the run.

Example:
    >>> from keel import Agent
    >>> from keel.sandbox import python_tool
    >>> agent = Agent("analyst", "local", tools=[python_tool()])  # doctest: +SKIP
"""

from __future__ import annotations

import ast
import os
import threading
from collections.abc import Sequence
from typing import Any

from ..exceptions import ConfigError
from ..tools import Tool
from ._types import ExecutionRequest, ExecutionResult, Language, Limits, SandboxBackend, egress_entry

__all__ = ["BACKENDS", "get_backend", "python_tool", "run_python", "run_shell", "shell_tool"]

BACKENDS = ("bubblewrap", "wasm", "remote", "unsafe-local")
"""Backend names `get_backend` accepts (also as ``KEEL_SANDBOX_BACKEND``)."""


def get_backend(name: str | None = None) -> SandboxBackend:
    """Create the backend called `name`, or the one ``KEEL_SANDBOX_BACKEND`` names (default ``bubblewrap``).

    ``remote`` reads its address from ``KEEL_SANDBOX_URL`` (and a token from ``KEEL_SANDBOX_TOKEN``);
    ``unsafe-local`` additionally needs ``KEEL_SANDBOX_ALLOW_UNSAFE=1``.

    Raises:
        ConfigError: the name is unknown, or a required setting is missing.
    """
    chosen = name or os.environ.get("KEEL_SANDBOX_BACKEND") or "bubblewrap"
    if chosen == "bubblewrap":
        from .bubblewrap import BubblewrapBackend

        return BubblewrapBackend()
    if chosen == "wasm":
        from .wasm import WasmBackend

        return WasmBackend()
    if chosen == "remote":
        from .remote import RemoteBackend

        url = os.environ.get("KEEL_SANDBOX_URL")
        if not url:
            raise ConfigError("sandbox backend 'remote' needs KEEL_SANDBOX_URL, e.g. http://keel-sandbox:8750")
        return RemoteBackend(url, token=os.environ.get("KEEL_SANDBOX_TOKEN"))
    if chosen == "unsafe-local":
        from .local import UnsafeLocalBackend

        return UnsafeLocalBackend(acknowledge_unsafe=os.environ.get("KEEL_SANDBOX_ALLOW_UNSAFE") == "1")
    raise ConfigError(f"unknown sandbox backend {chosen!r}; choose one of {', '.join(BACKENDS)}")


class _Runner:
    """Calls a backend, creating the default one on first use, and turns every failure into a result."""

    def __init__(
        self,
        backend: SandboxBackend | str | None,
        limits: Limits | None,
        language: Language,
        network: Sequence[str] = (),
    ) -> None:
        self._backend = backend
        self._lock = threading.Lock()
        self.limits = limits or Limits()
        self.language = language
        # Checked now: a mistyped allow-list entry is the developer's error, not a result for the model.
        self.network = [egress_entry(entry) for entry in network]

    def backend(self) -> SandboxBackend:
        with self._lock:
            if not isinstance(self._backend, SandboxBackend):
                self._backend = get_backend(self._backend)
            return self._backend

    def __call__(self, code: str, stdin: str, files: dict[str, str] | None) -> ExecutionResult:
        try:
            backend = self.backend()
        except ConfigError as exc:
            name = self._backend if isinstance(self._backend, str) else "default"
            return ExecutionResult(backend=name, exit_code=None, stop_reason="unavailable", error=str(exc))
        try:
            request = ExecutionRequest(
                language=self.language,
                code=code,
                stdin=stdin,
                files=files or {},
                limits=self.limits,
                network=self.network,
            )
        except ValueError as exc:  # a file path that leaves the workspace
            return ExecutionResult(backend=backend.name, exit_code=None, stop_reason="error", error=str(exc))
        try:
            return backend.run(request)
        except (OSError, ConfigError) as exc:
            return ExecutionResult(
                backend=backend.name, exit_code=None, stop_reason="error", error=f"{type(exc).__name__}: {exc}"
            )


PYTHON_DESCRIPTION = "Run Python 3 (standard library, no network) in a sandbox; returns exit_code and what it prints."
SHELL_DESCRIPTION = "Run a bash script (coreutils, grep, sed, awk, python3; no network) in a sandbox."


def _description(base: str, network: Sequence[str]) -> str:
    if not network:
        return base
    return base.replace("no network", f"network only to {', '.join(network)} through HTTPS_PROXY")


def show_last_expression(code: str) -> str:
    """Make a program print the value of its last statement when that is an expression, as a REPL does.

    ``19.9 + 34.9`` then prints ``54.8`` instead of nothing (models often forget the ``print``).
    Code that does not parse here is returned unchanged, so the sandbox reports its own error.
    """
    try:
        tree = ast.parse(code)
    except (SyntaxError, ValueError):
        return code
    if not tree.body or not isinstance(tree.body[-1], ast.Expr):
        return code
    last = tree.body[-1]
    value = last.value
    if isinstance(value, ast.Call) and isinstance(value.func, ast.Name) and value.func.id == "print":
        return code
    segment = ast.get_source_segment(code, last)
    if segment is None or last.end_lineno is None or last.end_col_offset is None:
        return code
    lines = code.splitlines(keepends=True)
    before = "".join(lines[: last.lineno - 1]) + lines[last.lineno - 1][: last.col_offset]
    after = lines[last.end_lineno - 1][last.end_col_offset :] + "".join(lines[last.end_lineno :])
    shown = f"__keel_value = ({segment})\nif __keel_value is not None:\n    print(repr(__keel_value))\n"
    return before + shown + (after if after.strip() else "")


def python_tool(
    backend: SandboxBackend | str | None = None,
    *,
    limits: Limits | None = None,
    name: str = "run_python",
    with_files: bool = True,
    network: Sequence[str] = (),
) -> Tool:
    """A ``run_python`` tool that runs standard-library Python 3 in a sandbox.

    The model's code runs as given, except that a final expression's value is printed, as in a REPL.

    Args:
        backend: a backend object, a backend name, or None for ``KEEL_SANDBOX_BACKEND`` (default
            bubblewrap), created on the first call.
        limits: resource limits of each run; default `Limits()`.
        name: the tool's name.
        with_files: offer the ``stdin`` and ``files`` arguments too; False keeps the tool's schema to
            ``code`` alone (fewer tokens, and small models fill no empty arguments).
        network: ``host:port`` pairs the code may reach through the sandbox's egress proxy (see
            `ExecutionRequest.network`); default none. With any, the tool is not idempotent: a call
            may have effects elsewhere, so an interrupted one is not re-run silently.

    Raises:
        ValueError: a ``network`` entry is not ``host:port``.
    """
    runner = _Runner(backend, limits, "python", network)

    def run_python(code: str, stdin: str = "", files: dict[str, str] | None = None) -> dict[str, Any]:
        """Run a Python 3 program (standard library only) in an isolated sandbox without network.

        Args:
            code: the program's source, e.g. "print(sum(range(10)))".
            stdin: text for the program's standard input.
            files: text files to create in the working directory first, by relative path.
        """
        return runner(show_last_expression(code), stdin, files).for_model()

    def run_python_code(code: str) -> dict[str, Any]:
        """Run a Python 3 program (standard library only) in an isolated sandbox without network.

        Args:
            code: the program's source, e.g. "print(sum(range(10)))".
        """
        return runner(show_last_expression(code), "", None).for_model()

    func = run_python if with_files else run_python_code
    return Tool(
        func,
        name=name,
        description=_description(PYTHON_DESCRIPTION, runner.network),
        idempotent=not runner.network,
        timeout=runner.limits.timeout_s + 30,
    )


def shell_tool(
    backend: SandboxBackend | str | None = None,
    *,
    limits: Limits | None = None,
    name: str = "run_shell",
    network: Sequence[str] = (),
) -> Tool:
    """A ``run_shell`` tool that runs a bash script in a sandbox.

    Args:
        backend: a backend object, a backend name, or None for ``KEEL_SANDBOX_BACKEND`` (default
            bubblewrap), created on the first call. The wasm backend runs Python only.
        limits: resource limits of each run; default `Limits()`.
        name: the tool's name.
        network: ``host:port`` pairs the script may reach, as for `python_tool`; default none.

    Raises:
        ValueError: a ``network`` entry is not ``host:port``.
    """
    runner = _Runner(backend, limits, "shell", network)

    def run_shell(script: str, stdin: str = "", files: dict[str, str] | None = None) -> dict[str, Any]:
        """Run a bash script in an isolated sandbox without network.

        Args:
            script: the script, e.g. "ls -l && wc -l data.csv".
            stdin: text for the script's standard input.
            files: text files to create in the working directory first, by relative path.
        """
        return runner(script, stdin, files).for_model()

    return Tool(
        run_shell,
        name=name,
        description=_description(SHELL_DESCRIPTION, runner.network),
        idempotent=not runner.network,
        timeout=runner.limits.timeout_s + 30,
    )


run_python = python_tool()
"""``run_python`` on the default backend (``KEEL_SANDBOX_BACKEND``, else bubblewrap)."""

run_shell = shell_tool()
"""``run_shell`` on the default backend (``KEEL_SANDBOX_BACKEND``, else bubblewrap)."""
