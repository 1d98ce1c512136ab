"""Long-term memory: what an agent keeps across runs, found again by meaning.

A `MemoryStore` holds `Memory` records in namespaces (`Namespace`: tenant, agent, user). Each record
has its text, its embedding, metadata, where it came from (`Source`: run and step) and an optional
time to live. A search embeds the query, returns the `k` nearest memories of one namespace with their
cosine similarity as `score`, and never looks outside that namespace: a tenant's memories are never
another tenant's results. Writing a text that is almost the same as one already stored (similarity at
least ``merge_threshold``) updates that memory instead of adding a second one.

Two stores implement the protocol: `SqliteVecStore` (embedded, `keel.memory.sqlite_vec`) and
`PgVectorStore` (PostgreSQL with pgvector, `keel.memory.pgvector`). The shared checks and helpers
live here so both behave the same.
"""

from __future__ import annotations

import json
import math
import re
import time
import uuid
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Protocol, runtime_checkable

from ..exceptions import UsageError

__all__ = [
    "Embedder",
    "Hit",
    "Memory",
    "MemoryNotFound",
    "MemoryStore",
    "Namespace",
    "Source",
    "UnknownNamespace",
]

NAME_PART = re.compile(r"^[A-Za-z0-9_.@:-]{0,128}$")
MAX_TEXT_CHARS = 20_000
FilterValue = str | int | float | bool | None


class UnknownNamespace(UsageError):
    """A search or read named a namespace that holds no memories and never did."""


class MemoryNotFound(UsageError):
    """An update named a memory id that the namespace does not hold (or that has expired)."""


@dataclass(frozen=True, slots=True)
class Namespace:
    """Where memories live: one tenant, one agent, one user.

    An empty `agent` or `user` means memories shared by every agent or user of the tenant (a
    knowledge base is ``Namespace("acme", "support")``; one customer's preferences are
    ``Namespace("acme", "support", "C-1001")``).

    Attributes:
        tenant: the tenant (the isolation boundary: searches never cross it).
        agent: the agent's name, or ``""`` for the tenant's shared memories.
        user: the user's id, or ``""`` for memories shared by every user.
    """

    tenant: str
    agent: str = ""
    user: str = ""

    def __post_init__(self) -> None:
        if not isinstance(self.tenant, str) or not self.tenant or not NAME_PART.match(self.tenant):
            raise UsageError(
                f"namespace tenant {self.tenant!r} is invalid: use 1-128 letters, digits, '_', '.', '@', ':' or '-'"
            )
        for part in ("agent", "user"):
            value = getattr(self, part)
            if not isinstance(value, str) or not NAME_PART.match(value):
                raise UsageError(
                    f"namespace {part} {value!r} is invalid: use up to 128 letters, digits, '_', '.', '@', ':' "
                    "or '-' (or '' for shared)"
                )

    def __str__(self) -> str:
        return f"{self.tenant}/{self.agent or '*'}/{self.user or '*'}"


@dataclass(frozen=True, slots=True)
class Source:
    """Where a memory came from.

    Attributes:
        run_id: the run that wrote it, or ``""`` when written outside a run (a loaded knowledge base).
        step: the loop step of that run, 0 when outside a run.
        kind: how it was written: ``remember`` (the agent asked), ``summary`` (end-of-run facts),
            ``import`` (loaded by code).
    """

    run_id: str = ""
    step: int = 0
    kind: str = "import"

    def __str__(self) -> str:
        return f"run {self.run_id} step {self.step}" if self.run_id else self.kind


@dataclass(frozen=True, slots=True)
class Memory:
    """One stored memory.

    Attributes:
        id: its id, unique within the namespace.
        namespace: where it lives.
        text: what is remembered.
        metadata: JSON-ready key/values, usable as search filters.
        source: the run and step that wrote it.
        created_at: when first written (seconds since the epoch).
        updated_at: when last written or merged.
        expires_at: when it stops being returned, or None to keep it.
    """

    id: str
    namespace: Namespace
    text: str
    metadata: dict[str, Any] = field(default_factory=dict)
    source: Source = field(default_factory=Source)
    created_at: float = 0.0
    updated_at: float = 0.0
    expires_at: float | None = None

    def to_dict(self) -> dict[str, Any]:
        """Return a JSON-ready dict."""
        return {
            "id": self.id,
            "namespace": {"tenant": self.namespace.tenant, "agent": self.namespace.agent, "user": self.namespace.user},
            "text": self.text,
            "metadata": self.metadata,
            "source": {"run_id": self.source.run_id, "step": self.source.step, "kind": self.source.kind},
            "created_at": self.created_at,
            "updated_at": self.updated_at,
            "expires_at": self.expires_at,
        }

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> Memory:
        """Build from `to_dict` output."""
        return cls(
            data["id"],
            Namespace(**data["namespace"]),
            data["text"],
            dict(data.get("metadata") or {}),
            Source(**data.get("source") or {}),
            float(data.get("created_at", 0.0)),
            float(data.get("updated_at", 0.0)),
            data.get("expires_at"),
        )


