"""The production memory store: PostgreSQL with pgvector 0.8 or newer.

Memories live in one table partitioned by tenant (``PARTITION BY LIST``): each tenant gets its own
partition, created on its first write, with its own HNSW index (cosine). A search reads the tenant's
partition only, so the index it walks holds that tenant's vectors alone. One HNSW index over every
tenant filtered by a ``WHERE tenant = ...`` loses most of its recall at default settings (it finds the
nearest vectors of all tenants, then drops the other tenants' rows), so keel never builds one.

Inside a partition, the agent, user, expiry and metadata filters are applied during the index scan
with pgvector's iterative scans (``hnsw.iterative_scan = strict_order``), which keep walking the
graph until k rows pass. A namespace small enough to scan (``exact_below`` memories) is searched
exactly instead. Each namespace's size is kept in ``keel_memory_namespaces``.

The tables are not on keel's migration ledger (`keel.storage`): the store talks to PostgreSQL through
its own psycopg connection, often on a database of its own, and needs the ``vector`` extension, which a
keel database does not; the table's vector column is sized by the embedder, known only when the store
opens; and tenants' partitions are created on their first write. The store creates its tables under an
advisory lock when it opens (``CREATE ... IF NOT EXISTS``) and records the vector size in
``keel_memory_settings``, refusing a table written with another.
"""

from __future__ import annotations

import hashlib
import json
import threading
import time
from collections.abc import Callable, Mapping, Sequence
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

__all__ = ["PgVectorStore"]

_COLUMNS = "tenant, agent_name, user_id, id, text, metadata, run_id, step, kind, created_at, updated_at, expires_at"
_SCHEMA = """
CREATE EXTENSION IF NOT EXISTS vector;
CREATE TABLE IF NOT EXISTS keel_memory_settings (key text PRIMARY KEY, value text NOT NULL);
CREATE TABLE IF NOT EXISTS keel_memories (
    tenant text NOT NULL, agent_name text NOT NULL, user_id text NOT NULL, id text NOT NULL,
    text text NOT NULL, metadata jsonb NOT NULL,
    run_id text NOT NULL, step integer NOT NULL, kind text NOT NULL,
    created_at double precision NOT NULL, updated_at double precision NOT NULL, expires_at double precision,
    embedding vector({dim}) NOT NULL,
    PRIMARY KEY (tenant, agent_name, user_id, id)
) PARTITION BY LIST (tenant);
CREATE TABLE IF NOT EXISTS keel_memory_partitions (tenant text PRIMARY KEY, partition text NOT NULL);
CREATE TABLE IF NOT EXISTS keel_memory_namespaces (
    tenant text NOT NULL, agent_name text NOT NULL, user_id text NOT NULL, size bigint NOT NULL DEFAULT 0,
    PRIMARY KEY (tenant, agent_name, user_id)
);
"""


def _literal(vector: Sequence[float]) -> str:
    return "[" + ",".join(f"{x:.8g}" for x in vector) + "]"


