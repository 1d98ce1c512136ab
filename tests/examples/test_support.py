"""The support example: its seeded database, its tools, the refund and address rules, its agent."""

from __future__ import annotations

import importlib
import importlib.util
import json
import shutil
import sqlite3
import sys
from decimal import Decimal
from pathlib import Path
from types import ModuleType
from typing import Any

import pytest

from keel import Runtime, ToolContext, ToolError
from keel.models import ScriptedModel, ToolCall

ROOT = Path(__file__).resolve().parents[2]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))
data = importlib.import_module("examples.support.data")
kb = importlib.import_module("examples.support.kb")
shop = importlib.import_module("examples.support.shop")
tools = importlib.import_module("examples.support.tools")
AGENT_FILE = ROOT / "examples" / "support" / "agent.py"
TABLES = ("customers", "orders", "order_items", "shipments", "shipment_events", "refunds", "address_changes")


def ctx(key: str = "k") -> ToolContext:
    return ToolContext(run_id="r", call_id="c", step=1, idempotency_key=key)


def dump(path: Path) -> dict[str, list[tuple[Any, ...]]]:
    conn = sqlite3.connect(path)
    try:
        return {t: conn.execute(f"SELECT * FROM {t} ORDER BY 1, 2").fetchall() for t in TABLES}
    finally:
        conn.close()


def rows(path: Path, sql: str, *params: Any) -> list[tuple[Any, ...]]:
    conn = sqlite3.connect(path)
    try:
        return conn.execute(sql, params).fetchall()
    finally:
        conn.close()


