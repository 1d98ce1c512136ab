"""Per-execution workspaces on the host: created empty, filled safely, listed without following links."""

from __future__ import annotations

import contextlib
import os
import shutil
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
        """The entries in the workspace (at most 200), by lstat: links are reported, never followed."""
        found: list[FileInfo] = []
        for root, dirs, files in os.walk(self.path, followlinks=False):
            dirs.sort()
            for name in sorted(dirs) + sorted(files):
                full = os.path.join(root, name)
                try:
                    info = os.lstat(full)
                except OSError:
                    continue
                rel = os.path.relpath(full, self.path)
                if stat.S_ISLNK(info.st_mode):
                    found.append(FileInfo(path=rel, size=info.st_size, kind="symlink"))
                elif stat.S_ISDIR(info.st_mode):
                    found.append(FileInfo(path=rel, size=0, kind="dir"))
                else:
                    found.append(FileInfo(path=rel, size=info.st_size, kind="file"))
                if len(found) >= MAX_LISTED:
                    return sorted(found, key=lambda f: f.path)
        return sorted(found, key=lambda f: f.path)

    def remove(self) -> None:
        """Delete the workspace, including directories the code made unreadable.

        Never follows a link: a directory is opened with ``O_NOFOLLOW`` before its mode is changed, and
        ``shutil.rmtree`` removes links, not their targets.
        """
        for root, dirs, _files in os.walk(self.path, followlinks=False):
            for name in dirs:
                _make_traversable(os.path.join(root, name))
        _make_traversable(str(self.path))
        shutil.rmtree(self.path, ignore_errors=True)


def _make_traversable(path: str) -> None:
    try:
        fd = os.open(path, os.O_RDONLY | _DIRECTORY | _NOFOLLOW)
    except OSError:
        return  # a link (left alone), or unreadable to us: rmtree removes what it can
    with contextlib.suppress(OSError):
        os.fchmod(fd, 0o700)
    os.close(fd)
