"""The embedded memory store: SQLite with the sqlite-vec extension, loaded through apsw.

Vectors live in one ``vec0`` virtual table with the tenant as its partition key (a search reads only
that tenant's vectors) and the agent and user as metadata columns (filtered inside the scan). The
text, metadata, source and expiry of each memory live in an ordinary table beside it. sqlite-vec's
search is exact (a brute-force scan of the partition), so recall is 1.0.

A search with metadata filters scans the namespace's rows that match the filters, exactly. A search
without filters asks sqlite-vec for the k nearest and, when expired memories took places among them,
asks again for more.

apsw is used because the standard library's ``sqlite3`` on some builds cannot load extensions.

The tables are not on keel's migration ledger (`keel.storage`): they live in a file of their own
(``.keel/memory.db`` by default) opened through apsw, not through keel's SQLAlchemy engine, and the
``vec0`` table's shape depends on the vector size, known only when the store opens. The store creates
them in one transaction when it opens (``CREATE ... IF NOT EXISTS``) and records the vector size in
``keel_memory_settings``, refusing a file written with another.
"""

from __future__ import annotations

import array
import contextlib
import json
import threading
import time
from collections.abc import Callable, Iterator, Mapping, Sequence
from pathlib import Path
from typing import Any

from ..exceptions import ConfigError
from .long_term import (
    Embedder,
    FilterValue,
    Hit,
    Memory,
    MemoryNotFound,
    Namespace,
    Source,
    VectorCache,
    check_filters,
    check_id,
    check_metadata,
    check_search,
    check_text,
    check_ttl,
    expiry,
    new_id,
    query_vector,
    unknown_namespace,
)

__all__ = ["SqliteVecStore"]

MAX_KNN = 4096  # sqlite-vec's largest k
_COLUMNS = (
    "rid, tenant, agent_name, user_id, id, text, metadata, run_id, step, kind, created_at, updated_at, expires_at"
)
_SCHEMA = """
CREATE TABLE IF NOT EXISTS keel_memory_settings (key TEXT PRIMARY KEY, value TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS keel_memories (
    rid INTEGER PRIMARY KEY,
    tenant TEXT NOT NULL, agent_name TEXT NOT NULL, user_id TEXT NOT NULL, id TEXT NOT NULL,
    text TEXT NOT NULL, metadata TEXT NOT NULL,
    run_id TEXT NOT NULL, step INTEGER NOT NULL, kind TEXT NOT NULL,
    created_at REAL NOT NULL, updated_at REAL NOT NULL, expires_at REAL,
    UNIQUE (tenant, agent_name, user_id, id)
);
CREATE INDEX IF NOT EXISTS keel_memories_expiry ON keel_memories (expires_at) WHERE expires_at IS NOT NULL;
CREATE TABLE IF NOT EXISTS keel_memory_namespaces (
    tenant TEXT NOT NULL, agent_name TEXT NOT NULL, user_id TEXT NOT NULL,
    PRIMARY KEY (tenant, agent_name, user_id)
);
CREATE VIRTUAL TABLE IF NOT EXISTS keel_memory_vectors USING vec0 (
    rid INTEGER PRIMARY KEY,
    tenant TEXT PARTITION KEY,
    agent_name TEXT,
    user_id TEXT,
    embedding float[{dim}] distance_metric=cosine
);
"""


def _blob(vector: Sequence[float]) -> bytes:
    return array.array("f", vector).tobytes()