class PgVectorStore:
    """Memories in PostgreSQL with pgvector: one partition and one HNSW index per tenant.

    Args:
        url: a libpq/psycopg URL (``postgresql://user@host:port/db``); ``postgresql+psycopg://`` is
            accepted too. The role needs CREATE on the database (and the ``vector`` extension available).
        embedder: an `Embedder`, ``"local"`` (the default) or None to pass vectors yourself.
        dim: the vector size; default the embedder's (required without one).
        merge_threshold: a new text at least this similar to a stored one updates it; default 0.95;
            None never merges.
        clock: the time source for time-to-live, default `time.time`.
        ef_search: HNSW candidate list size per search (higher: better recall, slower); default 100.
        exact_below: namespaces with fewer memories than this are searched exactly; default 2,000.
        hnsw_m: the HNSW graph's links per node; default 16.
        ef_construction: the HNSW build-time candidate list size; default 64.

    Raises:
        ConfigError: psycopg is missing, pgvector is older than 0.8 or missing, or the table holds
            vectors of another size.
    """

    def __init__(
        self,
        url: str,
        *,
        embedder: Embedder | str | None = "local",
        dim: int | None = None,
        merge_threshold: float | None = 0.95,
        clock: Callable[[], float] = time.time,
        ef_search: int = 100,
        exact_below: int = 2000,
        hnsw_m: int = 16,
        ef_construction: int = 64,
    ) -> None:
        try:
            import psycopg
        except ImportError:
            raise ConfigError("the pgvector memory store needs psycopg; pip install 'keel[postgres]'") from None
        if isinstance(embedder, str):
            from .embeddings import resolve_embedder

            embedder = resolve_embedder(embedder)
        size = dim or (embedder.dim if embedder is not None else None)
        if not isinstance(size, int) or size < 1:
            raise ConfigError("a store without an embedder needs dim=<vector size>")
        self.dim, self.merge_threshold, self.clock = size, merge_threshold, clock
        self.ef_search, self.exact_below = int(ef_search), int(exact_below)
        self.hnsw_m, self.ef_construction = int(hnsw_m), int(ef_construction)
        self._vectors = VectorCache(embedder, size)
        self._lock = threading.RLock()
        self._partitions: dict[str, str] = {}
        self._large: dict[Namespace, int] = {}
        self.url = url.replace("postgresql+psycopg://", "postgresql://")
        try:
            self._conn = psycopg.connect(self.url, autocommit=True)  # transactions are explicit
        except psycopg.OperationalError as exc:
            raise ConfigError(f"cannot connect to PostgreSQL at {self.url}: {exc}") from None
        try:
            self._migrate(size)
        except BaseException:
            self._conn.close()
            raise

    def _migrate(self, size: int) -> None:
        with self._conn.transaction():
            self._conn.execute("SELECT pg_advisory_xact_lock(hashtext('keel_memories'))")
            available = self._conn.execute(
                "SELECT default_version FROM pg_available_extensions WHERE name = 'vector'"
            ).fetchone()
            if available is None:
                raise ConfigError("the pgvector extension is not installed on this PostgreSQL server; install 0.8+")
            self._conn.execute(_SCHEMA.format(dim=size))
            version = str(
                self._conn.execute("SELECT extversion FROM pg_extension WHERE extname = 'vector'").fetchone()[0]  # type: ignore[index]
            )
            if tuple(int(p) for p in version.split(".")[:2]) < (0, 8):
                raise ConfigError(f"pgvector {version} is too old: keel needs 0.8+ (iterative index scans)")
            row = self._conn.execute("SELECT value FROM keel_memory_settings WHERE key = 'dim'").fetchone()
            if row is None:
                self._conn.execute("INSERT INTO keel_memory_settings VALUES ('dim', %s)", (str(size),))
            elif int(row[0]) != size:
                raise ConfigError(
                    f"keel_memories holds {row[0]}-dimensional memories but this store was configured for {size}; "
                    "use the embedder it was written with, or another database"
                )
        # Session settings of this store's own connection: filters (agent, user, expiry, metadata) are
        # applied while walking the index, which keeps going until k rows pass (pgvector 0.8).
        self._conn.execute("SET hnsw.iterative_scan = strict_order")
        self._conn.execute(f"SET hnsw.ef_search = {int(self.ef_search)}")
        self._ef_search = self.ef_search

    # Partitions.

    def _partition(self, tenant: str, *, create: bool) -> str | None:
        name = self._partitions.get(tenant)
        if name is not None:
            return name
        row = self._conn.execute("SELECT partition FROM keel_memory_partitions WHERE tenant = %s", (tenant,)).fetchone()
        if row is None and create:
            from psycopg import sql

            self._conn.execute("SELECT pg_advisory_xact_lock(hashtext('keel_memories'))")
            row = self._conn.execute(
                "SELECT partition FROM keel_memory_partitions WHERE tenant = %s", (tenant,)
            ).fetchone()
            if row is None:
                name = "keel_memories_" + hashlib.sha256(tenant.encode()).hexdigest()[:20]
                self._conn.execute(
                    sql.SQL("CREATE TABLE {} PARTITION OF keel_memories FOR VALUES IN ({})").format(
                        sql.Identifier(name), sql.Literal(tenant)
                    )
                )
                self._conn.execute(
                    sql.SQL(
                        "CREATE INDEX {} ON {} USING hnsw (embedding vector_cosine_ops) "
                        "WITH (m = {}, ef_construction = {})"
                    ).format(
                        sql.Identifier(name + "_hnsw"),
                        sql.Identifier(name),
                        sql.Literal(self.hnsw_m),
                        sql.Literal(self.ef_construction),
                    )
                )
                self._conn.execute("INSERT INTO keel_memory_partitions VALUES (%s, %s)", (tenant, name))
                row = (name,)
        if row is None:
            return None
        self._partitions[tenant] = str(row[0])
        return str(row[0])

    def _table(self, tenant: str, *, create: bool = False) -> Any:
        from psycopg import sql

        name = self._partition(tenant, create=create)
        return None if name is None else sql.Identifier(name)

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
        """Store a memory and return it (upsert by `id`; a near-duplicate without an id is merged).

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
        with self._lock, self._conn.transaction():
            self._table(namespace.tenant, create=True)
            existing = self._row(namespace, id, live=False) if id is not None else None
            if existing is None and id is None and self.merge_threshold is not None:
                near = self._search(namespace, vec, 1, {}, self._size(namespace))
                if near and near[0].score >= self.merge_threshold:
                    existing = near[0].memory
                    meta = {**existing.metadata, **meta}
            if existing is not None:
                return self._replace(existing, clean, meta, src, expiry(ttl, self.clock), vec, now)
            memory = Memory(id or new_id(), namespace, clean, meta, src, now, now, expiry(ttl, self.clock))
            self._conn.execute(
                f"INSERT INTO keel_memories ({_COLUMNS}, embedding) "
                "VALUES (%s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s::vector)",
                (
                    namespace.tenant,
                    namespace.agent,
                    namespace.user,
                    memory.id,
                    clean,
                    json.dumps(meta),
                    src.run_id,
                    src.step,
                    src.kind,
                    now,
                    now,
                    memory.expires_at,
                    _literal(vec),
                ),
            )
            self._conn.execute(
                "INSERT INTO keel_memory_namespaces VALUES (%s, %s, %s, 1) ON CONFLICT (tenant, agent_name, user_id) "
                "DO UPDATE SET size = keel_memory_namespaces.size + 1",
                (namespace.tenant, namespace.agent, namespace.user),
            )
            return memory

    def add_many(
        self, namespace: Namespace, items: Sequence[tuple[str, Sequence[float]]], *, source: Source | None = None
    ) -> int:
        """Bulk-load (text, vector) pairs without merging; return how many were stored.

        Raises:
            UsageError: a text is empty or a vector has the wrong size.
        """
        rows = []
        src, now = source or Source(), self.clock()
        for text, vector in items:
            rows.append(
                (
                    namespace.tenant,
                    namespace.agent,
                    namespace.user,
                    new_id(),
                    check_text(text),
                    "{}",
                    src.run_id,
                    src.step,
                    src.kind,
                    now,
                    now,
                    None,
                    _literal(self._vectors.vector(None, vector)),
                )
            )
        with self._lock, self._conn.transaction():
            self._table(namespace.tenant, create=True)
            with self._conn.cursor() as cur:
                cur.executemany(
                    f"INSERT INTO keel_memories ({_COLUMNS}, embedding) "
                    "VALUES (%s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s::vector)",
                    rows,
                )
            self._conn.execute(
                "INSERT INTO keel_memory_namespaces VALUES (%s, %s, %s, %s) ON CONFLICT (tenant, agent_name, user_id) "
                "DO UPDATE SET size = keel_memory_namespaces.size + EXCLUDED.size",
                (namespace.tenant, namespace.agent, namespace.user, len(rows)),
            )
        return len(rows)

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
        self._conn.execute(
            "UPDATE keel_memories SET text = %s, metadata = %s, run_id = %s, step = %s, kind = %s, updated_at = %s, "
            "expires_at = %s, embedding = COALESCE(%s::vector, embedding) "
            "WHERE tenant = %s AND agent_name = %s AND user_id = %s AND id = %s",
            (
                text,
                json.dumps(meta),
                src.run_id,
                src.step,
                src.kind,
                now,
                expires_at,
                None if vec is None else _literal(vec),
                ns.tenant,
                ns.agent,
                ns.user,
                old.id,
            ),
        )
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
        with self._lock, self._conn.transaction():
            old = self._row(namespace, check_id(id), live=True)
            if old is None:
                raise MemoryNotFound(f"namespace {namespace} has no memory {id!r} (never stored, deleted or expired)")
            return self._replace(
                old,
                clean if clean is not None else old.text,
                meta if meta is not None else old.metadata,
                old.source,
                expiry(ttl, self.clock) if ttl is not None else old.expires_at,
                vec,
                self.clock(),
            )

    def delete(self, namespace: Namespace, id: str) -> bool:
        """Delete a memory; True when one was deleted."""
        with self._lock, self._conn.transaction():
            cur = self._conn.execute(
                "DELETE FROM keel_memories WHERE tenant = %s AND agent_name = %s AND user_id = %s AND id = %s",
                (namespace.tenant, namespace.agent, namespace.user, check_id(id)),
            )
            if cur.rowcount:
                self._conn.execute(
                    "UPDATE keel_memory_namespaces SET size = size - 1 WHERE tenant = %s AND agent_name = %s "
                    "AND user_id = %s",
                    (namespace.tenant, namespace.agent, namespace.user),
                )
            return cur.rowcount > 0

    def purge_expired(self) -> int:
        """Delete expired memories; return how many."""
        with self._lock, self._conn.transaction():
            rows = self._conn.execute(
                "DELETE FROM keel_memories WHERE expires_at IS NOT NULL AND expires_at <= %s "
                "RETURNING tenant, agent_name, user_id",
                (self.clock(),),
            ).fetchall()
            for tenant, agent, user in rows:
                self._conn.execute(
                    "UPDATE keel_memory_namespaces SET size = size - 1 WHERE tenant = %s AND agent_name = %s "
                    "AND user_id = %s",
                    (tenant, agent, user),
                )
            return len(rows)

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
        with self._lock:  # two statements in autocommit: a search needs no transaction
            size = self._size(namespace)
            if size is None:
                if missing_ok:
                    return []
                raise unknown_namespace(namespace, self.namespaces(namespace.tenant))
            hits = self._search(namespace, vec, k, wanted, size)
        return [h for h in hits if min_score is None or h.score >= min_score]

    def _size(self, ns: Namespace) -> int | None:
        """Memories written to `ns` (expired ones included), or None when it was never written to.

        Only the choice between an exact scan and the index depends on it, so a namespace once seen
        large is not asked about again (it would take many deletions to make it small).
        """
        if ns in self._large:
            return self._large[ns]
        row = self._conn.execute(
            "SELECT size FROM keel_memory_namespaces WHERE tenant = %s AND agent_name = %s AND user_id = %s",
            (ns.tenant, ns.agent, ns.user),
        ).fetchone()
        if row is None:
            return None
        if int(row[0]) >= self.exact_below:
            self._large[ns] = int(row[0])
        return int(row[0])

    def _search(
        self, ns: Namespace, vec: list[float], k: int, filters: dict[str, FilterValue], size: int | None
    ) -> list[Hit]:
        from psycopg import sql

        table = self._table(ns.tenant)
        if table is None:
            return []
        exact = size is None or size < self.exact_below
        literal = _literal(vec)
        conditions = ["tenant = %s", "agent_name = %s", "user_id = %s", "(expires_at IS NULL OR expires_at > %s)"]
        params: list[Any] = [literal, ns.tenant, ns.agent, ns.user, self.clock()]
        for key, value in filters.items():
            if value is None:
                conditions.append("(metadata -> %s IS NULL OR metadata -> %s = 'null'::jsonb)")
                params.extend([key, key])
            else:
                conditions.append("metadata -> %s = %s::jsonb")
                params.extend([key, json.dumps(value)])
        # "+ 0" hides the ordering from the planner, so a small namespace is scanned exactly.
        order = "(embedding <=> %s::vector) + 0" if exact else "embedding <=> %s::vector"
        if not exact and k > self._ef_search:  # the session's setting (see _migrate) is too small for this k
            self._conn.execute(sql.SQL("SET hnsw.ef_search = {}").format(sql.Literal(k)))
            self._ef_search = k
        query = sql.SQL(
            "SELECT {columns}, embedding <=> %s::vector AS distance FROM {table} WHERE {where} "
            "ORDER BY {order} LIMIT {k}"
        ).format(
            columns=sql.SQL(_COLUMNS),
            table=table,
            where=sql.SQL(" AND ".join(conditions)),
            order=sql.SQL(order),
            k=sql.Literal(k),
        )
        if exact:
            rows = self._conn.execute(query, [*params, literal]).fetchall()
        else:
            # The planner, seeing filters on agent and user, may prefer the primary key and a sort of the
            # whole namespace (exact, and slow at this size): plans that sort are ruled out for this query.
            with self._conn.transaction():
                self._conn.execute("SET LOCAL enable_sort = off; SET LOCAL enable_seqscan = off")
                rows = self._conn.execute(query, [*params, literal]).fetchall()
        return [Hit(_memory(r[:-1]), 1.0 - float(r[-1])) for r in rows]

    def get(self, namespace: Namespace, id: str) -> Memory | None:
        """The live memory with this id, or None."""
        with self._lock, self._conn.transaction():
            return self._row(namespace, check_id(id), live=True)

    def count(self, namespace: Namespace) -> int:
        """Live memories in `namespace`."""
        with self._lock, self._conn.transaction():
            row = self._conn.execute(
                "SELECT count(*) FROM keel_memories WHERE tenant = %s AND agent_name = %s AND user_id = %s "
                "AND (expires_at IS NULL OR expires_at > %s)",
                (namespace.tenant, namespace.agent, namespace.user, self.clock()),
            ).fetchone()
            return int(row[0]) if row else 0

    def namespaces(self, tenant: str) -> list[Namespace]:
        """The namespaces of `tenant` ever written to."""
        with self._lock, self._conn.transaction():
            rows = self._conn.execute(
                "SELECT tenant, agent_name, user_id FROM keel_memory_namespaces WHERE tenant = %s "
                "ORDER BY agent_name, user_id",
                (tenant,),
            ).fetchall()
        return [Namespace(*r) for r in rows]

    def close(self) -> None:
        """Close the connection."""
        with self._lock:
            self._conn.close()

    def _row(self, ns: Namespace, id: str | None, *, live: bool) -> Memory | None:
        row = self._conn.execute(
            f"SELECT {_COLUMNS} FROM keel_memories WHERE tenant = %s AND agent_name = %s AND user_id = %s AND id = %s",
            (ns.tenant, ns.agent, ns.user, id),
        ).fetchone()
        if row is None:
            return None
        m = _memory(row)
        if live and m.expires_at is not None and m.expires_at <= self.clock():
            return None
        return m

    def __repr__(self) -> str:
        return f"PgVectorStore(dim={self.dim})"


def _memory(row: Sequence[Any]) -> Memory:
    tenant, agent, user, id, text, metadata, run_id, step, kind, created, updated, expires = row
    return Memory(
        id,
        Namespace(tenant, agent, user),
        text,
        metadata if isinstance(metadata, dict) else json.loads(metadata),
        Source(run_id, int(step), kind),
        float(created),
        float(updated),
        None if expires is None else float(expires),
    )
