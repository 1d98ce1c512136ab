"""Run one sandbox process: feed stdin, keep the head of its output, kill it on a deadline or a flood."""

from __future__ import annotations

import contextlib
import os
import selectors
import signal
import subprocess
import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import IO

__all__ = ["Captured", "decode_output", "run_captured"]

# After the process ends, sandboxed descendants may still hold the pipes (only unsafe-local lets them
# outlive it). Reading stops at end of file or after this long, whichever comes first.
DRAIN_SECONDS = 1.0


@dataclass
class Captured:
    """The outcome of one process run."""

    returncode: int
    stdout: bytes = b""
    stderr: bytes = b""
    stdout_total: int = 0
    stderr_total: int = 0
    timed_out: bool = False
    flooded: bool = False
    duration_ms: float = 0.0


def _feed(stream: IO[bytes], data: bytes) -> None:
    with contextlib.suppress(OSError):  # the program need not read all its input
        stream.write(data)
    with contextlib.suppress(OSError):
        stream.close()


def _kill(proc: subprocess.Popen[bytes]) -> None:
    """Kill the process group the sandbox was started in (the sandbox's own tear-down does the rest)."""
    try:
        os.killpg(proc.pid, signal.SIGKILL)
    except (ProcessLookupError, PermissionError):
        with contextlib.suppress(ProcessLookupError):
            proc.kill()


def run_captured(
    argv: Sequence[str],
    *,
    stdin: bytes,
    timeout_s: float,
    keep_bytes: int,
    kill_bytes: int,
    env: dict[str, str],
    cwd: str | None = None,
    pass_fds: Sequence[int] = (),
    user: int | None = None,
    group: int | None = None,
    kill: Callable[[subprocess.Popen[bytes]], None] | None = None,
    on_start: Callable[[int], None] | None = None,
) -> Captured:
    """Run `argv` in a new session, killing the whole group at `timeout_s` or after `kill_bytes` of output.

    `user` and `group` switch the child to that uid and gid (and clear supplementary groups) before it
    executes; the caller passes them when it runs as root. `kill` replaces the default kill (SIGKILL
    to the process group) when the sandbox needs another way to end all of its processes. `on_start`
    is called with the child's pid before any of `stdin` is written (a child can wait for its first
    byte to know that the call is done).
    """
    stop = kill or _kill
    started = time.perf_counter()
    extra: dict[str, object] = {}
    if user is not None:
        extra = {"user": user, "group": group, "extra_groups": []}
    proc = subprocess.Popen(  # noqa: S603 - argv is built by the backend, not from user text
        list(argv),
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        env=env,
        cwd=cwd,
        pass_fds=tuple(pass_fds),
        start_new_session=True,
        close_fds=True,
        **extra,  # type: ignore[call-overload]
    )
    assert proc.stdin is not None and proc.stdout is not None and proc.stderr is not None
    if on_start is not None:
        on_start(proc.pid)
    feeder = threading.Thread(target=_feed, args=(proc.stdin, stdin), daemon=True)
    feeder.start()

    out = Captured(returncode=0)
    out_fd, err_fd = proc.stdout.fileno(), proc.stderr.fileno()
    chunks: dict[int, bytearray] = {out_fd: bytearray(), err_fd: bytearray()}
    totals: dict[int, int] = dict.fromkeys(chunks, 0)
    deadline = started + timeout_s
    sel = selectors.DefaultSelector()
    for stream in (proc.stdout, proc.stderr):
        os.set_blocking(stream.fileno(), False)
        sel.register(stream.fileno(), selectors.EVENT_READ)
    drain_until: float | None = None
    try:
        while sel.get_map():
            now = time.perf_counter()
            if drain_until is None and proc.poll() is not None:
                drain_until = now + DRAIN_SECONDS
            limit = drain_until if drain_until is not None else deadline
            if now >= limit:
                if drain_until is None:
                    out.timed_out = True
                    stop(proc)
                    drain_until = time.perf_counter() + DRAIN_SECONDS
                    continue
                break
            for key, _ in sel.select(timeout=min(limit - now, 0.2)):
                fd = int(key.fd)
                try:
                    data = os.read(fd, 65536)
                except BlockingIOError:
                    continue
                if not data:
                    sel.unregister(fd)
                    continue
                totals[fd] += len(data)
                room = keep_bytes - len(chunks[fd])
                if room > 0:
                    chunks[fd] += data[:room]
                if sum(totals.values()) > kill_bytes and not out.flooded and drain_until is None:
                    out.flooded = True
                    stop(proc)
                    drain_until = time.perf_counter() + DRAIN_SECONDS
    finally:
        sel.close()
        if proc.poll() is None:
            remaining = max(deadline - time.perf_counter(), 0.0)
            try:
                proc.wait(timeout=remaining)
            except subprocess.TimeoutExpired:
                out.timed_out = True
                stop(proc)
                proc.wait()
        for stream in (proc.stdout, proc.stderr):
            stream.close()
        feeder.join(timeout=DRAIN_SECONDS)
    out.returncode = proc.returncode
    out.stdout, out.stderr = bytes(chunks[out_fd]), bytes(chunks[err_fd])
    out.stdout_total, out.stderr_total = totals[out_fd], totals[err_fd]
    out.duration_ms = round((time.perf_counter() - started) * 1000, 3)
    return out


def decode_output(data: bytes, total: int, limit: int) -> tuple[str, bool]:
    """Decode captured bytes as UTF-8 (invalid bytes replaced) and mark a cut; return (text, truncated)."""
    text = data.decode("utf-8", errors="replace").replace("\x00", "\\x00")
    if total > len(data) or total > limit:
        dropped = total - len(data)
        return f"{text}\n[... output cut: {dropped} more bytes; the limit is {limit} bytes per stream]", True
    return text, False
