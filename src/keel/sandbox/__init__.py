r"""Sandboxed code execution: the ``run_python`` and ``run_shell`` tools and the backends behind them.

Backends (all implement `SandboxBackend`; choose with ``KEEL_SANDBOX_BACKEND`` or pass one):

- ``bubblewrap`` (default, Linux): namespaces, seccomp, rlimits, cgroups, an unprivileged uid; no
  network, or only the ``host:port`` pairs a request allows, through a proxy outside the sandbox.
- ``wasm``: standard-library Python in WebAssembly (wasmtime) on any OS; extra ``keel[sandbox-wasm]``.
- ``remote``: a sandbox service reached over HTTP (`RemoteBackend`, served by `serve`), e.g. the
  gVisor pods in ``deploy/k8s/sandbox``.
- ``unsafe-local``: a plain subprocess with rlimits, by explicit opt-in only; not a security boundary.

Example:
    >>> from keel.sandbox import ExecutionRequest, get_backend
    >>> result = get_backend().run(ExecutionRequest(language="python", code="print(6 * 7)"))  # doctest: +SKIP
    >>> result.stdout, result.exit_code  # doctest: +SKIP
    ('42\\n', 0)

``import keel`` does not import this package; importing it loads no third-party library but httpx
(wasmtime is imported on the first WebAssembly run).
"""

from ._common import DEFAULT_SANDBOX_UID
from ._types import (
    EgressEvent,
    ExecutionRequest,
    ExecutionResult,
    FileInfo,
    Language,
    Limits,
    MemoryLimit,
    SandboxBackend,
    SandboxUnavailable,
    StopReason,
)
from .bubblewrap import BubblewrapBackend
from .local import UnsafeLocalBackend, UnsafeSandboxWarning
from .remote import RemoteBackend, SandboxServer, serve
from .tools import BACKENDS, get_backend, python_tool, run_python, run_shell, shell_tool
from .wasm import WasmBackend

__all__ = [
    "BACKENDS",
    "BubblewrapBackend",
    "DEFAULT_SANDBOX_UID",
    "EgressEvent",
    "ExecutionRequest",
    "ExecutionResult",
    "FileInfo",
    "Language",
    "Limits",
    "MemoryLimit",
    "RemoteBackend",
    "SandboxBackend",
    "SandboxServer",
    "SandboxUnavailable",
    "StopReason",
    "UnsafeLocalBackend",
    "UnsafeSandboxWarning",
    "WasmBackend",
    "get_backend",
    "python_tool",
    "run_python",
    "run_shell",
    "serve",
    "shell_tool",
]