class SqliteVecStore:
    """Memories in a SQLite file, searched with sqlite-vec.

    Args:
        path: the database file (created with its folder), or ``:memory:``; default ``.keel/memory.db``.
        embedder: turns texts into vectors: an `Embedder`, ``"local"`` (all-MiniLM-L6-v2, the default)
            or None to pass vectors yourself.
        dim: the vector size; default the embedder's (required without one).
        merge_threshold: a new text at least this similar to a stored one updates it instead of adding
            a near-duplicate; default 0.95; None never merges.
        clock: the time source for time-to-live, default `time.time`.

    Raises:
        ConfigError: apsw or sqlite-vec is missing, or the file holds vectors of another size.
    """

    def __init__(
        self,
        path: str | Path = ".keel/memory.db",
        *,
        embedder: Embedder | str | None = "local",
        dim: int | None = None,
        merge_threshold: float | None = 0.95,
        clock: Callable[[], float] = time.time,
    ) -> None:
        try:
            import apsw
            import sqlite_vec
        except ImportError as exc:
            raise ConfigError(f"the sqlite-vec memory store needs {exc.name}; pip install 'keel[memory]'") from None
        if isinstance(embedder, str):
            from .embeddings import resolve_embedder

            embedder = resolve_embedder(embedder)
        size = dim or (embedder.dim if embedder is not None else None)
        if not isinstance(size, int) or size < 1:
            raise ConfigError("a store without an embedder needs dim=<vector size>")
        self.dim, self.merge_threshold, self.clock = size, merge_threshold, clock
        self._vectors = VectorCache(embedder, size)
        if str(path) != ":memory:":
            Path(path).parent.mkdir(parents=True, exist_ok=True)
        self.path = str(path)
        self._lock = threading.RLock()
        conn = apsw.Connection(self.path)
        conn.enable_load_extension(True)
        conn.load_extension(sqlite_vec.loadable_path())
        conn.enable_load_extension(False)
        conn.set_busy_timeout(5000)
        conn.execute("PRAGMA journal_mode=WAL")
        try:
            self._migrate(conn, size)
        except BaseException:
            conn.close()
            raise
        self._conn = conn

    def _migrate(self, conn: Any, size: int) -> None:
        with conn:
            conn.execute(_SCHEMA.format(dim=size))
            row = conn.execute("SELECT value FROM keel_memory_settings WHERE key = 'dim'").fetchone()
            if row is None:
                conn.execute("INSERT INTO keel_memory_settings VALUES ('dim', ?)", (str(size),))
            elif int(row[0]) != size:
                raise ConfigError(
                    f"{self.path} holds {row[0]}-dimensional memories but this store was configured for {size}; "
                    "use the embedder the file was written with, or another file"
                )

    @contextlib.contextmanager
    def _transaction(self) -> Iterator[None]:
        with self._lock, self._conn:
            yield

    # Writing.

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
        """Store a memory and return it.

        With the `id` of a stored memory, replaces it (upsert). Without an id, a stored memory at least
        `merge_threshold` similar is updated with the new text and merged metadata instead.

        Raises:
            UsageError: the text is empty, the vector has the wrong size, the ttl or metadata is invalid.
        """
        clean = check_text(text)
        meta = check_metadata(metadata)
        check_ttl(ttl)
        if id is not None:
            check_id(id)
        vec = self._vectors.vector(clean, vector)
        src = source or Source()
        now = self.clock()
        with self._transaction():
            existing = self._row(namespace, id, live=False) if id is not None else None
            if existing is None and id is None and self.merge_threshold is not None:
                near = self._knn(namespace, vec, 1)
                if near and near[0].score >= self.merge_threshold:
                    existing = near[0].memory
                    meta = {**existing.metadata, **meta}
            if existing is not None:
                return self._replace(existing, clean, meta, src, expiry(ttl, self.clock), vec, now)
            memory = Memory(id or new_id(), namespace, clean, meta, src, now, now, expiry(ttl, self.clock))
            self._insert(memory, vec)
            return memory

    def add_many(
        self, namespace: Namespace, items: Sequence[tuple[str, Sequence[float]]], *, source: Source | None = None
    ) -> int:
        """Bulk-load (text, vector) pairs in one transaction, without merging; return how many were stored.

        Raises:
            UsageError: a text is empty or a vector has the wrong size (nothing is stored then).
        """
        src, now = source or Source(), self.clock()
        rows = [(check_text(text), self._vectors.vector(None, vector)) for text, vector in items]
        with self._transaction():
            for text, vec in rows:
                self._insert(Memory(new_id(), namespace, text, {}, src, now, now, None), vec)
        return len(rows)

    def _insert(self, m: Memory, vec: list[float]) -> None:
        ns = m.namespace
        self._conn.execute(
            "INSERT OR IGNORE INTO keel_memory_namespaces VALUES (?, ?, ?)", (ns.tenant, ns.agent, ns.user)
        )
        self._conn.execute(
            f"INSERT INTO keel_memories ({_COLUMNS}) VALUES (NULL, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
            (
                ns.tenant,
                ns.agent,
                ns.user,
                m.id,
                m.text,
                json.dumps(m.metadata),
                m.source.run_id,
                m.source.step,
                m.source.kind,
                m.created_at,
                m.updated_at,
                m.expires_at,
            ),
        )
        rid = self._conn.last_insert_rowid()
        self._conn.execute(
            "INSERT INTO keel_memory_vectors (rid, tenant, agent_name, user_id, embedding) VALUES (?, ?, ?, ?, ?)",
            (rid, ns.tenant, ns.agent, ns.user, _blob(vec)),
        )

    def _replace(
        self,
        old: Memory,
        text: str,
        meta: dict[str, Any],
        src: Source,
        expires_at: float | None,
        vec: list[float] | None,
        now: float,
    ) -> Memory:
        ns = old.namespace
        rid = self._rid(ns, old.id)
        self._conn.execute(
            "UPDATE keel_memories SET text = ?, metadata = ?, run_id = ?, step = ?, kind = ?, updated_at = ?, "
            "expires_at = ? WHERE rid = ?",
            (text, json.dumps(meta), src.run_id, src.step, src.kind, now, expires_at, rid),
        )
        if vec is not None:
            self._conn.execute("UPDATE keel_memory_vectors SET embedding = ? WHERE rid = ?", (_blob(vec), rid))
        return Memory(old.id, ns, text, meta, src, old.created_at, now, expires_at)

    def update(
        self,
        namespace: Namespace,
        id: str,
        *,
        text: str | None = None,
        metadata: Mapping[str, Any] | None = None,
        ttl: float | None = None,
    ) -> Memory:
        """Change a memory's text (re-embedded), metadata (replaced) or time to live (from now).

        Raises:
            MemoryNotFound: no live memory has this id in `namespace`.
            UsageError: the new text is empty or the ttl invalid.
        """
        clean = check_text(text) if text is not None else None
        meta = check_metadata(metadata) if metadata is not None else None
        check_ttl(ttl)
        vec = self._vectors.vector(clean, None) if clean is not None else None
        with self._transaction():
            old = self._row(namespace, check_id(id), live=True)
            if old is None:
                raise MemoryNotFound(f"namespace {namespace} has no memory {id!r} (never stored, deleted or expired)")
            expires_at = expiry(ttl, self.clock) if ttl is not None else old.expires_at
            return self._replace(
                old,
                clean if clean is not None else old.text,
                meta if meta is not None else old.metadata,
                old.source,
                expires_at,
                vec,
                self.clock(),
            )

    def delete(self, namespace: Namespace, id: str) -> bool:
        """Delete a memory; True when one was deleted."""
        with self._transaction():
            rid = self._rid(namespace, check_id(id))
            if rid is None:
                return False
            self._conn.execute("DELETE FROM keel_memory_vectors WHERE rid = ?", (rid,))
            self._conn.execute("DELETE FROM keel_memories WHERE rid = ?", (rid,))
            return True

    def purge_expired(self) -> int:
        """Delete expired memories; return how many."""
        with self._transaction():
            rids = [
                r
                for (r,) in self._conn.execute(
                    "SELECT rid FROM keel_memories WHERE expires_at IS NOT NULL AND expires_at <= ?", (self.clock(),)
                )
            ]
            for rid in rids:
                self._conn.execute("DELETE FROM keel_memory_vectors WHERE rid = ?", (rid,))
                self._conn.execute("DELETE FROM keel_memories WHERE rid = ?", (rid,))
            return len(rids)

    # Reading.

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
        """The `k` live memories of `namespace` nearest to `query` (a text or a vector), best first.

        Raises:
            UnknownNamespace: nothing was ever written to `namespace` (and not `missing_ok`).
            UsageError: an empty query, a vector of the wrong size, k out of range, bad filters.
        """
        check_search(k, min_score)
        wanted = check_filters(filters)
        vec = query_vector(self._vectors, query)
        with self._lock:
            if not self._known(namespace):
                if missing_ok:
                    return []
                raise unknown_namespace(namespace, self.namespaces(namespace.tenant))
            hits = self._exact(namespace, vec, k, wanted) if wanted else self._knn(namespace, vec, k)
        return [h for h in hits if min_score is None or h.score >= min_score]

    def _knn(self, ns: Namespace, vec: list[float], k: int) -> list[Hit]:
        """The k nearest live memories, asking sqlite-vec for more while expired ones took places."""
        now, ask = self.clock(), k
        while True:
            rows = self._conn.execute(
                "SELECT rid, distance FROM keel_memory_vectors WHERE embedding MATCH ? AND k = ? "
                "AND tenant = ? AND agent_name = ? AND user_id = ? ORDER BY distance",
                (_blob(vec), ask, ns.tenant, ns.agent, ns.user),
            ).fetchall()
            hits = self._hits(rows, now)
            if len(hits) >= k or len(rows) < ask or ask >= MAX_KNN:
                return hits[:k]
            ask = min(MAX_KNN, ask * 4)

    def _exact(self, ns: Namespace, vec: list[float], k: int, filters: dict[str, FilterValue]) -> list[Hit]:
        """The k nearest live memories whose metadata matches every filter, by a scan of those rows."""
        conditions, params = [], [_blob(vec), ns.tenant, ns.agent, ns.user, self.clock()]
        for key, value in filters.items():
            path = '$."' + key.replace('"', '""') + '"'
            if value is None:
                conditions.append("json_extract(m.metadata, ?) IS NULL")
                params.append(path)
            else:
                conditions.append("json_extract(m.metadata, ?) = ?")
                params.extend([path, int(value) if isinstance(value, bool) else value])
        rows = self._conn.execute(
            "SELECT m.rid, vec_distance_cosine(v.embedding, ?) AS distance FROM keel_memories m "
            "JOIN keel_memory_vectors v ON v.rid = m.rid "
            "WHERE m.tenant = ? AND m.agent_name = ? AND m.user_id = ? AND (m.expires_at IS NULL OR m.expires_at > ?) "
            f"{''.join(' AND ' + c for c in conditions)} ORDER BY distance LIMIT {int(k)}",
            params,
        ).fetchall()
        return self._hits(rows, None)

    def _hits(self, rows: list[Any], now: float | None) -> list[Hit]:
        if not rows:
            return []
        distance = {int(rid): float(d) for rid, d in rows}
        marks = ",".join("?" * len(distance))
        found = {
            int(r[0]): _memory(r)
            for r in self._conn.execute(f"SELECT {_COLUMNS} FROM keel_memories WHERE rid IN ({marks})", list(distance))
        }
        hits = []
        for rid, d in distance.items():
            m = found.get(rid)
            if m is not None and (now is None or m.expires_at is None or m.expires_at > now):
                hits.append(Hit(m, 1.0 - d))
        hits.sort(key=lambda h: -h.score)
        return hits

    def get(self, namespace: Namespace, id: str) -> Memory | None:
        """The live memory with this id, or None."""
        with self._lock:
            return self._row(namespace, check_id(id), live=True)

    def count(self, namespace: Namespace) -> int:
        """Live memories in `namespace`."""
        with self._lock:
            row = self._conn.execute(
                "SELECT count(*) FROM keel_memories WHERE tenant = ? AND agent_name = ? AND user_id = ? "
                "AND (expires_at IS NULL OR expires_at > ?)",
                (namespace.tenant, namespace.agent, namespace.user, self.clock()),
            ).fetchone()
            return int(row[0]) if row else 0

    def namespaces(self, tenant: str) -> list[Namespace]:
        """The namespaces of `tenant` ever written to."""
        with self._lock:
            rows = self._conn.execute(
                "SELECT tenant, agent_name, user_id FROM keel_memory_namespaces WHERE tenant = ? "
                "ORDER BY agent_name, user_id",
                (tenant,),
            ).fetchall()
        return [Namespace(str(t), str(a), str(u)) for t, a, u in rows]

    def close(self) -> None:
        """Close the database."""
        with self._lock:
            self._conn.close()

    def _known(self, ns: Namespace) -> bool:
        return (
            self._conn.execute(
                "SELECT 1 FROM keel_memory_namespaces WHERE tenant = ? AND agent_name = ? AND user_id = ?",
                (ns.tenant, ns.agent, ns.user),
            ).fetchone()
            is not None
        )

    def _rid(self, ns: Namespace, id: str) -> int | None:
        row = self._conn.execute(
            "SELECT rid FROM keel_memories WHERE tenant = ? AND agent_name = ? AND user_id = ? AND id = ?",
            (ns.tenant, ns.agent, ns.user, id),
        ).fetchone()
        return None if row is None else int(row[0])

    def _row(self, ns: Namespace, id: str | None, *, live: bool) -> Memory | None:
        row = self._conn.execute(
            f"SELECT {_COLUMNS} FROM keel_memories WHERE tenant = ? AND agent_name = ? AND user_id = ? AND id = ?",
            (ns.tenant, ns.agent, ns.user, id),
        ).fetchone()
        if row is None:
            return None
        m = _memory(row)
        if live and m.expires_at is not None and m.expires_at <= self.clock():
            return None
        return m

    def __repr__(self) -> str:
        return f"SqliteVecStore({self.path!r}, dim={self.dim})"


def _memory(row: Sequence[Any]) -> Memory:
    _, tenant, agent, user, id, text, metadata, run_id, step, kind, created, updated, expires = row
    return Memory(
        id,
        Namespace(tenant, agent, user),
        text,
        json.loads(metadata),
        Source(run_id, int(step), kind),
        float(created),
        float(updated),
        None if expires is None else float(expires),
    )
