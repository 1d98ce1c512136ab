"""The bubblewrap sandbox's pid 1: fill the workspace, run the program, end what is left, report.

Run by the system's ``/usr/bin/python3 -I`` inside the sandbox (standard library only), never
imported by keel. The workspace is a tmpfs that exists only in the sandbox's mount namespace, so this
process writes the request's files into it first and lists it last, after every other process of the
sandbox is gone; the listing goes to a memfd the host reads once bubblewrap has exited. With egress
allowed it also listens on the sandbox's own loopback and hands each accepted connection, as a file
descriptor, to the proxy outside (``keel.sandbox._egress``), which decides and relays.

It is the program's parent, not the program: the kernel drops default-action signals (SIGXCPU)
sent to a namespace's pid 1. It exits with the program's status (128+N for a signal N).

Arguments: the descriptor of the request's files (``marshal``-ed ``{path: text}``, written by
keel), the descriptor of the report, the egress socket's descriptor (or ``-``), the proxy's port,
``--``, then the program's command. The report is plain lines (``files``, then ``kind size hexpath``
per entry; or ``setup_error hexmessage``), so this file imports no JSON or ``subprocess``: every
execution pays for this interpreter's start-up.
"""

from __future__ import annotations

import ctypes
import marshal
import os
import signal
import stat
import sys

TYPE_CHECKING = False  # typing itself costs start-up time; type checkers read this name the same way
if TYPE_CHECKING:
    import socket

WORKSPACE = "/workspace"
MAX_LISTED = 200
PR_SET_DUMPABLE = 4


def put_files(files: dict[str, str]) -> None:
    """Write the request's files (paths the host has already checked) into the workspace."""
    for name, text in files.items():
        parts = name.split("/")
        for depth in range(1, len(parts)):
            try:  # noqa: SIM105 - contextlib would cost start-up time
                os.mkdir(os.path.join(WORKSPACE, *parts[:depth]))
            except FileExistsError:
                pass
        fd = os.open(os.path.join(WORKSPACE, name), os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW, 0o644)
        with os.fdopen(fd, "w", encoding="utf-8", errors="surrogatepass") as out:
            out.write(text)


def listing() -> list[tuple[str, str, int]]:
    """The workspace's entries (at most 200) by lstat, walked without recursion and without following links."""
    found: list[tuple[str, str, int]] = []  # (path, kind, size)
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
                found.append((path, "symlink", info.st_size))
            elif stat.S_ISDIR(info.st_mode):
                found.append((path, "dir", 0))
                subdirs.append(path)
            else:
                found.append((path, "file", info.st_size))
            if len(found) >= MAX_LISTED:
                break
        pending.extend(reversed(subdirs))
    return sorted(found)


def _hex(text: str) -> str:
    return os.fsencode(text).hex()


def forward(listener: socket.socket, egress: socket.socket) -> None:
    """Hand each connection to the sandbox's proxy port to the proxy outside, until the socket closes."""
    import socket

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
    try:  # noqa: SIM105 - contextlib would cost start-up time
        os.kill(-1, signal.SIGKILL)
    except (ProcessLookupError, PermissionError):
        pass
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
    try:
        with open("/proc/self/oom_score_adj", "w") as f:
            f.write("1000")
    except OSError:
        pass


def spawn(command: list[str]) -> int:
    """Start the program with only descriptors 0-2 (before any thread exists, so forking is safe)."""
    pid = os.fork()
    if pid == 0:
        try:
            os.closerange(3, 1 << 20)  # close_range(2): one call however high the limit
            _raise_oom_score()
            os.execv(command[0], command)
        finally:
            os._exit(127)
    return pid


def main() -> int:
    """Run the program as described in ``sys.argv``; return the status to exit with."""
    files_fd, report_fd, egress_fd, port = sys.argv[1:5]
    command = sys.argv[6:]
    report = int(report_fd)
    if LIBC is not None:
        # Not dumpable: the program, running as the same uid, cannot open this process's descriptors.
        LIBC.prctl(PR_SET_DUMPABLE, 0, 0, 0, 0)
    with os.fdopen(int(files_fd), "rb") as f:
        files = marshal.loads(f.read())
    try:
        put_files(files)
    except OSError as exc:
        os.pwrite(report, f"setup_error {_hex(f'{exc.strerror}: {exc.filename}')}\n".encode(), 0)
        return 1
    listener = egress = None
    if egress_fd != "-":
        import socket

        egress = socket.socket(fileno=int(egress_fd))
        listener = socket.create_server(("127.0.0.1", int(port)), backlog=64)
    pid = spawn(command)
    if listener is not None:
        import threading

        threading.Thread(target=forward, args=(listener, egress), daemon=True).start()
    while True:
        try:
            _, status = os.waitpid(pid, 0)
            break
        except InterruptedError:
            continue
    end_the_rest()
    lines = ["files"] + [f"{kind} {size} {_hex(path)}" for path, kind, size in listing()]
    os.pwrite(report, ("\n".join(lines) + "\n").encode(), 0)
    code = os.waitstatus_to_exitcode(status)
    return 128 - code if code < 0 else code


if __name__ == "__main__":
    try:
        sys.exit(main())
    except OSError as exc:
        print(f"keel sandbox: {exc}", file=sys.stderr)
        sys.exit(1)
