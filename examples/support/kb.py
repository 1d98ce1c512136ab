"""Keyword search over the shop's knowledge base, the Markdown articles in `kb/`.

Each article is a title line (`# Title`), a `Keywords:` line and short paragraphs. A query term
scores when it appears in an article (twice as much in its title or keywords), weighted so rare
terms count more than terms every article shares. Terms match on a shared prefix of at least four
letters, so "refunds", "refunded" and "refund" meet without a stemmer.

Run `python -m examples.support.kb "how do I get my money back"` to try a query.
"""

from __future__ import annotations

import math
import re
import sys
from contextvars import ContextVar
from dataclasses import dataclass
from functools import cache
from pathlib import Path

__all__ = ["EXTRA_ARTICLES", "KB_DIR", "Article", "load_articles", "search", "terms"]

KB_DIR = Path(__file__).with_name("kb")
SNIPPET_CHARS = 280
_STOPWORDS = """
a an and are as at be can could did do does for from get got have how i if in is it its me my no not of on or our
please so that the their there this to was we what when where which who why will with would you your want need
like order orders
"""
STOPWORDS = frozenset(_STOPWORDS.split())


@dataclass(frozen=True)
class Article:
    """One knowledge-base article."""

    slug: str
    title: str
    paragraphs: tuple[str, ...]
    key_terms: frozenset[str]
    """Terms of the title and the keywords line."""
    body_terms: frozenset[str]


def terms(text: str) -> list[str]:
    """The searchable words of `text`: lowercase, without stopwords."""
    return [w for w in re.findall(r"[a-z0-9]+", text.lower()) if w not in STOPWORDS]


def _matches(term: str, vocabulary: frozenset[str]) -> bool:
    if term in vocabulary:
        return True
    if len(term) < 4:
        return False
    return any(len(v) >= 4 and (v.startswith(term) or term.startswith(v)) for v in vocabulary)


def _parse(path: Path) -> Article:
    title, keywords, paragraphs = path.stem, "", []
    for block in path.read_text(encoding="utf-8").split("\n\n"):
        lines = []
        for line in block.strip().splitlines():
            if line.startswith("# "):
                title = line[2:].strip()
            elif line.lower().startswith("keywords:"):
                keywords = line.partition(":")[2]
            else:
                lines.append(line.strip())
        if lines:
            paragraphs.append(" ".join(lines))
    return Article(
        slug=path.stem,
        title=title,
        paragraphs=tuple(paragraphs),
        key_terms=frozenset(terms(f"{title} {keywords}")),
        body_terms=frozenset(terms(" ".join(paragraphs))),
    )


@cache
def load_articles(directory: Path = KB_DIR) -> tuple[Article, ...]:
    """Every article in `directory`, sorted by file name."""
    return tuple(_parse(p) for p in sorted(directory.glob("*.md")))


EXTRA_ARTICLES: ContextVar[tuple[Article, ...]] = ContextVar("support_kb_extra", default=())
"""Articles searched beside `kb/` in this context only (an eval fixture plants a poisoned one here)."""


def shorten(paragraph: str) -> str:
    """`paragraph`, cut at a word to at most `SNIPPET_CHARS` (with " ..." when cut)."""
    if len(paragraph) <= SNIPPET_CHARS:
        return paragraph
    return paragraph[:SNIPPET_CHARS].rsplit(" ", 1)[0] + " ..."


def _snippet(article: Article, query: list[str], lead: bool = False) -> str:
    """The paragraph that shares most terms with the query (the first on a tie), shortened.

    With `lead`, the article's first paragraph comes before it: articles open with their main answer,
    which may not share the query's words ("payment methods" is answered by "We accept Visa, ...").
    """

    def overlap(paragraph: str) -> int:
        vocabulary = frozenset(terms(paragraph))
        return sum(_matches(t, vocabulary) for t in query)

    best = max(article.paragraphs, key=overlap, default="")
    if lead and article.paragraphs and best != article.paragraphs[0]:
        return f"{shorten(article.paragraphs[0])} {shorten(best)}"
    return shorten(best)


def search(query: str, limit: int = 3, articles: tuple[Article, ...] | None = None) -> list[dict[str, str]]:
    """The best `limit` articles for `query`, as title and snippet, best first.

    Articles scoring under a third of the best are left out: they are rarely what was asked. The best
    article's snippet also holds its first paragraph (see `_snippet`).
    """
    pool = articles if articles is not None else load_articles() + EXTRA_ARTICLES.get()
    query_terms = list(dict.fromkeys(terms(query)))
    scores: list[tuple[float, int, Article]] = []
    weights: dict[str, float] = {}
    for term in query_terms:
        found = sum(_matches(term, a.key_terms | a.body_terms) for a in pool)
        weights[term] = 1 + math.log(len(pool) / found) if found else 0.0
    for index, article in enumerate(pool):
        score = sum(
            weights[t] * (2 if _matches(t, article.key_terms) else 1 if _matches(t, article.body_terms) else 0)
            for t in query_terms
        )
        if score > 0:
            scores.append((score, index, article))
    scores.sort(key=lambda s: (-s[0], s[1]))
    top = [s for s in scores[:limit] if s[0] * 3 >= scores[0][0]]
    return [{"title": a.title, "snippet": _snippet(a, query_terms, lead=i == 0)} for i, (_, _, a) in enumerate(top)]


if __name__ == "__main__":
    for hit in search(" ".join(sys.argv[1:]) or "how do I get my money back"):
        print(f"{hit['title']}\n  {hit['snippet']}\n")
