"""What a sandbox receives and returns, and the protocol every backend implements.

These models are also the wire format of the remote-sandbox interface (`keel.sandbox.remote`): a
request is posted as `ExecutionRequest` JSON and the answer is `ExecutionResult` JSON, so a backend
running in another process, pod or machine behaves exactly like one in this process.
"""

from __future__ import annotations

import posixpath
import re
from typing import Any, Literal, Protocol, runtime_checkable

from pydantic import BaseModel, ConfigDict, Field, field_validator

from ..exceptions import ConfigError

__all__ = [
    "EgressEvent",
    "ExecutionRequest",
    "ExecutionResult",
    "FileInfo",
    "Language",
    "Limits",
    "MemoryLimit",
    "SandboxBackend",
    "SandboxUnavailable",
    "StopReason",
]

Language = Literal["python", "shell"]

StopReason = Literal["timeout", "cpu", "memory", "output_size", "file_size", "unavailable", "error"]
"""Why an execution was stopped or did not run; ``None`` in a result means the code exited by itself.

- ``timeout``: the wall-clock limit passed and the whole sandbox was killed.
- ``cpu``: the CPU-time limit passed.
- ``memory``: an allocation failed against the memory limit, or the kernel killed a process of the
  sandbox at its memory cgroup's limit.
- ``output_size``: stdout plus stderr passed ``Limits.kill_output_bytes`` and the sandbox was killed.
- ``file_size``: a write passed the file-size limit, or filled ``/tmp`` or the workspace.
- ``unavailable``: the backend cannot run on this machine (``error`` says why and how to fix it).
- ``error``: the request was invalid or the backend failed (``error`` says what).
"""


MemoryLimit = Literal["cgroup-v2", "cgroup-v1", "rlimit-per-process"]
"""What bounded ``Limits.memory_mb`` in one execution.

- ``cgroup-v2``, ``cgroup-v1``: a memory cgroup held all of the execution's processes together
  (``memory.max``, or ``memory.limit_in_bytes`` on a v1 hierarchy); tmpfs pages count too.
- ``rlimit-per-process``: no memory cgroup was writable, so only the address-space rlimit of each
  process applied; several processes can together hold ``processes`` times as much.
"""


class SandboxUnavailable(ConfigError):
    """A sandbox backend cannot run here; the message names what is missing and how to install it."""


class Limits(BaseModel):
    """Resource limits of one execution. Every limit applies to the whole sandbox.

    Attributes:
        timeout_s: wall-clock seconds before the whole sandbox is killed; default 10.
        cpu_s: CPU seconds the code may use; default 10.
        memory_mb: memory in MiB: for all of the sandbox's processes together where a memory cgroup
            is writable (their files in ``/tmp`` and the workspace included), and the address space
            of each process always (WebAssembly: linear memory); default 512.
        processes: processes and threads the sandbox may have at once; default 64.
        file_size_mb: largest file the code may write, in MiB; default 16.
        open_files: open file descriptors per process; default 256.
        tmp_mb: size of the sandbox's private ``/tmp``, in MiB; default 64.
        workspace_mb: size of the workspace in total, in MiB (bubblewrap: a tmpfs inside the
            sandbox, never on the host's disk); default 128.
        max_output_bytes: bytes of stdout and of stderr kept in the result; the rest is cut with a
            marker; default 65536.
        kill_output_bytes: stdout plus stderr bytes after which the sandbox is killed; default 8 MiB.
    """

    model_config = ConfigDict(extra="forbid", frozen=True)

    timeout_s: float = Field(default=10.0, gt=0, le=3600)
    cpu_s: int = Field(default=10, ge=1, le=3600)
    memory_mb: int = Field(default=512, ge=32, le=65536)
    processes: int = Field(default=64, ge=4, le=4096)
    file_size_mb: int = Field(default=16, ge=1, le=65536)
    open_files: int = Field(default=256, ge=16, le=65536)
    tmp_mb: int = Field(default=64, ge=1, le=65536)
    workspace_mb: int = Field(default=128, ge=1, le=65536)
    max_output_bytes: int = Field(default=65536, ge=256, le=64 * 1024 * 1024)
    kill_output_bytes: int = Field(default=8 * 1024 * 1024, ge=1024, le=1024 * 1024 * 1024)


