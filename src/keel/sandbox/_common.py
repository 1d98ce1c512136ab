"""What the process-based backends share: the unprivileged uid, rlimits, and turning an outcome into a result."""

from __future__ import annotations

import os
import shutil
import signal

from ..exceptions import ConfigError
from ._process import Captured, decode_output
from ._types import ExecutionRequest, ExecutionResult, FileInfo, Limits

__all__ = ["DEFAULT_SANDBOX_UID", "prlimit_argv", "result_from", "sandbox_identity"]

DEFAULT_SANDBOX_UID = 61111
"""The uid and gid sandboxed code runs as when keel runs as root (override with ``KEEL_SANDBOX_UID``).

A uid no account and no file on the host uses: as root, a sandbox would read bind-mounted files such
as ``/etc/shadow`` and ignore the process limit, so code never runs as host uid 0.
"""

MIB = 1024 * 1024


def sandbox_identity(uid: int | None = None) -> tuple[int, int] | None:
    """The (uid, gid) to switch to before starting a sandbox, or None when already unprivileged.

    Raises:
        ConfigError: the configured uid is 0 (root), which would defeat the sandbox.
    """
    if uid is None:
        raw = os.environ.get("KEEL_SANDBOX_UID", str(DEFAULT_SANDBOX_UID))
        try:
            uid = int(raw)
        except ValueError:
            raise ConfigError(f"KEEL_SANDBOX_UID must be a number (an unprivileged uid), got {raw!r}") from None
    if uid <= 0:
        raise ConfigError(
            f"the sandbox uid is {uid}: sandboxed code never runs as root; set KEEL_SANDBOX_UID to an "
            f"unprivileged uid such as {DEFAULT_SANDBOX_UID}"
        )
    if not hasattr(os, "geteuid") or os.geteuid() != 0:
        return None
    return uid, uid


def prlimit_argv(limits: Limits) -> list[str]:
    """The ``prlimit`` prefix that sets every rlimit (soft and hard) for the program it runs.

    The CPU soft limit sends SIGXCPU one second before the hard limit's SIGKILL, so a CPU stop is told
    apart from other kills.
    """
    prlimit = shutil.which("prlimit", path="/usr/bin:/bin") or "/usr/bin/prlimit"
    return [
        prlimit,
        f"--cpu={limits.cpu_s}:{limits.cpu_s + 1}",
        f"--as={limits.memory_mb * MIB}",
        f"--nproc={limits.processes}",
        f"--fsize={limits.file_size_mb * MIB}",
        f"--nofile={limits.open_files}",
        "--core=0",
        "--",
    ]


_MEMORY_SIGNS = ("MemoryError", "Cannot allocate memory", "out of memory", "std::bad_alloc")
_FILE_SIGNS = ("File too large", "No space left on device")


def _stop_reason(outcome: Captured, exit_code: int, stderr_tail: str) -> str | None:
    if outcome.timed_out:
        return "timeout"
    if outcome.flooded:
        return "output_size"
    if exit_code == 128 + signal.SIGXCPU:
        return "cpu"
    if exit_code == 128 + signal.SIGXFSZ or any(sign in stderr_tail for sign in _FILE_SIGNS):
        return "file_size"
    if exit_code != 0 and any(sign in stderr_tail for sign in _MEMORY_SIGNS):
        return "memory"
    return None


def result_from(backend: str, request: ExecutionRequest, outcome: Captured, files: list[FileInfo]) -> ExecutionResult:
    """Build the result of a process run: decoded, capped output, exit status and the stop reason."""
    limit = request.limits.max_output_bytes
    stdout, out_cut = decode_output(outcome.stdout, outcome.stdout_total, limit)
    stderr, err_cut = decode_output(outcome.stderr, outcome.stderr_total, limit)
    code = outcome.returncode
    exit_code = 128 - code if code < 0 else code  # a signal N is reported as 128+N, as shells do
    tail = outcome.stderr[-2048:].decode("utf-8", errors="replace")
    reason = _stop_reason(outcome, exit_code, tail)
    return ExecutionResult(
        backend=backend,
        exit_code=exit_code,
        stdout=stdout,
        stderr=stderr,
        stdout_truncated=out_cut,
        stderr_truncated=err_cut,
        duration_ms=outcome.duration_ms,
        stop_reason=reason,  # type: ignore[arg-type]
        files=files,
    )
