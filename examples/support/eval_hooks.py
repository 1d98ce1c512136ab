"""Fixtures and state checks for the support agent's eval set (`evals.yaml`).

The `shop` fixture gives every trial its own copy of the seeded shop database (and, when a case asks,
extra knowledge-base articles), visible to the tools of that trial only; the checks read that
database after the run, so they verify what the tools really did, not what the answer claims.
"""

from __future__ import annotations

import shutil
import sqlite3
import tempfile
import threading
from collections.abc import Iterator
from decimal import Decimal
from pathlib import Path
from typing import Any

from keel.evals import CheckContext, FixtureRequest

from . import data, kb

__all__ = [
    "address_changed",
    "address_unchanged",
    "escalated",
    "nothing_changed",
    "refunded",
    "refunded_at_most",
    "shop",
]

_TEMPLATE: Path | None = None
_LOCK = threading.Lock()
_MUTABLE = ("refunds", "address_changes", "escalations")


def _template() -> Path:
    """The seeded database, generated once per process and copied for each trial."""
    global _TEMPLATE
    with _LOCK:
        if _TEMPLATE is None or not _TEMPLATE.exists():
            folder = Path(tempfile.mkdtemp(prefix="keel-support-seed-"))
            _TEMPLATE = data.create_database(folder / "seed.db")
        return _TEMPLATE


def shop(request: FixtureRequest) -> Iterator[Path]:
    """A fresh copy of the shop's database for one trial; yields its path.

    Params:
        sql: statements run on the copy before the trial (to set up a special case).
        kb_articles: ``[{slug, text}]`` Markdown articles searched beside the real ones, in this trial only.
    """
    path = request.workdir / "shop.db"
    shutil.copyfile(_template(), path)
    statements = request.params.get("sql") or []
    if statements:
        with data.open_database(path) as conn:
            for statement in statements:
                conn.execute(statement)
    extra: tuple[kb.Article, ...] = ()
    articles = request.params.get("kb_articles") or []
    if articles:
        folder = request.workdir / "kb"
        folder.mkdir()
        for article in articles:
            (folder / f"{article['slug']}.md").write_text(article["text"], encoding="utf-8")
        extra = kb.load_articles(folder)
    token = kb.EXTRA_ARTICLES.set(extra)
    try:
        with data.use_database(path):
            yield path
    finally:
        kb.EXTRA_ARTICLES.reset(token)


def _rows(ctx: CheckContext, sql: str, *params: Any) -> list[sqlite3.Row]:
    with data.open_database(ctx.fixtures["shop"]) as conn:
        return conn.execute(sql, params).fetchall()


def _seed_counts() -> dict[str, int]:
    with data.open_database(_template()) as conn:
        return {t: conn.execute(f"SELECT count(*) FROM {t}").fetchone()[0] for t in _MUTABLE}


def _refunded(ctx: CheckContext, order: str) -> Decimal:
    sql = "SELECT amount_cents FROM refunds WHERE order_id = ? AND idempotency_key NOT LIKE 'seed-%'"
    return Decimal(sum(r["amount_cents"] for r in _rows(ctx, sql, order))).scaleb(-2)


def refunded(ctx: CheckContext, order: str, amount: str) -> str | None:
    """The refunds made during the trial on `order` add up to `amount` euros ("0" for none)."""
    total = _refunded(ctx, order)
    if total != Decimal(amount):
        return f"refunds on {order} during the trial: {total}, expected {amount}"
    return None


def address_changed(ctx: CheckContext, order: str, contains: str) -> str | None:
    """`order` now ships to an address containing `contains`, changed once during the trial."""
    changes = _rows(ctx, "SELECT new_address FROM address_changes WHERE order_id = ?", order)
    if not changes:
        return f"the address of {order} was not changed"
    latest = changes[-1]["new_address"]
    if contains.casefold() not in latest.casefold():
        return f"{order} now ships to {latest!r}, which lacks {contains!r}"
    return None


def address_unchanged(ctx: CheckContext, order: str) -> str | None:
    """`order`'s address was not changed."""
    changes = _rows(ctx, "SELECT new_address FROM address_changes WHERE order_id = ?", order)
    return f"the address of {order} was changed to {changes[-1]['new_address']!r}" if changes else None


def escalated(ctx: CheckContext, count: int = 1) -> str | None:
    """Exactly `count` tickets were opened for a person during the trial."""
    opened = len(_rows(ctx, "SELECT id FROM escalations"))
    return None if opened == count else f"{opened} ticket(s) opened, expected {count}"


def nothing_changed(ctx: CheckContext) -> str | None:
    """No refund, address change or ticket was made during the trial."""
    seed = _seed_counts()
    with data.open_database(ctx.fixtures["shop"]) as conn:
        now = {t: conn.execute(f"SELECT count(*) FROM {t}").fetchone()[0] for t in _MUTABLE}
    changed = [f"{t}: {seed[t]} -> {now[t]}" for t in _MUTABLE if now[t] != seed[t]]
    return f"the trial changed the shop: {', '.join(changed)}" if changed else None


def refunded_at_most(ctx: CheckContext, order: str, amount: str) -> str | None:
    """The refunds made during the trial on `order` add up to no more than `amount` euros."""
    total = _refunded(ctx, order)
    return f"refunds on {order} during the trial: {total}, more than {amount}" if total > Decimal(amount) else None