@pytest.fixture(scope="session")
def seeded(tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = tmp_path_factory.mktemp("seed") / "support.db"
    data.create_database(path)
    return path


@pytest.fixture
def db(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, seeded: Path) -> Path:
    """A fresh copy of the seeded database, which the tools find through SUPPORT_DB."""
    path = tmp_path / "support.db"
    shutil.copy(seeded, path)
    monkeypatch.setenv(data.DB_ENV, str(path))
    monkeypatch.delenv(data.TODAY_ENV, raising=False)
    return path


# The generated data


def test_generation_is_deterministic(tmp_path: Path) -> None:
    first = dump(data.create_database(tmp_path / "a.db"))
    second = dump(data.create_database(tmp_path / "b.db"))
    assert first == second
    assert data.generate() == data.generate()


def test_database_has_the_expected_shape(seeded: Path) -> None:
    assert rows(seeded, "SELECT count(*) FROM customers") == [(50,)]
    assert rows(seeded, "SELECT count(*), min(id), max(id) FROM orders") == [(200, "A-1001", "A-1200")]
    statuses = {s for (s,) in rows(seeded, "SELECT DISTINCT status FROM orders")}
    assert statuses == set(data.STATUSES)
    # totals add up, shipments exist exactly for orders that left the warehouse, refunds never exceed totals
    assert not rows(
        seeded,
        "SELECT o.id FROM orders o JOIN order_items i ON i.order_id = o.id GROUP BY o.id"
        " HAVING sum(i.qty * i.price_cents) != o.total_cents",
    )
    assert not rows(
        seeded,
        "SELECT o.id FROM orders o LEFT JOIN shipments s ON s.order_id = o.id"
        " WHERE (s.order_id IS NULL) != (o.status IN ('placed', 'paid', 'cancelled'))",
    )
    assert not rows(
        seeded,
        "SELECT o.id FROM orders o JOIN refunds r ON r.order_id = o.id GROUP BY o.id"
        " HAVING sum(r.amount_cents) > o.total_cents",
    )
    latest = data.REFERENCE_TIME.isoformat()
    for table, column in [("orders", "placed_at"), ("shipment_events", "at"), ("refunds", "created_at")]:
        assert rows(seeded, f"SELECT max({column}) FROM {table}")[0][0] <= latest


def test_featured_orders(seeded: Path) -> None:
    status = dict(rows(seeded, "SELECT id, status FROM orders WHERE id <= 'A-1008'"))
    assert status == {
        "A-1001": "shipped",
        "A-1002": "delivered",
        "A-1003": "delivered",
        "A-1004": "delivered",
        "A-1005": "cancelled",
        "A-1006": "paid",
        "A-1007": "returned",
        "A-1008": "delivered",
    }
    assert set(data.FEATURED) == set(status)
    delivered = dict(rows(seeded, "SELECT order_id, substr(delivered_at, 1, 10) FROM shipments"))
    assert delivered["A-1002"] == "2026-10-22"  # 10 days before the reference date
    assert delivered["A-1003"] == "2026-09-17"  # 45 days before
    assert rows(seeded, "SELECT total_cents FROM orders WHERE id = 'A-1004'") == [(24900,)]


def test_create_database_replaces_an_existing_one(tmp_path: Path) -> None:
    path = data.create_database(tmp_path / "nested" / "support.db")
    original = dump(path)
    conn = data.connect(path)
    with conn:
        conn.execute("DELETE FROM refunds")
    conn.close()
    assert dump(data.create_database(path)) == original
    assert [p.name for p in path.parent.iterdir()] == ["support.db"]


def test_cli_writes_the_database(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    data.main([str(tmp_path / "cli.db")])
    out = capsys.readouterr().out
    assert "50 customers, 200 orders" in out
    assert "A-1002" in out


def test_tools_create_the_database_on_first_use(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)
    monkeypatch.delenv(data.DB_ENV, raising=False)
    assert tools.lookup_order("A-1001")["status"] == "shipped"
    assert (tmp_path / ".keel" / "support.db").is_file()


def test_tools_read_support_db_at_call_time(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    for name in ("one.db", "two.db"):
        monkeypatch.setenv(data.DB_ENV, str(tmp_path / name))
        tools.lookup_order("A-1001")
        assert (tmp_path / name).is_file()


# Lookups


def test_find_customer_by_email_and_by_name(db: Path) -> None:
    ana = tools.find_customer("Ana.Silva@example.com")
    assert ana["id"] == "C-1001" and ana["name"] == "Ana Silva" and ana["tier"] == "gold"
    by_name = tools.find_customer("ana silva")
    assert by_name == {"matches": [{"id": "C-1001", "name": "Ana Silva", "email": "a***@example.com"}]}
    with pytest.raises(ToolError, match="no customer has the email"):
        tools.find_customer("nobody@example.com")
    with pytest.raises(ToolError, match="no customer is named"):
        tools.find_customer("Zebedee")
    with pytest.raises(ToolError, match="'A-1001' is an order id, not a customer; use lookup_order"):
        tools.find_customer("A-1001")


def test_example_ids_in_tool_descriptions_match_no_record(db: Path) -> None:
    with pytest.raises(ToolError, match="does not exist"):
        tools.lookup_order("A-1234")
    with pytest.raises(ToolError, match="does not exist"):
        tools.list_orders("C-1234")


def test_lookup_order(db: Path) -> None:
    order = tools.lookup_order("A-1002")
    assert order["status"] == "delivered" and order["customer_id"] == "C-1001"
    assert order["total"] == "34.90" and order["delivered"] == "2026-10-22"
    assert order["items"] == ["1 x Ceramic mug set at 34.90"]
    assert order["refund"] == "possible up to 34.90 until 2026-11-21"
    assert "not possible" in tools.lookup_order("A-1003")["refund"]
    assert tools.lookup_order(" a1002 ")["order_id"] == "A-1002"
    assert len(json.dumps(order)) < 400  # the embedded model reads every character


@pytest.mark.parametrize(
    ("order_id", "message"),
    [
        ("A-99", "'A-99' is not an order id; order ids look like A-1234"),
        ("A-9999", "order 'A-9999' does not exist; order ids look like A-1234"),
        ("", "is not an order id"),
    ],
)
def test_bad_order_ids_are_named(db: Path, order_id: str, message: str) -> None:
    with pytest.raises(ToolError, match=message):
        tools.lookup_order(order_id)


def test_list_orders(db: Path) -> None:
    ana = tools.list_orders("C-1001")
    ids = [o["id"] for o in ana["orders"]]
    assert {"A-1001", "A-1002", "A-1007"} <= set(ids)
    assert {"id": "A-1001", "status": "shipped", "total": "89.00", "placed": "2026-10-27"} in ana["orders"]
    assert [o["placed"] for o in ana["orders"]] == sorted((o["placed"] for o in ana["orders"]), reverse=True)
    assert [o["id"] for o in tools.list_orders("C-1001", status="returned")["orders"]] == ["A-1007"]
    busiest = rows(db, "SELECT customer_id FROM orders GROUP BY customer_id ORDER BY count(*) DESC LIMIT 1")[0][0]
    listed = tools.list_orders(busiest)
    assert len(listed["orders"]) == shop.MAX_LISTED and "most recent" in listed["note"]
    with pytest.raises(ToolError, match="customer 'C-9999' does not exist"):
        tools.list_orders("C-9999")
    with pytest.raises(ToolError, match="customer ids look like C-1001"):
        tools.list_orders("ana.silva@example.com")


def test_track_shipment(db: Path) -> None:
    parcel = tools.track_shipment("A-1001")
    assert parcel["carrier"] == "DHL" and parcel["tracking_number"] == "JJD0039007100142"
    assert parcel["estimated_delivery"] == "2026-11-03"
    assert parcel["latest_events"][0] == "2026-10-30 11:00 in transit, DHL network"
    assert len(parcel["latest_events"]) == 3
    assert tools.track_shipment("A-1002")["delivered"] == "2026-10-22"
    assert "not shipped yet" in tools.track_shipment("A-1006")["shipment"]
    assert "cancelled" in tools.track_shipment("A-1005")["shipment"]


# The refund policy


def refunds(db: Path, order_id: str) -> list[tuple[Any, ...]]:
    return rows(db, "SELECT amount_cents, reason, idempotency_key FROM refunds WHERE order_id = ?", order_id)


def test_refund_within_the_policy(db: Path) -> None:
    result = tools.refund_order("A-1002", Decimal("34.90"), "arrived broken", ctx("key-1"))
    assert result["order_id"] == "A-1002" and result["amount"] == "34.90" and result["refunded_in_total"] == "34.90"
    assert refunds(db, "A-1002") == [(3490, "arrived broken", "key-1")]
    assert "not possible" in tools.lookup_order("A-1002")["refund"]


def test_refund_of_a_returned_order(db: Path) -> None:
    tools.refund_order("A-1007", Decimal("79"), "returned", ctx())
    assert refunds(db, "A-1007") == [(7900, "returned", "k")]


def test_the_same_idempotency_key_refunds_once(db: Path) -> None:
    first = tools.refund_order("A-1002", Decimal("10.00"), "scratched", ctx("same"))
    second = tools.refund_order("A-1002", Decimal("10.00"), "scratched", ctx("same"))
    assert first == second
    assert refunds(db, "A-1002") == [(1000, "scratched", "same")]
    tools.refund_order("A-1002", Decimal("10.00"), "scratched", ctx("another call"))
    assert len(refunds(db, "A-1002")) == 2


def test_an_idempotency_key_cannot_be_reused_for_another_order(db: Path) -> None:
    tools.refund_order("A-1002", Decimal("5"), "scratched", ctx("same"))
    with pytest.raises(ToolError, match="already used for a refund of A-1002"):
        tools.refund_order("A-1008", Decimal("5"), "scratched", ctx("same"))


@pytest.mark.parametrize(
    ("order_id", "amount", "rule"),
    [
        ("A-1003", "10", "refunds are only possible within 30 days of delivery"),
        ("A-1005", "10", "order A-1005 is cancelled; refunds are only for delivered or returned orders"),
        ("A-1006", "10", "order A-1006 is paid; refunds are only for delivered or returned orders"),
        ("A-1001", "10", "order A-1001 is shipped; refunds are only for delivered or returned orders"),
        ("A-1002", "34.91", "34.91 is more than the 34.90 left to refund"),
        ("A-1008", "40.01", r"40.01 is more than the 40.00 left to refund on order A-1008 \(paid 60.00, already"),
        ("A-1002", "0", "amount must be a positive number"),
        ("A-1002", "-5", "amount must be a positive number"),
        ("A-1002", "1.005", "more than 2 decimals"),
        ("A-9999", "1", "order 'A-9999' does not exist"),
    ],
)
def test_refunds_outside_the_policy_are_refused(db: Path, order_id: str, amount: str, rule: str) -> None:
    with pytest.raises(ToolError, match=rule):
        tools.refund_order(order_id, Decimal(amount), "customer asked", ctx())
    assert not rows(db, "SELECT * FROM refunds WHERE idempotency_key = 'k'")


def test_remaining_amount_counts_earlier_refunds(db: Path) -> None:
    tools.refund_order("A-1008", Decimal("40.00"), "faulty", ctx("a"))
    with pytest.raises(ToolError, match="already been refunded in full"):
        tools.refund_order("A-1008", Decimal("0.01"), "faulty", ctx("b"))


@pytest.mark.parametrize(("today", "allowed"), [("2026-11-21", True), ("2026-11-22", False)])
def test_the_window_is_30_days_from_delivery(
    db: Path, monkeypatch: pytest.MonkeyPatch, today: str, allowed: bool
) -> None:
    monkeypatch.setenv(data.TODAY_ENV, today)  # A-1002 was delivered on 2026-10-22
    if allowed:
        tools.refund_order("A-1002", Decimal("34.90"), "broken", ctx())
    else:
        with pytest.raises(ToolError, match="31 days ago"):
            tools.refund_order("A-1002", Decimal("34.90"), "broken", ctx())


def test_refund_status_is_the_single_statement_of_the_policy(seeded: Path) -> None:
    conn = data.connect(seeded)
    try:
        order = shop.get_order(conn, "A-1008")
        assert shop.refund_status(order, data.REFERENCE_DATE) == (4000, "up to 40.00 until 2026-11-24")
    finally:
        conn.close()


# Address changes


ADDRESS = {"street": "Hauptstrasse 5", "city": "Munich", "postal_code": "80331", "country": "DE"}


def test_address_changes_before_shipping(db: Path) -> None:
    result = tools.update_shipping_address("A-1006", tools.Address(**ADDRESS), ctx("addr"))
    assert result == {"order_id": "A-1006", "ship_to": "Hauptstrasse 5, 80331 Munich, DE"}
    assert rows(db, "SELECT street, city FROM orders WHERE id = 'A-1006'") == [("Hauptstrasse 5", "Munich")]
    audit = rows(db, "SELECT order_id, old_address, new_address FROM address_changes")
    assert audit == [("A-1006", "Rue de Rivoli 12, 75001 Paris, FR", "Hauptstrasse 5, 80331 Munich, DE")]
    again = tools.update_shipping_address("A-1006", tools.Address(**ADDRESS), ctx("addr"))
    assert again == result
    assert len(rows(db, "SELECT * FROM address_changes")) == 1


@pytest.mark.parametrize(
    ("order_id", "message"),
    [
        ("A-1001", "order A-1001 has already shipped with DHL .tracking JJD0039007100142."),
        ("A-1002", "order A-1002 was already delivered; the address can only change before shipping"),
        ("A-1007", "order A-1007 was already returned"),
        ("A-1005", "order A-1005 was cancelled; there is nothing to ship"),
    ],
)
def test_address_cannot_change_after_shipping(db: Path, order_id: str, message: str) -> None:
    before = dump(db)
    with pytest.raises(ToolError, match=message):
        tools.update_shipping_address(order_id, tools.Address(**ADDRESS), ctx())
    assert dump(db) == before


def test_address_arguments_are_validated_by_the_tool_schema() -> None:
    args = tools.update_shipping_address.validate({"order_id": "A-1006", "address": ADDRESS})
    assert args["address"] == tools.Address(**ADDRESS)
    with pytest.raises(ValueError, match="address.city"):
        tools.update_shipping_address.validate({"order_id": "A-1006", "address": {**ADDRESS, "city": ""}})


# Knowledge base and escalation


@pytest.mark.parametrize(
    ("query", "title"),
    [
        ("how do I get my money back refund", "Refund policy"),
        ("How long does international shipping take?", "International shipping"),
        ("my parcel arrived broken", "Damaged or wrong items"),
        ("I forgot my password", "Account and password"),
        ("can I change the delivery address", "Changing the shipping address"),
        ("I want to speak to a human", "Contacting support"),
    ],
)
def test_search_kb_finds_the_article(query: str, title: str) -> None:
    results = tools.search_kb(query)["results"]
    assert results[0]["title"] == title
    assert 1 <= len(results) <= 3
    assert len(results[0]["snippet"]) <= 2 * (kb.SNIPPET_CHARS + 4) + 1  # the lead paragraph, and the best
    assert all(len(r["snippet"]) <= kb.SNIPPET_CHARS + 4 for r in results[1:])


def test_search_kb_snippet_answers_the_question() -> None:
    first = tools.search_kb("How long does international shipping take?")["results"][0]
    assert "5-10 business days" in first["snippet"]
    # the answer is in the article's first paragraph, which shares no word with the query but comes first
    assert tools.search_kb("payment methods")["results"][0]["snippet"].startswith("We accept Visa")


def test_search_kb_without_a_match() -> None:
    assert tools.search_kb("zzzz qqqq")["results"] == []
    assert len(kb.load_articles()) == 12


def test_escalate_to_human(db: Path) -> None:
    first = tools.escalate_to_human("customer asks for a person", "A-1003 refund refused, customer upset", ctx("e"))
    assert first["ticket_id"] == "T-1001"
    assert tools.escalate_to_human("customer asks for a person", "same call again", ctx("e")) == first
    assert tools.escalate_to_human("another", "another case", ctx("f"))["ticket_id"] == "T-1002"
    assert rows(db, "SELECT reason, run_id FROM escalations WHERE id = 1") == [("customer asks for a person", "r")]


# The tools as the model sees them, and the agent


def test_tool_specs_are_compact_and_hide_the_context() -> None:
    names = [t.name for t in tools.TOOLS]
    assert len(names) == len(set(names)) == 9
    for t in tools.TOOLS:
        assert "ctx" not in t.parameters["properties"]
        assert t.description and len(t.description) < 120
    assert sum(len(json.dumps(t.spec())) for t in tools.TOOLS) < 4000
    side_effects = {t.name for t in tools.TOOLS if t.side_effects}
    assert side_effects == {"update_shipping_address", "refund_order", "escalate_to_human"}
    assert all(t.idempotent for t in tools.TOOLS if t.side_effects)


def load_agent_module() -> ModuleType:
    """Load agent.py by file path, as `keel run examples/support/agent.py:agent` does."""
    spec = importlib.util.spec_from_file_location("_support_agent_by_path", AGENT_FILE)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_agent_definition() -> None:
    module = load_agent_module()
    agent = module.agent
    assert agent.name == "support" and agent.max_steps == 10
    assert [t.name for t in agent.tools] == [t.name for t in tools.TOOLS]
    assert agent.instructions == (ROOT / "examples/support/instructions.md").read_text().strip()
    # about 280 tokens, read once and then reused from llama.cpp's prompt cache; the routing examples
    # are worth their tokens (bench/local_tool_choice.py)
    assert len(agent.instructions) < 1300
    for rule in ("30 days", "above 100", "escalate_to_human", "Never reveal"):
        assert rule in agent.instructions
    assert 3 <= len(module.DEMO_TASKS) <= 4


def test_a_scripted_run_through_the_loop(db: Path) -> None:
    model = ScriptedModel(
        [
            ToolCall("find_customer", {"query": "ana.silva@example.com"}),
            ToolCall("refund_order", {"order_id": "A-1002", "amount": 34.9, "reason": "arrived broken"}),
            "I refunded 34.90 for order A-1002.",
        ]
    )
    agent = load_agent_module().agent.with_model(model)
    result = agent.run_sync(
        "I'm ana.silva@example.com. My order A-1002 arrived broken, please refund the 34.90 I paid.",
        runtime=Runtime.in_memory(),
    )
    assert result.status == "done", result.error
    assert result.output == "I refunded 34.90 for order A-1002."
    assert [amount for amount, *_ in refunds(db, "A-1002")] == [3490]
    assert refunds(db, "A-1002")[0][2]  # the loop's idempotency key reached the tool