@dataclass(frozen=True, slots=True)
class Hit:
    """A search result.

    Attributes:
        memory: the memory found.
        score: cosine similarity to the query, from -1 to 1 (1: same direction).
    """

    memory: Memory
    score: float

    def to_dict(self) -> dict[str, Any]:
        """Return a JSON-ready dict."""
        return {"memory": self.memory.to_dict(), "score": self.score}

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> Hit:
        """Build from `to_dict` output."""
        return cls(Memory.from_dict(data["memory"]), float(data["score"]))


@runtime_checkable
class Embedder(Protocol):
    """Turns texts into unit-length vectors of a fixed dimension."""

    name: str
    dim: int

    def embed(self, texts: Sequence[str]) -> list[list[float]]:
        """Embed each text; every vector has `dim` floats and unit length."""
        ...


@runtime_checkable
class MemoryStore(Protocol):
    """A vector store of memories, partitioned by namespace.

    Every method raises `UsageError` on bad input (an empty text, a vector of the wrong dimension, a
    k below 1) with a message naming the fix, and changes nothing when it does.
    """

    dim: int
    merge_threshold: float | None

    def add(
        self,
        namespace: Namespace,
        text: str,
        *,
        metadata: Mapping[str, Any] | None = None,
        source: Source | None = None,
        ttl: float | None = None,
        id: str | None = None,
        vector: Sequence[float] | None = None,
    ) -> Memory:
        """Store a memory and return it; upsert when `id` exists; merge into a near-duplicate."""
        ...

    def add_many(
        self, namespace: Namespace, items: Sequence[tuple[str, Sequence[float]]], *, source: Source | None = None
    ) -> int:
        """Bulk-load (text, vector) pairs without merging; return how many were stored."""
        ...

    def search(
        self,
        namespace: Namespace,
        query: str | Sequence[float],
        *,
        k: int = 5,
        filters: Mapping[str, FilterValue] | None = None,
        min_score: float | None = None,
        missing_ok: bool = False,
    ) -> list[Hit]:
        """The `k` memories of `namespace` nearest to `query`, best first.

        Only unexpired memories whose metadata equals every filter, with a score of at least
        `min_score`, are returned. With `missing_ok`, a namespace never written to gives no results.

        Raises:
            UnknownNamespace: nothing was ever written to `namespace` (and not `missing_ok`).
        """
        ...

    def get(self, namespace: Namespace, id: str) -> Memory | None:
        """The memory with this id, or None when absent or expired."""
        ...

    def update(
        self,
        namespace: Namespace,
        id: str,
        *,
        text: str | None = None,
        metadata: Mapping[str, Any] | None = None,
        ttl: float | None = None,
    ) -> Memory:
        """Change a memory's text (re-embedded), metadata (replaced) or time to live.

        Raises:
            MemoryNotFound: no live memory has this id in `namespace`.
        """
        ...

    def delete(self, namespace: Namespace, id: str) -> bool:
        """Delete a memory; True when one was deleted."""
        ...

    def count(self, namespace: Namespace) -> int:
        """Live (unexpired) memories in `namespace`."""
        ...

    def namespaces(self, tenant: str) -> list[Namespace]:
        """The namespaces of `tenant` that were ever written to."""
        ...

    def purge_expired(self) -> int:
        """Delete expired memories; return how many."""
        ...

    def close(self) -> None:
        """Release the connection."""
        ...


# Helpers shared by the stores.


def check_text(text: object) -> str:
    """Return `text` stripped, or raise a `UsageError` naming the problem."""
    if not isinstance(text, str):
        raise UsageError(f"a memory's text must be a string, got {type(text).__name__}")
    stripped = text.strip()
    if not stripped:
        raise UsageError("a memory's text is empty; pass the fact to remember as non-empty text")
    if len(stripped) > MAX_TEXT_CHARS:
        raise UsageError(
            f"a memory's text has {len(stripped)} characters, over the limit of {MAX_TEXT_CHARS}; "
            "store a summary or split it into several memories"
        )
    return stripped


def check_vector(vector: Sequence[float], dim: int) -> list[float]:
    """Return `vector` as a list of floats of length `dim`, or raise a `UsageError`."""
    try:
        values = [float(x) for x in vector]
    except (TypeError, ValueError):
        raise UsageError(f"a vector must be a sequence of {dim} numbers, got {type(vector).__name__}") from None
    if len(values) != dim:
        raise UsageError(
            f"the vector has {len(values)} dimensions but this store holds {dim}-dimensional vectors; "
            "embed with the store's embedder (or create the store with dim matching your vectors)"
        )
    if not all(math.isfinite(x) for x in values):
        raise UsageError("the vector holds NaN or infinite values; check the embedder's output")
    norm = math.sqrt(sum(x * x for x in values))
    if norm == 0:
        raise UsageError("the vector is all zeros and has no direction; cosine similarity needs a non-zero vector")
    return values


