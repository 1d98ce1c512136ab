"""Embedders (the pinned offline model, OpenAI-compatible servers) and the pgvector layout."""

from __future__ import annotations

import json
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, HTTPServer
from pathlib import Path
from typing import Any

import pytest

import keel.memory
from keel import ConfigError, UsageError
from keel.memory import MiniLMEmbedder, Namespace, OpenAIEmbedder, PgVectorStore, resolve_embedder
from keel.memory import embeddings as emb


def test_every_public_memory_name_is_documented() -> None:
    assert keel.memory.__all__ == sorted(keel.memory.__all__)
    for name in keel.memory.__all__:
        assert (getattr(keel.memory, name).__doc__ or "").strip(), name


def test_a_model_file_that_is_not_the_pinned_one_is_refused(tmp_path: Path) -> None:
    fake = tmp_path / "model.onnx"
    fake.write_bytes(b"not the model")
    with pytest.raises(ConfigError, match=r"has sha256 .* but keel pins 8199be6f.*reinstall the pinned version"):
        emb._verified(fake, emb.MODEL_SHA256)
    with pytest.raises(ConfigError, match="needs the package 'no_such_package'.*keel\\[memory\\]"):
        emb._package_file("no_such_package", "model.onnx")
    real = emb._package_file(emb.MODEL_PACKAGE, "model.onnx")
    assert emb._verified(real, emb.MODEL_SHA256) == real


def test_embedder_errors() -> None:
    with pytest.raises(UsageError, match="cannot embed an empty text"):
        MiniLMEmbedder().embed(["ok", " "])
    with pytest.raises(ConfigError, match="unknown embedder 'bert'"):
        resolve_embedder("bert")
    assert resolve_embedder("local") is resolve_embedder("minilm")


class _Embeddings(BaseHTTPRequestHandler):
    """An OpenAI-compatible /v1/embeddings endpoint: a 4-dimensional vector from each text's length."""

    def do_POST(self) -> None:  # noqa: N802
        body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
        data = [
            {"object": "embedding", "index": i, "embedding": [float(len(t)), 1.0, 0.0, 2.0]}
            for i, t in enumerate(body["input"])
        ]
        out = json.dumps({"object": "list", "data": data, "model": body["model"], "usage": {}}).encode()
        self.send_response(200)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(out)))
        self.end_headers()
        self.wfile.write(out)

    def log_message(self, *_: Any) -> None:
        pass


@pytest.fixture
def embeddings_server() -> Iterator[str]:
    server = HTTPServer(("127.0.0.1", 0), _Embeddings)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{server.server_port}/v1"
    server.shutdown()
    server.server_close()
    thread.join()


def test_openai_embeddings_when_configured(embeddings_server: str, tmp_path: Path) -> None:
    import openai

    from keel.memory import SqliteVecStore

    client = openai.OpenAI(base_url=embeddings_server, api_key="test")
    embedder = OpenAIEmbedder("tiny-embedder", dim=4, client=client)
    [a, b] = embedder.embed(["abc", "abcdef"])
    assert a == pytest.approx([3 / 14**0.5, 1 / 14**0.5, 0.0, 2 / 14**0.5])
    assert sum(x * x for x in b) == pytest.approx(1.0)
    store = SqliteVecStore(tmp_path / "m.db", embedder=embedder)
    store.add(Namespace("t"), "abc")
    assert store.search(Namespace("t"), "xyz", k=1)[0].score == pytest.approx(1.0)
    store.close()
    with pytest.raises(ConfigError, match="dimension of embedding model 'mystery' is unknown"):
        OpenAIEmbedder("mystery", client=client)


def test_pgvector_has_one_partition_and_hnsw_index_per_tenant(pg_database: str) -> None:
    import psycopg

    store = PgVectorStore(pg_database, embedder=None, dim=4, exact_below=10, merge_threshold=None)
    for tenant in ("acme", "globex"):
        store.add_many(Namespace(tenant), [(f"{tenant} {i}", [1.0, i, i % 3, 1.0]) for i in range(50)])
    with psycopg.connect(pg_database) as conn:
        parts = dict(conn.execute("SELECT tenant, partition FROM keel_memory_partitions").fetchall())
        assert set(parts) == {"acme", "globex"}
        indexes = conn.execute(
            "SELECT tablename, indexdef FROM pg_indexes WHERE indexdef LIKE '%USING hnsw%' ORDER BY tablename"
        ).fetchall()
        assert sorted(t for t, _ in indexes) == sorted(parts.values())  # one per partition, none on the parent
        bounds = conn.execute(
            "SELECT c.relname, pg_get_expr(c.relpartbound, c.oid) FROM pg_class c "
            "JOIN pg_inherits i ON i.inhrelid = c.oid JOIN pg_class p ON p.oid = i.inhparent "
            "WHERE p.relname = 'keel_memories'"
        ).fetchall()
        assert {name: bound for name, bound in bounds} == {
            parts["acme"]: "FOR VALUES IN ('acme')",
            parts["globex"]: "FOR VALUES IN ('globex')",
        }
    hits = store.search(Namespace("acme"), [1.0, 7.0, 1.0, 1.0], k=5)
    assert [h.memory.text for h in hits][0] == "acme 7" and all(h.memory.text.startswith("acme") for h in hits)
    store.close()


def test_pgvector_large_namespaces_walk_the_tenants_hnsw_index_with_their_filters(pg_database: str) -> None:
    import random

    store = PgVectorStore(pg_database, embedder=None, dim=4, exact_below=10, merge_threshold=None)
    rng = random.Random(2)
    spaces = [Namespace("acme"), Namespace("acme", "bot", "u1"), Namespace("acme", "bot", "u2")]
    for ns in spaces:
        store.add_many(ns, [(f"{ns} {i}", [rng.gauss(0, 1) for _ in range(4)]) for i in range(60)])
    probe = [0.3, -0.2, 0.9, 0.1]
    for ns in spaces:
        hits = store.search(ns, probe, k=10)
        assert len(hits) == 10 and all(h.memory.namespace == ns for h in hits)  # filtered during the walk
        scores = [h.score for h in hits]
        assert scores == sorted(scores, reverse=True)
    with store._conn.transaction():  # the plan the store uses for a namespace this size
        store._conn.execute("SET LOCAL enable_sort = off")
        store._conn.execute("SET LOCAL enable_seqscan = off")
        plan = "\n".join(
            r[0]
            for r in store._conn.execute(
                f'EXPLAIN SELECT id FROM "{store._partition("acme", create=False)}" '
                "WHERE tenant = 'acme' AND agent_name = 'bot' AND user_id = 'u1' "
                "ORDER BY embedding <=> '[0.3,-0.2,0.9,0.1]'::vector LIMIT 10"
            )
        )
    assert "_hnsw" in plan and "Sort" not in plan
    store.close()


def test_import_keel_loads_no_memory_dependency() -> None:
    import subprocess
    import sys

    code = (
        "import sys, keel, keel.memory; "
        "print(sorted(m for m in ('onnxruntime', 'apsw', 'sqlite_vec', 'numpy', 'tokenizers', 'psycopg') "
        "if m in sys.modules))"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60, check=True)
    assert out.stdout.strip() == "[]"
