"""The bubblewrap sandbox's pid 1: fill the workspace, run the program, end what is left, report.

Run by the system's ``/usr/bin/python3 -I`` inside the sandbox (standard library only), never
imported by keel. The workspace is a tmpfs that exists only in the sandbox's mount namespace, so this
process writes the request's files into it first and lists it last, after every other process of the
sandbox is gone; the listing goes to a memfd the host reads once bubblewrap has exited. With egress
allowed it also listens on the sandbox's own loopback and hands each accepted connection, as a file
descriptor, to the proxy outside (``keel.sandbox._egress``), which decides and relays.

It is the program's parent, not the program: the kernel drops default-action signals (SIGXCPU)
sent to a namespace's pid 1. It exits with the program's status (128+N for a signal N).

Argument 1 is a JSON object: ``files_fd`` (JSON ``{path: text}``), ``report_fd``, ``egress_fd``
(a unix socket, or null) and ``proxy_port``; the remaining arguments are the program's command.
"""

from __future__ import annotations

import contextlib
import ctypes
import errno
import json
import os
import signal
import socket
import stat
import subprocess
import sys
import threading

WORKSPACE = "/workspace"
MAX_LISTED = 200
PR_SET_DUMPABLE = 4
_NOFOLLOW_DIR = os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW


def put_files(files: dict[str, str]) -> None:
    """Write the request's files (paths the host has already checked) into the workspace."""
    for name, text in files.items():
        parts = name.split("/")
        for depth in range(1, len(parts)):
            with contextlib.suppress(FileExistsError):
                os.mkdir(os.path.join(WORKSPACE, *parts[:depth]))
        fd = os.open(os.path.join(WORKSPACE, name), os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW, 0o644)
        with os.fdopen(fd, "w", encoding="utf-8", errors="surrogatepass") as out:
            out.write(text)


def listing() -> list[dict[str, object]]:
    """The workspace's entries (at most 200) by lstat, walked without recursion and without following links."""
    found: list[dict[str, object]] = []
    pending = [""]
    while pending and len(found) < MAX_LISTED:
        rel = pending.pop()
        try:
            with os.scandir(os.path.join(WORKSPACE, rel) if rel else WORKSPACE) as entries:
                names = sorted(entry.name for entry in entries)
        except OSError:
            continue  # made unreadable by the program: its own entry is listed, its contents are not
        subdirs = []
        for name in names:
            path = f"{rel}/{name}" if rel else name
            try:
                info = os.lstat(os.path.join(WORKSPACE, path))
            except OSError:
                continue
            if stat.S_ISLNK(info.st_mode):
                found.append({"path": path, "size": info.st_size, "kind": "symlink"})
            elif stat.S_ISDIR(info.st_mode):
                found.append({"path": path, "size": 0, "kind": "dir"})
                subdirs.append(path)
            else:
                found.append({"path": path, "size": info.st_size, "kind": "file"})
            if len(found) >= MAX_LISTED:
                break
        pending.extend(reversed(subdirs))
    return sorted(found, key=lambda f: str(f["path"]))


def forward(listener: socket.socket, egress: socket.socket) -> None:
    """Hand each connection to the sandbox's proxy port to the proxy outside, until the socket closes."""
    while True:
        try:
            conn, _ = listener.accept()
        except OSError:
            return
        with conn:
            try:
                socket.send_fds(egress, [b"c"], [conn.fileno()])
            except OSError:
                return


def end_the_rest() -> None:
    """Kill every other process of the namespace (pid 1 itself is spared) and reap them all."""
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.kill(-1, signal.SIGKILL)
    while True:
        try:
            os.waitpid(-1, 0)
        except ChildProcessError:
            return
        except InterruptedError:
            continue


def _libc() -> ctypes.CDLL | None:
    try:
        return ctypes.CDLL(None, use_errno=True)
    except OSError:
        return None


LIBC = _libc()


def _raise_oom_score() -> None:
    # Under a memory cgroup the kernel then kills the program, not this process, when memory runs out.
    # The file belongs to the process only while it is dumpable (exec would make it so anyway).
    if LIBC is not None:
        LIBC.prctl(PR_SET_DUMPABLE, 1, 0, 0, 0)
    with contextlib.suppress(OSError), open("/proc/self/oom_score_adj", "w") as f:
        f.write("1000")


def main() -> int:
    """Run the program as described in ``sys.argv``; return the status to exit with."""
    config = json.loads(sys.argv[1])
    command = sys.argv[2:]
    if LIBC is not None:
        # Not dumpable: the program, running as the same uid, cannot open this process's descriptors.
        LIBC.prctl(PR_SET_DUMPABLE, 0, 0, 0, 0)
    with os.fdopen(config["files_fd"], "rb") as f:
        files = json.loads(f.read())
    report_fd = config["report_fd"]
    try:
        put_files(files)
    except OSError as exc:
        os.pwrite(report_fd, json.dumps({"setup_error": f"{exc.strerror}: {exc.filename}"}).encode(), 0)
        return 1
    listener = None
    if config.get("egress_fd") is not None:
        egress = socket.socket(fileno=config["egress_fd"])
        listener = socket.create_server(("127.0.0.1", config["proxy_port"]), backlog=64)
    # Started before any thread exists, so running Python code between fork and exec is safe.
    program = subprocess.Popen(command, close_fds=True, preexec_fn=_raise_oom_score)  # noqa: S603
    if listener is not None:
        threading.Thread(target=forward, args=(listener, egress), daemon=True).start()
    while True:
        try:
            status = program.wait()
            break
        except InterruptedError:
            continue
    end_the_rest()
    os.pwrite(report_fd, json.dumps({"files": listing()}).encode(), 0)
    return 128 - status if status < 0 else status


if __name__ == "__main__":
    try:
        sys.exit(main())
    except OSError as exc:
        print(f"keel sandbox: {errno.errorcode.get(exc.errno or 0, 'error')}: {exc}", file=sys.stderr)
        sys.exit(1)
