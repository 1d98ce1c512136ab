"""The support agent's long-term memory: the knowledge base, searched by meaning, and what customers told it.

The articles in `kb/` are stored paragraph by paragraph in a sqlite-vec memory store (`$SUPPORT_MEMORY_DB`,
default `.keel/support-memory.db`), in the agent's shared namespace: every run recalls from it, and
`search_kb` searches it. Each paragraph's id is its article and position, and a paragraph is embedded
again only when its text changed, so loading is cheap after the first time. Customers' preferences go
to their own namespace (the run's ``user``), written at the end of a run, recalled in later ones.

Without the memory extra (``pip install 'keel[memory]'``) there is no store, and `search_kb` falls back
to the keyword search of `kb.py`.

Run `python -m examples.support.memory "how do I get my money back"` to try a query.
"""

from __future__ import annotations

import os
import sys
from functools import cache
from pathlib import Path
from typing import Any

from keel import ConfigError
from keel.memory import AgentMemory, MemoryStore, Namespace

from . import kb

__all__ = ["KB_NAMESPACE", "MIN_SCORE", "TENANT", "agent_memory", "load_kb", "search", "store"]

MEMORY_ENV = "SUPPORT_MEMORY_DB"
DEFAULT_PATH = Path(".keel/support-memory.db")
TENANT = "harbor-lane"
KB_NAMESPACE = Namespace(TENANT, "support")
MIN_SCORE = 0.2
"""Paragraphs less similar than this to the query are not results (an unrelated query finds nothing)."""
SPREAD = 0.15
"""Articles scoring more than this below the best are left out: they are rarely what was asked."""


def memory_path() -> Path:
    """The memory database: `$SUPPORT_MEMORY_DB`, or `.keel/support-memory.db` in the current directory."""
    return Path(os.environ.get(MEMORY_ENV) or DEFAULT_PATH)


def load_kb(target: MemoryStore, articles: tuple[kb.Article, ...] | None = None) -> int:
    """Store every paragraph of the articles (embedding only new or changed ones); return how many changed."""
    changed = 0
    for article in articles if articles is not None else kb.load_articles():
        for i, paragraph in enumerate(article.paragraphs):
            pid = f"{article.slug}-{i}"
            meta = {"slug": article.slug, "title": article.title, "paragraph": i}
            known = target.get(KB_NAMESPACE, pid)
            if known is None or known.text != paragraph or known.metadata != meta:
                target.add(KB_NAMESPACE, paragraph, id=pid, metadata=meta)
                changed += 1
    return changed


@cache
def _store(path: Path) -> MemoryStore | None:
    try:
        from keel.memory import SqliteVecStore

        opened = SqliteVecStore(path)
        load_kb(opened)
    except ConfigError:  # the memory extra is not installed
        return None
    return opened


def store() -> MemoryStore | None:
    """The support agent's memory store with the knowledge base loaded, or None without the memory extra."""
    return _store(memory_path().resolve())


def agent_memory(opened: MemoryStore | None = None) -> AgentMemory | None:
    """The agent's memory (default on `store()`): recall of articles and preferences, end-of-run facts."""
    opened = opened or store()
    if opened is None:
        return None
    # min_score 0.45: below it, recalled paragraphs were noise for the demo's order questions (0.33-0.37)
    # while the articles that answer a question scored 0.59-0.74.
    # No remember/recall tools: the small embedded model chooses among the shop's tools better without them;
    # preferences are written by the end-of-run summary, and only for runs that name their user.
    return AgentMemory(opened, tenant=TENANT, recall_k=2, min_score=0.45, recall_tokens=300, tools=False)


def search(query: str, limit: int = 3) -> list[dict[str, str]] | None:
    """The best `limit` articles for `query` by meaning, as title and snippet; None without a store."""
    opened = store()
    if opened is None:
        return None
    hits = opened.search(KB_NAMESPACE, query, k=4 * limit, min_score=MIN_SCORE)
    best: dict[str, Any] = {}
    for hit in hits:  # best first: the first hit of an article is its best paragraph
        best.setdefault(hit.memory.metadata["slug"], hit)
    ranked = [h for h in best.values() if h.score >= hits[0].score - SPREAD][:limit] if hits else []
    articles = {a.slug: a for a in kb.load_articles()}
    out = []
    for rank, hit in enumerate(ranked):
        article = articles[hit.memory.metadata["slug"]]
        paragraph = int(hit.memory.metadata["paragraph"])
        snippet = kb.shorten(article.paragraphs[paragraph])
        if rank == 0 and paragraph != 0:  # articles open with their main answer
            snippet = f"{kb.shorten(article.paragraphs[0])} {snippet}"
        out.append({"title": article.title, "snippet": snippet})
    return out


if __name__ == "__main__":
    for found in search(" ".join(sys.argv[1:]) or "how do I get my money back") or []:
        print(f"{found['title']}\n  {found['snippet']}\n")
