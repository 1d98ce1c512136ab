"""Semantic retrieval with the real embedding model: questions in other words find their facts."""

from __future__ import annotations

import math
from typing import Any

import pytest
from semantic_corpus import FACTS, distractors  # type: ignore[import-not-found]

from keel.memory import MiniLMEmbedder, Namespace


@pytest.fixture(scope="module")
def corpus() -> dict[str, Any]:
    """Every text and question embedded once, shared by both backends."""
    embedder = MiniLMEmbedder()
    noise = distractors(1000)
    facts = [fact for fact, _ in FACTS]
    questions = [q for _, q in FACTS]
    vectors = embedder.embed(facts + noise + questions)
    return {
        "facts": list(zip(facts, vectors[: len(facts)], strict=True)),
        "noise": list(zip(noise, vectors[len(facts) : len(facts) + len(noise)], strict=True)),
        "questions": vectors[len(facts) + len(noise) :],
    }


def test_embeddings_are_unit_vectors_and_deterministic(corpus: dict[str, Any]) -> None:
    embedder = MiniLMEmbedder()
    text, stored = corpus["facts"][0]
    again = embedder.embed([text])[0]
    assert len(again) == 384
    assert math.isclose(sum(x * x for x in again), 1.0, abs_tol=1e-5)
    assert sum(a * b for a, b in zip(again, stored, strict=True)) == pytest.approx(1.0, abs=1e-5)  # batch == single


@pytest.mark.slow
def test_paraphrased_questions_find_their_facts_among_1000_distractors(make_store: Any, corpus: dict[str, Any]) -> None:
    store = make_store(embedder=None, dim=384, merge_threshold=None)
    ns = Namespace("acme", "support")
    items = corpus["noise"] + corpus["facts"]
    store.add_many(ns, items[:500])
    for text, vec in items[500:]:
        store.add(ns, text, vector=vec)
    assert store.count(ns) == len(items) >= 1000
    ranks = []
    for (fact, _), question in zip(corpus["facts"], corpus["questions"], strict=True):
        texts = [h.memory.text for h in store.search(ns, question, k=5)]
        ranks.append(texts.index(fact) + 1 if fact in texts else None)
    assert all(r is not None for r in ranks), ranks  # every fact in the top 5
    assert sum(r == 1 for r in ranks) >= len(FACTS) - 1, ranks  # and first for all but at most one
