"""The default sandbox: bubblewrap namespaces, a seccomp filter, rlimits and an unprivileged uid.

Each execution gets new user, mount, pid, network, IPC, UTS and cgroup namespaces (``--unshare-all``:
the network namespace holds only ``lo``, so not even the host's 127.0.0.1 is reachable), no
capabilities, no further user namespaces, a cleared environment and its own session. The file system
is the host's ``/usr`` read-only, a private ``/proc`` and ``/dev``, and two size-limited tmpfs mounts,
``/tmp`` and the workspace at ``/workspace``: no host directory is writable, nothing the code writes
reaches the host's disk, and no mount names a host path of keel's. Everything else is absent: no
``/etc/shadow``, no ``/root``, no project directory. The sandbox's pid 1 (``_supervise.py``) writes
the request's files into the workspace, runs the program, kills what it left running and lists the
workspace for the result.

A seccomp filter (built with the Debian package ``python3-seccomp``) denies every socket family but
AF_UNIX, ``ptrace``, ``unshare``, ``mount`` and kernel interfaces a program does not need. A request
with a ``network`` allow-list also gets AF_INET sockets, still on its own loopback only, where pid 1
hands each connection to keel's proxy outside the sandbox (`keel.sandbox._egress`), which decides it
against the allow-list. rlimits bound CPU time, address space, processes, file size and open files;
a cgroup per execution (v2, else v1) bounds the process count and the memory of all of its
processes together when one is writable (`ExecutionResult.memory_limit` says which applied).
At the wall-clock limit the whole sandbox is killed: bubblewrap dies, and its pid namespace with it.

Code never runs as host uid 0: as root, keel switches to a dedicated unprivileged uid
(`DEFAULT_SANDBOX_UID`, or ``KEEL_SANDBOX_UID``) before starting bubblewrap.

Needs Linux with unprivileged user namespaces and ``apt-get install bubblewrap python3-seccomp``.
"""

from __future__ import annotations

import contextlib
import functools
import json
import logging
import marshal
import os
import shutil
import signal
import subprocess
import threading
import warnings
from contextlib import ExitStack
from pathlib import Path

from pydantic import TypeAdapter, ValidationError

from ..exceptions import ConfigError
from ._cgroup import RunCgroup
from ._common import MIB, prlimit_argv, result_from, sandbox_identity
from ._egress import PROXY_PORT, EgressProxy, proxy_env
from ._process import run_captured
from ._types import ExecutionRequest, ExecutionResult, FileInfo
from ._workspace import MAX_LISTED

__all__ = ["BubblewrapBackend"]

_SYSTEM_PATH = "/usr/bin:/bin"
INSTALL_HINT = "install it with `apt-get install bubblewrap python3-seccomp`, or use the wasm backend"

_filter_lock = threading.Lock()
_filter_cache: dict[tuple[str, bool], bytes] = {}
_probe_cache: dict[tuple[str, int | None], str | None] = {}
_SUPERVISOR = Path(__file__).with_name("_supervise.py").read_bytes()
_FILES = TypeAdapter(list[FileInfo])
REPORT_BYTES = 4 * MIB  # 200 entries with paths of up to 4096 bytes fit
log = logging.getLogger("keel.sandbox")


def seccomp_filter(system_python: str = "/usr/bin/python3", *, inet: bool = False) -> bytes:
    """The compiled seccomp filter (classic BPF), generated once per process with the system Python.

    With `inet`, AF_INET and AF_INET6 sockets are allowed (for allow-listed egress through the proxy).

    Raises:
        ConfigError: the system Python cannot import ``seccomp`` (package ``python3-seccomp`` missing).
    """
    with _filter_lock:
        key = (system_python, inet)
        if key not in _filter_cache:
            script = Path(__file__).with_name("_seccomp_gen.py")
            done = subprocess.run(  # noqa: S603 - fixed interpreter and script
                [system_python, "-I", str(script), *(["--inet"] if inet else [])],
                capture_output=True,
                timeout=60,
                check=False,
            )
            if done.returncode != 0 or not done.stdout:
                detail = done.stderr.decode(errors="replace").strip().splitlines()[-1:] or ["no output"]
                raise ConfigError(
                    f"cannot build the sandbox's seccomp filter with {system_python} ({detail[0]}); {INSTALL_HINT}"
                )
            _filter_cache[key] = done.stdout
        return _filter_cache[key]