def check_search(k: object, min_score: object) -> None:
    """Raise a `UsageError` for a k below 1 or a min_score outside [-1, 1]."""
    if not isinstance(k, int) or isinstance(k, bool) or k < 1 or k > 1000:
        raise UsageError(f"k must be an integer from 1 to 1000, got {k!r}")
    if min_score is not None and (not isinstance(min_score, int | float) or not -1 <= min_score <= 1):
        raise UsageError(f"min_score must be a cosine similarity between -1 and 1, got {min_score!r}")


def check_ttl(ttl: object) -> None:
    """Raise a `UsageError` unless `ttl` is None or a positive number of seconds."""
    if ttl is not None and (not isinstance(ttl, int | float) or isinstance(ttl, bool) or not ttl > 0):
        raise UsageError(f"ttl must be a positive number of seconds (or None to keep forever), got {ttl!r}")


def check_metadata(metadata: Mapping[str, Any] | None) -> dict[str, Any]:
    """Return `metadata` as a JSON-ready dict, or raise a `UsageError`."""
    if metadata is None:
        return {}
    if not isinstance(metadata, Mapping) or not all(isinstance(key, str) for key in metadata):
        raise UsageError("metadata must be a mapping with string keys")
    try:
        return dict(json.loads(json.dumps(dict(metadata))))
    except (TypeError, ValueError) as exc:
        raise UsageError(f"metadata must be JSON-ready (strings, numbers, booleans, lists, dicts): {exc}") from None


def check_filters(filters: Mapping[str, FilterValue] | None) -> dict[str, FilterValue]:
    """Return equality filters on metadata keys, or raise a `UsageError`."""
    if not filters:
        return {}
    out: dict[str, FilterValue] = {}
    for key, value in filters.items():
        if not isinstance(key, str) or not key:
            raise UsageError(f"filter keys must be non-empty metadata key names, got {key!r}")
        if value is not None and not isinstance(value, str | int | float | bool):
            raise UsageError(
                f"filter {key!r} must compare to a string, number, boolean or None, got {type(value).__name__}"
            )
        out[key] = value
    return out


def matches(metadata: Mapping[str, Any], filters: Mapping[str, FilterValue]) -> bool:
    """True when every filter key equals the memory's metadata value (None matches a missing key)."""
    return all(metadata.get(key) == value for key, value in filters.items())


def new_id() -> str:
    """A new memory id."""
    return uuid.uuid4().hex


def check_id(id: object) -> str:
    """Return a valid memory id, or raise a `UsageError`."""
    if not isinstance(id, str) or not 1 <= len(id) <= 128:
        raise UsageError(f"a memory id must be a string of 1-128 characters, got {id!r}")
    return id


def unknown_namespace(namespace: Namespace, known: Sequence[Namespace]) -> UnknownNamespace:
    """The error for a search on a namespace that was never written to."""
    listed = ", ".join(str(n) for n in known[:5]) or "none"
    return UnknownNamespace(
        f"namespace {namespace} holds no memories and never did; write one first (add), check the tenant, "
        f"agent and user spelling, or pass missing_ok=True to get no results instead. Known namespaces of "
        f"tenant {namespace.tenant!r}: {listed}"
    )


class VectorCache:
    """Embeds texts with an embedder, checking the dimension once."""

    def __init__(self, embedder: Embedder | None, dim: int) -> None:
        if embedder is not None and embedder.dim != dim:
            raise UsageError(f"the embedder {embedder.name} makes {embedder.dim}-dimensional vectors but dim={dim}")
        self.embedder, self.dim = embedder, dim

    def vector(self, text: str | None, vector: Sequence[float] | None) -> list[float]:
        """The vector to store or search with: the one given, else the embedding of `text`."""
        if vector is not None:
            return check_vector(vector, self.dim)
        if text is None:
            raise UsageError("pass a text or a vector")
        if self.embedder is None:
            raise UsageError(
                "this store has no embedder, so it needs vectors: pass vector=..., or create the store with "
                "embedder=keel.memory.embeddings.resolve_embedder('local')"
            )
        return check_vector(self.embedder.embed([text])[0], self.dim)


def query_vector(cache: VectorCache, query: str | Sequence[float]) -> list[float]:
    """Embed a text query, or check a vector query."""
    if isinstance(query, str):
        return cache.vector(check_text(query), None)
    return cache.vector(None, query)


def expiry(ttl: float | None, clock: Callable[[], float]) -> float | None:
    """When a memory written now with `ttl` expires."""
    return None if ttl is None else clock() + float(ttl)


def now(clock: Callable[[], float] | None = None) -> float:
    """The current time from `clock` (default the wall clock)."""
    return (clock or time.time)()
