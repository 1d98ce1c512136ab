"""The ``unsafe-local`` backend: a plain subprocess with rlimits. NOT a security boundary.

For development on machines where neither bubblewrap nor WebAssembly works. The code sees the host's
file system and network with the rights of the user it runs as; only the resource limits, a cleared
environment, a fresh working directory and the wall-clock kill apply. As root it still switches to
the unprivileged sandbox uid. It must be chosen explicitly (``acknowledge_unsafe=True``) and warns
loudly when created and on every run.
"""

from __future__ import annotations

import logging
import os
import shutil
import sys
import warnings
from contextlib import ExitStack

from ..exceptions import ConfigError
from ._common import prlimit_argv, result_from, sandbox_identity
from ._process import run_captured
from ._types import ExecutionRequest, ExecutionResult, no_egress
from ._workspace import Workspace

__all__ = ["UnsafeLocalBackend", "UnsafeSandboxWarning"]

log = logging.getLogger("keel.sandbox")

WARNING = (
    "keel sandbox backend 'unsafe-local' is NOT a sandbox: code runs as a normal process that can read "
    "the host's files and reach the network; use it only for development, never with untrusted input"
)


class UnsafeSandboxWarning(UserWarning):
    """The ``unsafe-local`` backend was created: executed code is not isolated from the host."""


class UnsafeLocalBackend:
    """Run code as a plain local process with rlimits: no isolation (development only).

    Args:
        acknowledge_unsafe: must be True; the backend refuses to exist otherwise.
        workspace_dir: where per-execution workspaces are created (default: the system temp directory).
        python: interpreter for ``python`` requests; default the system ``python3``.
        uid: the unprivileged uid to run as when keel runs as root (0 is refused).

    Raises:
        ConfigError: ``acknowledge_unsafe`` is not True, or the uid is 0.
    """

    name = "unsafe-local"

    def __init__(
        self,
        *,
        acknowledge_unsafe: bool = False,
        workspace_dir: str | None = None,
        python: str | None = None,
        uid: int | None = None,
    ) -> None:
        if acknowledge_unsafe is not True:
            raise ConfigError(
                "the 'unsafe-local' sandbox backend runs code without isolation; pass acknowledge_unsafe=True "
                "(or set KEEL_SANDBOX_ALLOW_UNSAFE=1 with KEEL_SANDBOX_BACKEND=unsafe-local) to use it anyway, "
                "or install bubblewrap (`apt-get install bubblewrap python3-seccomp`)"
            )
        warnings.warn(WARNING, UnsafeSandboxWarning, stacklevel=2)
        log.warning(WARNING)
        self.identity = sandbox_identity(uid)
        self.workspace_dir = workspace_dir
        self.python = python or shutil.which("python3", path="/usr/bin:/bin:/usr/local/bin") or sys.executable
        self.shell = shutil.which("bash", path="/usr/bin:/bin") or "/bin/sh"

    def unavailable_reason(self) -> str | None:
        """Why this backend cannot run here, or None (it needs only a POSIX system and ``prlimit``)."""
        if os.name != "posix":
            return "the unsafe-local backend needs a POSIX system"
        if shutil.which("prlimit", path="/usr/bin:/bin") is None:
            return "prlimit (util-linux) is missing, so no resource limit would apply; install util-linux"
        return None

    def run(self, request: ExecutionRequest) -> ExecutionResult:
        """Run one request as a local process in a fresh directory (no isolation) and report what happened."""
        log.warning(WARNING)
        reason = self.unavailable_reason()
        if reason is not None:
            return ExecutionResult(backend=self.name, exit_code=None, stop_reason="unavailable", error=reason)
        refused = no_egress(self.name, request, "its code reaches every host, so an allow-list would be a lie")
        if refused is not None:
            return refused
        with ExitStack() as stack:
            workspace = Workspace(self.workspace_dir, self.identity)
            stack.callback(workspace.remove)
            code_dir = Workspace(self.workspace_dir, self.identity)
            stack.callback(code_dir.remove)
            try:
                workspace.put(request.files)
            except (ValueError, OSError) as exc:
                return ExecutionResult(backend=self.name, exit_code=None, stop_reason="error", error=str(exc))
            script = "main.py" if request.language == "python" else "main.sh"
            code_dir.put({script: request.code})
            path = str(code_dir.path / script)
            program = [self.python, "-I", path] if request.language == "python" else [self.shell, path]
            home = str(workspace.path)
            outcome = run_captured(
                [*prlimit_argv(request.limits), *program],
                stdin=request.stdin.encode("utf-8", errors="replace"),
                timeout_s=request.limits.timeout_s,
                keep_bytes=request.limits.max_output_bytes,
                kill_bytes=request.limits.kill_output_bytes,
                env={"PATH": "/usr/local/bin:/usr/bin:/bin", "HOME": home, "TMPDIR": home, "LANG": "C.UTF-8"},
                cwd=home,
                user=None if self.identity is None else self.identity[0],
                group=None if self.identity is None else self.identity[1],
            )
            return result_from(self.name, request, outcome, workspace.listing())
        raise AssertionError("unreachable")  # pragma: no cover
