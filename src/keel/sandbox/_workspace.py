"""Per-execution workspaces on the host: created empty, filled safely, listed without following links."""

from __future__ import annotations

import contextlib
import os
import stat
import tempfile
from pathlib import Path

from ._types import FileInfo, workspace_path

__all__ = ["Workspace"]

MAX_LISTED = 200
_NOFOLLOW = getattr(os, "O_NOFOLLOW", 0)  # absent on Windows, where the wasm backend also runs
_DIRECTORY = getattr(os, "O_DIRECTORY", 0)


class Workspace:
    """A fresh directory for one execution, owned by the user the sandboxed code runs as.

    Args:
        base: the directory to create it in (default: the system's temporary directory).
        owner: uid and gid to hand the directory to (when running as root), or None to keep it.
    """

    def __init__(self, base: str | None = None, owner: tuple[int, int] | None = None) -> None:
        self.path = Path(tempfile.mkdtemp(prefix="keel-sandbox-", dir=base))
        self.owner = owner
        if owner is not None:
            os.chown(self.path, *owner)
        os.chmod(self.path, 0o700)

    def put(self, files: dict[str, str]) -> None:
        """Write text files at relative paths; a path that would leave the workspace is refused.

        Raises:
            ValueError: a path is absolute or leaves the workspace.
        """
        for name, text in files.items():
            rel = workspace_path(name)
            target = self.path / rel
            for parent in reversed(target.relative_to(self.path).parents):
                if str(parent) == ".":
                    continue
                directory = self.path / parent
                if not directory.exists():
                    directory.mkdir()
                    self._chown(directory)
            # O_NOFOLLOW|O_EXCL: the workspace is new and ours, but never write through a link.
            fd = os.open(target, os.O_WRONLY | os.O_CREAT | os.O_EXCL | _NOFOLLOW, 0o644)
            with os.fdopen(fd, "w", encoding="utf-8") as out:
                out.write(text)
            self._chown(target)

    def _chown(self, path: Path) -> None:
        if self.owner is not None:
            os.chown(path, *self.owner, follow_symlinks=False)

    def listing(self) -> list[FileInfo]:
        """The entries in the workspace (at most 200), by lstat: links are reported, never followed.

        The walk keeps its own stack rather than recursing, so a tree of any depth is listed.
        """
        found: list[FileInfo] = []
        pending = [""]
        while pending and len(found) < MAX_LISTED:
            rel = pending.pop()
            try:
                with os.scandir(self.path / rel) as entries:
                    names = sorted(entry.name for entry in entries)
            except OSError:
                continue
            subdirs = []
            for name in names:
                path = f"{rel}/{name}" if rel else name
                try:
                    info = os.lstat(self.path / path)
                except OSError:
                    continue
                if stat.S_ISLNK(info.st_mode):
                    found.append(FileInfo(path=path, size=info.st_size, kind="symlink"))
                elif stat.S_ISDIR(info.st_mode):
                    found.append(FileInfo(path=path, size=0, kind="dir"))
                    subdirs.append(path)
                else:
                    found.append(FileInfo(path=path, size=info.st_size, kind="file"))
                if len(found) >= MAX_LISTED:
                    break
            pending.extend(reversed(subdirs))
        return sorted(found, key=lambda f: f.path)

    def remove(self) -> None:
        """Delete the workspace, including directories the code made unreadable, at any depth.

        Never follows a link: a directory is opened with ``O_NOFOLLOW`` before its mode is changed, and
        links are unlinked, not their targets. The walk keeps its own stack rather than recursing.
        """
        visited: list[str] = []
        pending = [str(self.path)]
        while pending:
            directory = pending.pop()
            _make_traversable(directory)
            visited.append(directory)
            try:
                with os.scandir(directory) as scan:
                    entries = list(scan)
            except OSError:
                continue
            for entry in entries:
                if entry.is_dir(follow_symlinks=False):
                    pending.append(entry.path)
                else:
                    with contextlib.suppress(OSError):
                        os.unlink(entry.path)
        for directory in reversed(visited):  # children were visited after their parents
            with contextlib.suppress(OSError):
                os.rmdir(directory)


def _make_traversable(path: str) -> None:
    try:
        fd = os.open(path, os.O_RDONLY | _DIRECTORY | _NOFOLLOW)
    except OSError:
        return  # a link (left alone), or unreadable to us: removal takes what it can
    with contextlib.suppress(OSError):
        os.fchmod(fd, 0o700)
    os.close(fd)