def _memfd(name: str, data: bytes) -> int:
    fd = os.memfd_create(name)
    os.write(fd, data)
    os.lseek(fd, 0, os.SEEK_SET)
    return fd


def _script(request: ExecutionRequest) -> str:
    return "/run/keel/main.py" if request.language == "python" else "/run/keel/main.sh"


def _kill_sandbox(info_fd: int, proc: subprocess.Popen[bytes]) -> None:
    """Kill the namespace's pid 1 (the kernel then kills the rest), then bubblewrap itself.

    Killing bubblewrap alone would orphan the namespace's pid 1 before it is reaped.
    """
    try:
        child = int(json.loads(os.pread(info_fd, 4096, 0) or b"{}").get("child-pid", 0))
    except (OSError, ValueError):
        child = 0
    if child > 0:
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.kill(child, signal.SIGKILL)
        with contextlib.suppress(subprocess.TimeoutExpired):
            proc.wait(timeout=2.0)  # bubblewrap reaps its child and exits by itself
            return
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(proc.pid, signal.SIGKILL)


class BubblewrapBackend:
    """Run code in a bubblewrap sandbox (the default backend).

    Args:
        workspace_dir: no longer used (the workspace is a tmpfs inside the sandbox, bounded by
            `Limits.workspace_mb`); passing it warns.
        python: the interpreter for ``python`` requests, under ``/usr``; default ``/usr/bin/python3``.
        uid: the unprivileged uid (and gid) to run as when keel runs as root; default
            ``KEEL_SANDBOX_UID`` or 61111. Root (0) is refused.
        use_cgroup: add a per-execution cgroup (processes and memory) when the host allows it; default True.
        bwrap: path of the bubblewrap executable; default ``bwrap`` found in ``/usr/bin:/bin``.

    Raises:
        ConfigError: the uid is 0 or the interpreter lies outside ``/usr``.
    """

    name = "bubblewrap"

    def __init__(
        self,
        *,
        workspace_dir: str | None = None,
        python: str = "/usr/bin/python3",
        uid: int | None = None,
        use_cgroup: bool = True,
        bwrap: str | None = None,
    ) -> None:
        if not python.startswith("/usr/"):
            raise ConfigError(
                f"BubblewrapBackend: python {python!r} is not under /usr, the only host directory the sandbox "
                "sees; pass a system interpreter such as '/usr/bin/python3'"
            )
        if workspace_dir is not None:
            warnings.warn(
                "BubblewrapBackend: workspace_dir is no longer used; the workspace is a tmpfs inside the sandbox, "
                "sized by Limits.workspace_mb, and nothing is written to the host; drop the argument",
                DeprecationWarning,
                stacklevel=2,
            )
        self.identity = sandbox_identity(uid)
        self.python = python
        self.shell = "/usr/bin/bash" if os.path.exists("/usr/bin/bash") else "/bin/sh"
        self.use_cgroup = use_cgroup
        self.bwrap = shutil.which(bwrap or "bwrap", path=_SYSTEM_PATH)

    def unavailable_reason(self) -> str | None:
        """Why bubblewrap cannot run here (naming the fix), or None when it can."""
        if os.uname().sysname != "Linux":
            return "bubblewrap needs Linux; use the wasm backend on other systems"
        if self.bwrap is None:
            return f"bubblewrap (bwrap) is not installed: {INSTALL_HINT}"
        if shutil.which("prlimit", path=_SYSTEM_PATH) is None:
            return "prlimit (Debian package util-linux) is not installed: apt-get install util-linux"
        try:
            seccomp_filter()
        except ConfigError as exc:
            return str(exc)
        key = (self.bwrap, None if self.identity is None else self.identity[0])
        if key not in _probe_cache:
            probe = self.run(ExecutionRequest(language="shell", code="exit 0"), _probing=True)
            _probe_cache[key] = None if probe.exit_code == 0 else (probe.error or probe.stderr.strip()[:300])
        return _probe_cache[key]

    def _argv(self, request: ExecutionRequest, fds: dict[str, int], egress: int | None) -> list[str]:
        assert self.bwrap is not None
        limits = request.limits
        argv = [
            self.bwrap,
            "--unshare-all", "--unshare-user", "--disable-userns", "--die-with-parent", "--new-session",
            "--clearenv", "--cap-drop", "ALL", "--hostname", "sandbox",
            # The namespace's pid 1 is keel's supervisor, bubblewrap's own child (_supervise.py): when it
            # ends, the kernel kills every other process in the namespace before bubblewrap reaps it, so
            # nothing outlives the run. (bubblewrap's own init would be orphaned, and could linger as a
            # zombie counted against the process limit.)
            "--as-pid-1", "--info-fd", str(fds["info"]),
            "--ro-bind", "/usr", "/usr",
        ]  # fmt: skip
        for top in ("bin", "sbin", "lib", "lib64", "lib32", "libx32"):
            host = f"/{top}"
            if os.path.islink(host):
                argv += ["--symlink", os.readlink(host), host]
            elif os.path.isdir(host):
                argv += ["--ro-bind", host, host]
        argv += [
            "--dir", "/etc",
            "--ro-bind-try", "/etc/alternatives", "/etc/alternatives",
            "--ro-bind-try", "/etc/ld.so.cache", "/etc/ld.so.cache",
            "--ro-bind-data", str(fds["passwd"]), "/etc/passwd",
            "--ro-bind-data", str(fds["group"]), "/etc/group",
            "--proc", "/proc", "--dev", "/dev",
            "--size", str(limits.tmp_mb * MIB), "--tmpfs", "/tmp",
            "--perms", "0700", "--size", str(limits.workspace_mb * MIB), "--tmpfs", "/workspace",
            "--chdir", "/workspace",
            "--dir", "/run/keel", "--ro-bind-data", str(fds["code"]), _script(request),
            "--ro-bind-data", str(fds["supervisor"]), "/run/keel/supervise.py",
            "--setenv", "PATH", "/usr/local/bin:/usr/bin:/bin",
            "--setenv", "HOME", "/workspace", "--setenv", "TMPDIR", "/tmp", "--setenv", "USER", "sandbox",
            "--setenv", "LANG", "C.UTF-8", "--setenv", "PYTHONDONTWRITEBYTECODE", "1",
            *(proxy_env() if egress is not None else []),
            "--seccomp", str(fds["seccomp"]),
            "--remount-ro", "/",
            "--",
        ]  # fmt: skip
        supervisor = [str(fds["files"]), str(fds["report"]), "-" if egress is None else str(egress), str(PROXY_PORT)]
        argv += [self.python, "-I", "-S", "/run/keel/supervise.py", *supervisor, "--", *prlimit_argv(limits)]
        if request.language == "python":
            argv += [self.python, "-I", _script(request)]
        else:
            argv += [self.shell, _script(request)]
        return argv

    def run(self, request: ExecutionRequest, *, _probing: bool = False) -> ExecutionResult:
        """Run one request in a fresh bubblewrap sandbox and report what happened."""
        if not _probing:
            reason = self.unavailable_reason()
            if reason is not None:
                return ExecutionResult(backend=self.name, exit_code=None, stop_reason="unavailable", error=reason)
        uid, gid = self.identity if self.identity is not None else (os.getuid(), os.getgid())
        with ExitStack() as stack:
            try:
                syscalls = seccomp_filter(inet=bool(request.network))
            except ConfigError as exc:
                return ExecutionResult(backend=self.name, exit_code=None, stop_reason="unavailable", error=str(exc))
            files = dict(request.files)  # marshal version 4 (Python 3.4+): quick to load for the system Python
            fds = {
                "seccomp": _memfd("keel-seccomp", syscalls),
                "code": _memfd("keel-code", request.code.encode("utf-8", errors="surrogatepass")),
                "supervisor": _memfd("keel-supervisor", _SUPERVISOR),
                "files": _memfd("keel-files", marshal.dumps(files, 4)),
                "report": _memfd("keel-report", b""),
                "passwd": _memfd("keel-passwd", f"sandbox:x:{uid}:{gid}:sandbox:/workspace:/bin/sh\n".encode()),
                "group": _memfd("keel-group", f"sandbox:x:{gid}:\n".encode()),
                "info": _memfd("keel-info", b""),
            }
            for fd in fds.values():
                stack.callback(os.close, fd)
            proxy = None
            if request.network:
                proxy = EgressProxy(request.network)
                stack.callback(proxy.close)
            egress = None if proxy is None else proxy.inside.fileno()
            argv = self._argv(request, fds, egress)
            stdin = request.stdin.encode("utf-8", errors="replace")
            cgroup = None
            if self.use_cgroup and not _probing:
                cgroup = RunCgroup(request.limits.processes, request.limits.memory_mb * MIB)
                stack.callback(cgroup.close)
                if cgroup.dirs:
                    # bubblewrap waits for one byte of stdin, sent once keel has moved it into the cgroup:
                    # every process of the sandbox is counted from its first instruction.
                    argv = ["/bin/sh", "-c", 'read -r _ && exec "$@"', "gate", *argv]
                    stdin = b"\n" + stdin
            outcome = run_captured(
                argv,
                stdin=stdin,
                timeout_s=request.limits.timeout_s,
                keep_bytes=request.limits.max_output_bytes,
                kill_bytes=request.limits.kill_output_bytes,
                env={"PATH": _SYSTEM_PATH},
                pass_fds=[*fds.values(), *([] if egress is None else [egress])],
                user=None if self.identity is None else uid,
                group=None if self.identity is None else gid,
                kill=functools.partial(_kill_sandbox, fds["info"]),
                on_start=None if cgroup is None or not cgroup.dirs else cgroup.join,
            )
            report = _report(fds["report"])
            result = result_from(self.name, request, outcome, report.files)
            if proxy is not None:
                result = result.model_copy(update={"network": proxy.close()})
            failure = self._setup_failure(result) or report.error
            if failure is not None:
                return result.model_copy(update={"stop_reason": "error", "error": failure, "exit_code": None})
            memory_limit = "rlimit-per-process" if cgroup is None else cgroup.memory_limit()
            update: dict[str, object] = {"memory_limit": memory_limit}
            if cgroup is not None and cgroup.out_of_memory() and result.stop_reason not in ("timeout", "output_size"):
                update["stop_reason"] = "memory"
            return result.model_copy(update=update)
        raise AssertionError("unreachable")  # pragma: no cover - ExitStack does not swallow

    def _setup_failure(self, result: ExecutionResult) -> str | None:
        """Explain a sandbox that bubblewrap could not set up (it exits 1 with ``bwrap: ...``)."""
        if result.exit_code != 1 or not result.stderr.startswith("bwrap: "):
            return None
        line = result.stderr.splitlines()[0]
        hint = (
            "bubblewrap needs unprivileged user namespaces (sysctl user.max_user_namespaces > 0, "
            "kernel.unprivileged_userns_clone=1, no AppArmor restriction); or use the wasm backend"
        )
        return f"bubblewrap could not start the sandbox ({line}); {hint}"


class _Report:
    """What the sandbox's pid 1 wrote to the report memfd: the workspace listing, or why set-up failed."""

    def __init__(self, files: list[FileInfo], error: str | None = None) -> None:
        self.files = files
        self.error = error


def _report(fd: int) -> _Report:
    """Read the report (written by code that shared the sandbox with the program: checked, never trusted)."""
    try:
        lines = os.pread(fd, REPORT_BYTES, 0).decode("ascii").splitlines()
        if not lines:
            return _Report([])
        if lines[0].startswith("setup_error "):
            message = os.fsdecode(bytes.fromhex(lines[0].split(" ", 1)[1]))[:300]
            return _Report([], f"the request's files could not be written to the workspace: {message}")
        found = []
        for line in lines[1 : MAX_LISTED + 1] if lines[0] == "files" else []:
            kind, size, path = line.split(" ")
            found.append({"kind": kind, "size": int(size), "path": os.fsdecode(bytes.fromhex(path))})
        return _Report(_FILES.validate_python(found))
    except (OSError, ValueError, ValidationError):
        return _Report([])
