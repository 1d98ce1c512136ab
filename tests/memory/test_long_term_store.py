"""The MemoryStore contract on both backends: write, search, update, delete, TTL, merge, isolation, errors."""

from __future__ import annotations

import math
import random
from typing import Any

import pytest

from keel import UsageError
from keel.memory import MemoryNotFound, Namespace, Source, UnknownNamespace

StoreFactory = Any

DIM = 8
NS = Namespace("acme", "support", "C-1")


def unit(*values: float) -> list[float]:
    vec = list(values) + [0.0] * (DIM - len(values))
    norm = math.sqrt(sum(x * x for x in vec))
    return [x / norm for x in vec]


def test_add_search_returns_nearest_with_source_and_score(make_store: StoreFactory) -> None:
    store = make_store(embedder=None, dim=DIM)
    a = store.add(NS, "likes tea", vector=unit(1, 0), source=Source("run-1", 3, "remember"), metadata={"k": "drink"})
    store.add(NS, "likes jazz", vector=unit(0, 1))
    store.add(NS, "lives in Porto", vector=unit(0, 0, 1))
    hits = store.search(NS, unit(1, 0.1), k=2)
    assert [h.memory.text for h in hits] == ["likes tea", "likes jazz"]
    assert hits[0].score == pytest.approx(1 / math.sqrt(1.01), abs=1e-4)
    assert hits[0].score > hits[1].score
    assert hits[0].memory.id == a.id
    assert hits[0].memory.source == Source("run-1", 3, "remember")
    assert hits[0].memory.metadata == {"k": "drink"}
    assert store.count(NS) == 3


def test_min_score_and_metadata_filters(make_store: StoreFactory) -> None:
    store = make_store(embedder=None, dim=DIM, merge_threshold=None)
    store.add(NS, "tea", vector=unit(1, 0), metadata={"topic": "drink", "hot": True})
    store.add(NS, "coffee", vector=unit(1, 0.2), metadata={"topic": "drink", "hot": False})
    store.add(NS, "jazz", vector=unit(0, 1), metadata={"topic": "music"})
    assert [h.memory.text for h in store.search(NS, unit(1, 0), k=3, min_score=0.5)] == ["tea", "coffee"]
    assert [h.memory.text for h in store.search(NS, unit(1, 0), k=3, filters={"topic": "music"})] == ["jazz"]
    assert [h.memory.text for h in store.search(NS, unit(1, 0), k=3, filters={"hot": False})] == ["coffee"]
    assert [h.memory.text for h in store.search(NS, unit(1, 0), k=3, filters={"hot": None})] == ["jazz"]


def test_update_changes_text_vector_and_metadata(make_store: StoreFactory) -> None:
    store = make_store(embedder=None, dim=DIM, merge_threshold=None)
    m = store.add(NS, "likes tea", vector=unit(1, 0))
    changed = store.update(NS, m.id, metadata={"checked": True})
    assert changed.text == "likes tea" and changed.metadata == {"checked": True}
    with pytest.raises(UsageError, match="has no embedder"):  # a new text needs re-embedding
        store.update(NS, m.id, text="likes coffee")
    assert store.get(NS, m.id).text == "likes tea"  # the failed update changed nothing
    with pytest.raises(MemoryNotFound, match="no memory 'nope'"):
        store.update(NS, "nope", metadata={})


def test_update_re_embeds_the_text(make_store: StoreFactory) -> None:
    store = make_store()
    ns = Namespace("acme")
    m = store.add(ns, "The customer prefers to be called in the morning.")
    store.add(ns, "Invoices are sent on the first day of each month.")
    updated = store.update(ns, m.id, text="The customer wants all invoices as paper copies by post.")
    assert updated.created_at <= updated.updated_at
    top = store.search(ns, "how should billing documents be delivered to this client?", k=1)[0]
    assert top.memory.id == m.id and top.memory.text.startswith("The customer wants all invoices")
    assert store.get(ns, m.id).text == updated.text


def test_delete(make_store: StoreFactory) -> None:
    store = make_store(embedder=None, dim=DIM)
    a = store.add(NS, "tea", vector=unit(1, 0))
    store.add(NS, "jazz", vector=unit(0, 1))
    assert store.delete(NS, a.id) is True
    assert store.delete(NS, a.id) is False
    assert store.get(NS, a.id) is None
    assert [h.memory.text for h in store.search(NS, unit(1, 0), k=5)] == ["jazz"]
    assert store.count(NS) == 1


def test_time_to_live(make_store: StoreFactory, clock: Any) -> None:
    store = make_store(embedder=None, dim=DIM, clock=clock)
    short = store.add(NS, "tea", vector=unit(1, 0), ttl=60)
    store.add(NS, "jazz", vector=unit(0.5, 1))
    assert short.expires_at == clock.now + 60
    assert [h.memory.text for h in store.search(NS, unit(1, 0), k=2)] == ["tea", "jazz"]
    clock.advance(61)
    assert [h.memory.text for h in store.search(NS, unit(1, 0), k=2)] == ["jazz"]
    assert store.get(NS, short.id) is None and store.count(NS) == 1
    with pytest.raises(MemoryNotFound):
        store.update(NS, short.id, ttl=100)
    assert store.purge_expired() == 1
    assert store.purge_expired() == 0
    kept = store.add(NS, "pizza", vector=unit(0, 0, 1), ttl=10)
    store.update(NS, kept.id, ttl=1000)  # a new ttl counts from now
    clock.advance(500)
    assert store.get(NS, kept.id) is not None


