"""One cgroup per bubblewrap execution: its processes and its memory, bounded for all of them together.

cgroup v2 (one directory with ``pids.max`` and ``memory.max``) where the unified hierarchy at
``/sys/fs/cgroup`` delegates those controllers and is writable; otherwise the v1 ``memory`` and
``pids`` hierarchies (``memory.limit_in_bytes``, ``pids.max``) where those are writable. Where none
is, nothing is created and the per-process rlimits are all that holds; the result says which.
"""

from __future__ import annotations

import logging
import os
import signal
import time
import uuid
from contextlib import suppress
from pathlib import Path

from ._types import MemoryLimit

__all__ = ["RunCgroup"]

ROOT = Path("/sys/fs/cgroup")
RMDIR_SECONDS = 30.0  # killed processes leave their cgroup once reaped: moments, or seconds on a loaded host
PREFIX = "keel-sandbox-"
log = logging.getLogger("keel.sandbox")
_warned: set[str] = set()


class RunCgroup:
    """The cgroup (v2) or cgroups (v1, one per controller) of one execution, when the host lets keel make them.

    Args:
        processes: the process limit for all of the execution's processes.
        memory_bytes: the memory limit for all of them (tmpfs pages they write included).
    """

    def __init__(self, processes: int, memory_bytes: int) -> None:
        self.dirs: dict[str, Path] = {}  # controller ("pids", "memory") -> its directory
        self.version: int | None = None
        self.joined = False
        # The owner's pid is in the name, so a later execution can remove what a killed keel process left.
        name = f"{PREFIX}{os.getpid()}-{uuid.uuid4().hex[:12]}"
        _sweep_orphans()
        limits = {"pids": {"pids.max": str(processes)}}
        v2_memory = {"memory.max": str(memory_bytes), "memory.swap.max": "0"}
        v1_memory = {"memory.limit_in_bytes": str(memory_bytes), "memory.memsw.limit_in_bytes": str(memory_bytes)}
        delegated = _read(ROOT / "cgroup.subtree_control").split()
        wanted = {c: limits.get(c, v2_memory) for c in ("pids", "memory") if c in delegated}
        if (ROOT / "cgroup.subtree_control").exists():  # a v2 hierarchy: never mix in v1 paths
            merged = {k: v for files in wanted.values() for k, v in files.items()}
            path = self._make(ROOT / name, merged) if wanted and os.access(ROOT, os.W_OK) else None
            if path is not None:
                self.dirs = dict.fromkeys(wanted, path)
                self.version = 2
        else:
            for controller, files in (("pids", limits["pids"]), ("memory", v1_memory)):
                root = ROOT / controller
                if os.access(root, os.W_OK):
                    path = self._make(root / name, files)
                    if path is not None:
                        self.dirs[controller] = path
            self.version = 1 if self.dirs else None

    @staticmethod
    def _make(path: Path, files: dict[str, str]) -> Path | None:
        try:
            path.mkdir()
        except OSError:
            return None
        try:
            for file, value in files.items():
                target = path / file
                if target.exists():  # memory.swap.max / memsw exist only with swap accounting
                    target.write_text(value)
        except OSError:
            _rmdir(path)
            return None
        return path

    def join(self, pid: int) -> None:
        """Move process `pid` (not yet running sandboxed code) into every cgroup; its children follow it."""
        try:
            for path in sorted(set(self.dirs.values())):
                (path / "cgroup.procs").write_text(str(pid))
        except OSError as exc:
            # cgroup v2 without delegation refuses the move: say so once; the rlimits still hold.
            if "join" not in _warned:
                _warned.add("join")
                log.warning("keel sandbox: could not join the cgroup (%s); limits hold per process", exc)
            return
        self.joined = bool(self.dirs)

    def memory_limit(self) -> MemoryLimit:
        """What bounded memory: the memory cgroup if the execution joined it, else the per-process rlimit."""
        if self.joined and "memory" in self.dirs:
            return "cgroup-v2" if self.version == 2 else "cgroup-v1"
        return "rlimit-per-process"

    def out_of_memory(self) -> bool:
        """The kernel killed a process of the execution for passing the memory limit."""
        path = self.dirs.get("memory")
        if path is None:
            return False
        text = _read(path / ("memory.events" if self.version == 2 else "memory.oom_control"))
        for line in text.splitlines():
            key, _, value = line.partition(" ")
            if key == "oom_kill" and value.strip().isdigit():
                return int(value) > 0
        return False

    def close(self) -> None:
        """Kill whatever of the execution is still in the cgroups, then remove them once the kernel lets go.

        A cgroup can be removed only when no process is left in it; under load, processes killed with the
        sandbox take a while to be reaped, so this waits for that (bounded by `RMDIR_SECONDS`).
        """
        deadline = time.monotonic() + RMDIR_SECONDS
        for path in set(self.dirs.values()):
            while not _rmdir(path) and time.monotonic() < deadline:
                _kill_members(path)
                time.sleep(0.01)  # polling a kernel state with a bounded deadline, not synchronising code
            if path.exists():
                log.warning("keel sandbox: cgroup %s still held processes after %.0f s", path, RMDIR_SECONDS)
        self.dirs = {}


def _kill_members(path: Path) -> None:
    """SIGKILL every process still in the cgroup (the sandbox is over; nothing in it may outlive it)."""
    for pid in _read(path / "cgroup.procs").split():
        with suppress(ProcessLookupError, PermissionError, ValueError):
            os.kill(int(pid), signal.SIGKILL)


def _sweep_orphans() -> None:
    """Remove the empty cgroups of keel processes that died before they could (kill -9 mid-execution)."""
    for root in (ROOT, ROOT / "memory", ROOT / "pids"):
        try:
            names = [n for n in os.listdir(root) if n.startswith(PREFIX)]
        except OSError:
            continue
        for name in names:
            owner = name[len(PREFIX) :].partition("-")[0]
            if not owner.isdigit() or _alive(int(owner)):
                continue
            _kill_members(root / name)
            _rmdir(root / name)


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def _rmdir(path: Path) -> bool:
    with suppress(FileNotFoundError):
        try:
            path.rmdir()
        except OSError:
            return False
    return True


def _read(path: Path) -> str:
    try:
        return path.read_text()
    except OSError:
        return ""