class ExecutionRequest(BaseModel):
    """One piece of code to run in a fresh workspace.

    Attributes:
        language: ``python`` (standard-library Python 3) or ``shell`` (POSIX shell).
        code: the program's source.
        stdin: text fed to the program's standard input.
        files: text files placed in the workspace before the run, by relative path.
        limits: the resource limits.
        network: the ``host:port`` pairs the code may reach (``api.example.com:443``, ``[::1]:8080``),
            through a proxy outside the sandbox; empty (the default) means no network at all.
    """

    model_config = ConfigDict(extra="forbid", frozen=True)

    language: Language
    code: str
    stdin: str = ""
    files: dict[str, str] = Field(default_factory=dict)
    limits: Limits = Field(default_factory=Limits)
    network: list[str] = Field(default_factory=list)

    @field_validator("network")
    @classmethod
    def _host_port_pairs(cls, network: list[str]) -> list[str]:
        return [egress_entry(entry) for entry in network]

    @field_validator("files")
    @classmethod
    def _relative_paths_only(cls, files: dict[str, str]) -> dict[str, str]:
        for path in files:
            workspace_path(path)
        return files


def workspace_path(path: str) -> str:
    """Check that `path` names a file inside the workspace and return it normalised.

    Raises:
        ValueError: the path is empty, absolute, leaves the workspace with ``..``, or holds a NUL byte.
    """
    if not path or "\x00" in path:
        raise ValueError(f"file path {path!r} is empty or holds a NUL byte; name a file like 'data/input.csv'")
    if path.startswith("/"):
        raise ValueError(f"file path {path!r} is absolute; give a path relative to the workspace, like 'input.csv'")
    normal = posixpath.normpath(path)
    if normal == "." or normal == ".." or normal.startswith("../") or ".." in normal.split("/"):
        raise ValueError(f"file path {path!r} leaves the workspace; give a path inside it, like 'input.csv'")
    return normal


_HOST = re.compile(r"^(?:[a-z0-9_](?:[a-z0-9_-]{0,62})(?:\.[a-z0-9_](?:[a-z0-9_-]{0,62}))*\.?|\[[0-9a-f:.]+\])$")
_EXAMPLE = "name hosts and ports like 'api.example.com:443' or '[::1]:8080'"


def split_host_port(entry: str) -> tuple[str, int]:
    """Split ``host:port`` (IPv6 in brackets) into a lower-case host without brackets and a port.

    Raises:
        ValueError: the entry is not ``host:port`` with a valid host name or address and a port 1-65535.
    """
    host, sep, port = entry.strip().lower().rpartition(":")
    if not sep or "/" in entry:
        raise ValueError(f"network entry {entry!r} is not host:port; {_EXAMPLE}")
    if not host or not _HOST.match(host) or len(host) > 255:
        raise ValueError(f"network entry {entry!r} has no valid host; {_EXAMPLE}")
    if not port.isdigit() or not 1 <= int(port) <= 65535:
        raise ValueError(f"network entry {entry!r} needs a port from 1 to 65535; {_EXAMPLE}")
    return host.strip("[]"), int(port)


def egress_entry(entry: str) -> str:
    """Check one allow-list entry and return it normalised (lower case, IPv6 in brackets).

    Raises:
        ValueError: see `split_host_port`.
    """
    host, port = split_host_port(entry)
    return f"[{host}]:{port}" if ":" in host else f"{host}:{port}"


class EgressEvent(BaseModel):
    """One connection the sandboxed code asked the egress proxy for, and the policy's decision.

    Attributes:
        host: the host asked for, lower case (IPv6 without brackets).
        port: the port asked for.
        method: ``CONNECT`` for a tunnel (HTTPS), else the HTTP method of a proxied request.
        allowed: the allow-list holds ``host:port``.
        reason: why, in words: the entry that allowed it, or what refused or failed it.
        address: the address the proxy connected to (names are resolved outside the sandbox, and only
            when allowed); None when it did not connect.
    """

    model_config = ConfigDict(frozen=True)

    host: str
    port: int
    method: str
    allowed: bool
    reason: str
    address: str | None = None