def test_expired_memories_do_not_take_places_in_the_top_k(make_store: StoreFactory, clock: Any) -> None:
    store = make_store(embedder=None, dim=DIM, clock=clock, merge_threshold=None)
    rng = random.Random(3)
    for i in range(30):  # the 30 nearest expire; 10 farther ones stay
        store.add(NS, f"near {i}", vector=unit(1, rng.random() * 0.1, rng.random() * 0.1), ttl=5)
    for i in range(10):
        store.add(NS, f"far {i}", vector=unit(0.2 + rng.random() * 0.1, 1, rng.random()))
    clock.advance(10)
    hits = store.search(NS, unit(1, 0), k=5)
    assert len(hits) == 5 and all(h.memory.text.startswith("far") for h in hits)


def test_upsert_by_id_and_near_duplicates_merge(make_store: StoreFactory) -> None:
    store = make_store(embedder=None, dim=DIM, merge_threshold=0.95)
    a = store.add(NS, "tea", vector=unit(1, 0), metadata={"a": 1})
    merged = store.add(NS, "green tea", vector=unit(1, 0.05), metadata={"b": 2}, source=Source("run-2", 4, "summary"))
    assert merged.id == a.id and merged.text == "green tea" and merged.metadata == {"a": 1, "b": 2}
    assert merged.source.run_id == "run-2" and merged.created_at == a.created_at
    other = store.add(NS, "coffee", vector=unit(1, 0.5))  # similarity 0.89: a different memory
    assert other.id != a.id and store.count(NS) == 2
    replaced = store.add(NS, "black tea", vector=unit(0, 0, 1), id=a.id)
    assert replaced.id == a.id and store.count(NS) == 2
    assert store.search(NS, unit(0, 0, 1), k=1)[0].memory.text == "black tea"
    fixed = store.add(NS, "jazz", vector=unit(0, 1), id="pref-music")
    assert store.get(NS, "pref-music") == fixed


def test_no_result_ever_crosses_namespaces(make_store: StoreFactory) -> None:
    store = make_store(embedder=None, dim=DIM, merge_threshold=None)
    rng = random.Random(5)
    spaces = [Namespace(t, a, u) for t in ("t1", "t2") for a in ("", "bot") for u in ("", "u1")]
    vectors = [unit(*(rng.gauss(0, 1) for _ in range(DIM))) for _ in range(20)]
    ids = {ns: set() for ns in spaces}
    for ns in spaces:
        for i, vec in enumerate(vectors):  # the same vectors in every namespace
            ids[ns].add(store.add(ns, f"{ns} #{i}", vector=vec).id)
    for ns in spaces:
        for vec in vectors:
            hits = store.search(ns, vec, k=20)
            assert len(hits) == 20
            assert all(h.memory.namespace == ns and h.memory.id in ids[ns] for h in hits)
            assert hits[0].score == pytest.approx(1.0, abs=1e-5)
        assert store.count(ns) == 20
    assert set(store.namespaces("t1")) == {n for n in spaces if n.tenant == "t1"}
    assert store.delete(Namespace("t2"), next(iter(ids[Namespace("t1")]))) is False


def test_bad_input_is_a_clear_error_and_changes_nothing(make_store: StoreFactory) -> None:
    store = make_store(embedder=None, dim=DIM)
    store.add(NS, "tea", vector=unit(1, 0))
    with pytest.raises(UnknownNamespace, match=r"namespace acme/support/C-2 holds no memories.*acme/support/C-1"):
        store.search(Namespace("acme", "support", "C-2"), unit(1, 0))
    assert store.search(Namespace("acme", "support", "C-2"), unit(1, 0), missing_ok=True) == []
    with pytest.raises(UsageError, match="the vector has 3 dimensions but this store holds 8-dimensional"):
        store.search(NS, [1.0, 0.0, 0.0])
    with pytest.raises(UsageError, match="the vector has 9 dimensions"):
        store.add(NS, "x", vector=[1.0] * 9)
    with pytest.raises(UsageError, match="text is empty"):
        store.add(NS, "   ", vector=unit(1, 0))
    with pytest.raises(UsageError, match="all zeros"):
        store.add(NS, "zero", vector=[0.0] * DIM)
    with pytest.raises(UsageError, match="k must be an integer from 1 to 1000"):
        store.search(NS, unit(1, 0), k=0)
    with pytest.raises(UsageError, match="min_score"):
        store.search(NS, unit(1, 0), min_score=2)
    with pytest.raises(UsageError, match="ttl must be a positive number"):
        store.add(NS, "x", vector=unit(1, 0), ttl=-1)
    with pytest.raises(UsageError, match="metadata must be JSON-ready"):
        store.add(NS, "x", vector=unit(1, 0), metadata={"when": object()})
    with pytest.raises(UsageError, match="tenant '' is invalid"):
        Namespace("")
    with pytest.raises(UsageError, match="user 'a b' is invalid"):
        Namespace("acme", "bot", "a b")
    assert store.count(NS) == 1


def test_empty_text_query_is_an_error(make_store: StoreFactory) -> None:
    store = make_store()
    store.add(NS, "The customer likes tea.")
    with pytest.raises(UsageError, match="text is empty"):
        store.search(NS, "")
    with pytest.raises(UsageError, match="text is empty"):
        store.add(NS, "\n")


def test_reopening_with_another_dimension_is_refused(make_store: StoreFactory) -> None:
    from keel import ConfigError

    make_store(embedder=None, dim=DIM).add(NS, "tea", vector=unit(1, 0))
    with pytest.raises(ConfigError, match="holds 8-dimensional memories but this store was configured for 16"):
        make_store(embedder=None, dim=16)