class FileInfo(BaseModel):
    """A file the code left in the workspace.

    Attributes:
        path: relative to the workspace.
        size: bytes (for a symlink: the length of its target's name).
        kind: ``file``, ``dir`` or ``symlink`` (symlinks are reported, never followed).
    """

    model_config = ConfigDict(frozen=True)

    path: str
    size: int
    kind: Literal["file", "dir", "symlink"]


class ExecutionResult(BaseModel):
    """What happened to one execution. It is returned for every request, including failures.

    Attributes:
        backend: the backend that ran it.
        exit_code: the program's exit status; 128+N when a signal N ended it; None if it never ran.
        stdout: standard output as text (invalid UTF-8 replaced), cut at ``Limits.max_output_bytes``.
        stderr: standard error, likewise.
        stdout_truncated: stdout was cut; a marker at its end says how many bytes were dropped.
        stderr_truncated: stderr was cut, likewise.
        duration_ms: wall-clock milliseconds from start to end, sandbox set-up included.
        stop_reason: why it was stopped (see `StopReason`); None when it exited by itself.
        files: the files in the workspace after the run (those placed by the request included).
        error: what went wrong when ``stop_reason`` is ``unavailable`` or ``error``.
        memory_limit: what bounded memory (see `MemoryLimit`); None when the backend does not say.
        network: each connection the code asked for through the egress proxy, in order, with the decision.
    """

    model_config = ConfigDict(frozen=True)

    backend: str
    exit_code: int | None
    stdout: str = ""
    stderr: str = ""
    stdout_truncated: bool = False
    stderr_truncated: bool = False
    duration_ms: float = 0.0
    stop_reason: StopReason | None = None
    files: list[FileInfo] = Field(default_factory=list)
    error: str | None = None
    memory_limit: MemoryLimit | None = None
    network: list[EgressEvent] = Field(default_factory=list)

    def for_model(self) -> dict[str, Any]:
        """The result as the model reads it: exit code and output, and only the other fields that are set.

        Small models read a short result more reliably, and every field costs tokens.
        """
        shown: dict[str, Any] = {"exit_code": self.exit_code, "stdout": self.stdout}
        if self.stderr:
            shown["stderr"] = self.stderr
        for name in ("stop_reason", "error"):
            if getattr(self, name) is not None:
                shown[name] = getattr(self, name)
        if self.files:
            shown["files"] = [f.model_dump() for f in self.files]
        if self.network:
            shown["network"] = [
                {"to": f"{e.host}:{e.port}", "allowed": e.allowed, "reason": e.reason} for e in self.network
            ]
        return shown

    @property
    def ok(self) -> bool:
        """The code exited by itself with status 0."""
        return self.exit_code == 0 and self.stop_reason is None


def no_egress(backend: str, request: ExecutionRequest, why: str) -> ExecutionResult | None:
    """The error result for a request with a network allow-list on a backend that cannot enforce one."""
    if not request.network:
        return None
    return ExecutionResult(
        backend=backend,
        exit_code=None,
        stop_reason="error",
        error=f"the {backend} backend cannot give code limited network access ({why}); run requests with "
        "network=[...] on the bubblewrap backend, or drop network",
    )


@runtime_checkable
class SandboxBackend(Protocol):
    """A place to run untrusted code. Local backends and `RemoteBackend` all implement it.

    `run` must return an `ExecutionResult` for every request: invalid code, a crash, a limit reached
    or a backend that cannot start are all results, never exceptions.
    """

    name: str

    def unavailable_reason(self) -> str | None:
        """Why this backend cannot run here (naming the fix), or None when it can."""
        ...

    def run(self, request: ExecutionRequest) -> ExecutionResult:
        """Run one request in a fresh workspace and report what happened."""
        ...
