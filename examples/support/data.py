"""The shop's SQLite database: customers, orders, shipments, refunds, generated from a fixed seed.

Every row comes from `random.Random(SEED)` and the fixed `REFERENCE_TIME`, so two generations give
identical data. Orders A-1001 to A-1008 are hand-written cases for demos and evals (see `FEATURED`);
the rest are random but plausible.

Run `python -m examples.support.data [PATH]` (or `python examples/support/data.py [PATH]`) to
write a fresh database and print what it holds.
"""

from __future__ import annotations

import argparse
import os
import random
import sqlite3
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from contextvars import ContextVar
from datetime import date, datetime, timedelta
from pathlib import Path
from typing import Any

__all__ = [
    "DB_ENV",
    "DEFAULT_DB",
    "FEATURED",
    "REFERENCE_DATE",
    "REFERENCE_TIME",
    "SEED",
    "STATUSES",
    "TODAY_ENV",
    "connect",
    "create_database",
    "database_path",
    "generate",
    "open_database",
    "today",
    "use_database",
]

SEED = 7
REFERENCE_DATE = date(2026, 11, 1)
"""The shop's "today": data is generated as of this date, and the refund window counts from it."""
REFERENCE_TIME = datetime(2026, 11, 1, 9, 0)
DB_ENV = "SUPPORT_DB"
TODAY_ENV = "SUPPORT_TODAY"
DEFAULT_DB = Path(".keel/support.db")
STATUSES = ("placed", "paid", "shipped", "delivered", "cancelled", "returned")
WAREHOUSE = "Leipzig, DE"

FEATURED = {
    "A-1001": "shipped, in transit with DHL, tracking events (demo: where is my order)",
    "A-1002": "delivered 10 days ago, 34.90: a refund is allowed",
    "A-1003": "delivered 45 days ago: past the 30-day refund window",
    "A-1004": "delivered 5 days ago, 249.00: a full refund is above 100 and needs approval",
    "A-1005": "cancelled before shipping: no refund, nothing to track",
    "A-1006": "paid, not shipped yet: the shipping address can still change",
    "A-1007": "returned, return received, not refunded yet: 79.00 refundable",
    "A-1008": "delivered, 60.00 with 20.00 already refunded: at most 40.00 more",
}

SCHEMA = Path(__file__).with_name("schema.sql")

FIRST_NAMES = (
    "Liam", "Emma", "Noah", "Mia", "Lukas", "Sofia", "Jonas", "Lea", "Felix", "Clara", "Hugo", "Ines",
    "Mateo", "Nora", "Oskar", "Zoe", "Elias", "Marta", "Arthur", "Julia", "Finn", "Chiara", "Leon", "Alice",
)  # fmt: skip
LAST_NAMES = (
    "Schmidt", "Dubois", "Jansen", "Rossi", "Garcia", "Novak", "Keller", "Moreau", "Visser", "Bauer",
    "Lindqvist", "Murphy", "Weber", "Costa", "Nielsen", "Fischer", "Brown", "Horvat", "Meyer", "Petit",
)  # fmt: skip
STREETS = ("Lindenallee", "Hafenstrasse", "Market Street", "Parkweg", "Station Road", "Mill Lane")
# (city, postal code, country, zone): zone decides carriers and transit days.
CITIES = (
    ("Berlin", "10115", "DE", "domestic"),
    ("Hamburg", "20095", "DE", "domestic"),
    ("Munich", "80331", "DE", "domestic"),
    ("Cologne", "50667", "DE", "domestic"),
    ("Paris", "75001", "FR", "eu"),
    ("Amsterdam", "1012 AB", "NL", "eu"),
    ("Vienna", "1010", "AT", "eu"),
    ("Madrid", "28001", "ES", "eu"),
    ("Copenhagen", "1050", "DK", "eu"),
    ("London", "EC1A 1BB", "GB", "world"),
    ("Zurich", "8001", "CH", "world"),
    ("New York", "10001", "US", "world"),
)
PHONE_PREFIX = {
    "DE": "+49",
    "FR": "+33",
    "NL": "+31",
    "AT": "+43",
    "ES": "+34",
    "DK": "+45",
    "GB": "+44",
    "CH": "+41",
    "US": "+1",
}
CARRIERS = {"domestic": ("DHL", "DPD", "GLS"), "eu": ("DHL", "GLS", "UPS"), "world": ("UPS", "FedEx")}
TRANSIT_DAYS = {"domestic": (1, 3), "eu": (2, 5), "world": (5, 10)}
TRACKING_PREFIX = {"DHL": "JJD00", "DPD": "0150", "GLS": "GLS", "UPS": "1Z", "FedEx": "7712"}
PRODUCTS = (
    ("Ceramic mug set", 3490), ("Trail running shoes", 8900), ("Wool scarf", 4500),
    ("Espresso machine", 24900), ("Yoga mat", 2990), ("Desk lamp", 3900), ("LED bulb pack", 990),
    ("Denim jacket", 7900), ("Bluetooth speaker", 6000), ("Water bottle", 1250), ("Notebook A5", 650),
    ("Linen shirt", 4900), ("Backpack 20L", 5900), ("Cast iron pan", 4200), ("Tea sampler", 1800),
    ("Wireless mouse", 2490), ("Scented candle", 1490), ("Hiking socks", 1290), ("Throw blanket", 5500),
    ("Phone case", 1990), ("Chef's knife", 7400), ("Plant pot", 1590), ("Sunglasses", 6900),
)  # fmt: skip
PRICES = dict(PRODUCTS)
TIER_WEIGHT = {"standard": 1, "silver": 2, "gold": 4}  # loyal customers order more often

Row = tuple[Any, ...]


_DATABASE: ContextVar[Path | None] = ContextVar("support_database", default=None)


def database_path() -> Path:
    """The database the tools use: the one `use_database` set here, else `$SUPPORT_DB`, else `.keel/support.db`."""
    return _DATABASE.get() or Path(os.environ.get(DB_ENV) or DEFAULT_DB)


@contextmanager
def use_database(path: str | Path) -> Iterator[Path]:
    """Point the tools at `path` in this context only: this task and the tool threads it starts.

    Concurrent eval trials each get their own database this way, which one environment variable cannot do.
    """
    token = _DATABASE.set(Path(path))
    try:
        yield Path(path)
    finally:
        _DATABASE.reset(token)


def today() -> date:
    """The shop's current date: `$SUPPORT_TODAY` (YYYY-MM-DD) if set, else `REFERENCE_DATE`.

    The data is a snapshot as of `REFERENCE_DATE`; a fixed clock keeps the refund window stable.
    """
    value = os.environ.get(TODAY_ENV)
    if not value:
        return REFERENCE_DATE
    try:
        return date.fromisoformat(value)
    except ValueError:
        raise ValueError(f"{TODAY_ENV}={value!r} is not a date; use YYYY-MM-DD or unset it") from None


def connect(path: str | Path) -> sqlite3.Connection:
    """Open the database with rows addressable by column name and foreign keys enforced."""
    conn = sqlite3.connect(path, timeout=10)
    conn.row_factory = sqlite3.Row
    conn.execute("PRAGMA foreign_keys = ON")
    return conn


@contextmanager
def open_database(path: str | Path | None = None) -> Iterator[sqlite3.Connection]:
    """A connection to the tools' database, created from the seed if missing; commits on success."""
    target = Path(path) if path is not None else database_path()
    if not target.exists():
        create_database(target)
    conn = connect(target)
    try:
        with conn:
            yield conn
    finally:
        conn.close()


def create_database(path: str | Path) -> Path:
    """Write a fresh database at `path` from the seed, replacing any existing one; return the path."""
    target = Path(path)
    target.parent.mkdir(parents=True, exist_ok=True)
    tmp = target.with_name(f"{target.name}.{os.getpid()}-{threading.get_ident()}.tmp")
    tmp.unlink(missing_ok=True)
    conn = connect(tmp)
    try:
        with conn:
            conn.executescript(SCHEMA.read_text())
            for table, rows in generate().items():
                if rows:
                    marks = ", ".join("?" * len(rows[0]))
                    conn.executemany(f"INSERT INTO {table} VALUES ({marks})", rows)
    finally:
        conn.close()
    # A leftover journal would be replayed into the new file; drop it with the old database.
    for suffix in ("-journal", "-wal", "-shm"):
        target.with_name(target.name + suffix).unlink(missing_ok=True)
    os.replace(tmp, target)
    return target


def generate() -> dict[str, list[Row]]:
    """Every table's rows, in insertion order, from `SEED`."""
    rng = random.Random(SEED)
    rows: dict[str, list[Row]] = {
        t: [] for t in ("customers", "orders", "order_items", "shipments", "shipment_events", "refunds")
    }
    customers = _customers(rng, 50)
    rows["customers"] = [c[:5] for c in customers]
    _featured_orders(rows, customers)
    _random_orders(rng, rows, customers, first_number=1009, count=192)
    return rows


def _customers(rng: random.Random, count: int) -> list[Row]:
    """(id, name, email, phone, tier, street, city, postal_code, country, zone) per customer."""
    fixed = [
        ("Ana Silva", "gold", "Kastanienallee 21", CITIES[0]),
        ("Ben Carter", "standard", "Prinsengracht 263", CITIES[5]),
        ("Chloe Martin", "silver", "Rue de Rivoli 12", CITIES[4]),
    ]
    people: list[Row] = []
    emails: set[str] = set()
    for i in range(count):
        if i < len(fixed):
            name, tier, street, city = fixed[i]
        else:
            name = f"{rng.choice(FIRST_NAMES)} {rng.choice(LAST_NAMES)}"
            tier = rng.choices(("standard", "silver", "gold"), weights=(6, 3, 1))[0]
            street = f"{rng.choice(STREETS)} {rng.randint(1, 140)}"
            city = rng.choice(CITIES)
        base = name.lower().replace(" ", ".")
        email, n = f"{base}@example.com", 2
        while email in emails:
            email, n = f"{base}{n}@example.com", n + 1
        emails.add(email)
        phone = f"{PHONE_PREFIX[city[2]]} {rng.randint(100, 999)} {rng.randint(1000000, 9999999)}"
        people.append((f"C-{1001 + i}", name, email, phone, tier, street, *city))
    return people


def _add_order(
    rows: dict[str, list[Row]],
    order_id: str,
    customer: Row,
    placed: datetime,
    status: str,
    items: list[tuple[str, int]],
) -> int:
    """Insert an order and its items; return its total in cents."""
    lines = [(order_id, n, product, qty, PRICES[product]) for n, (product, qty) in enumerate(items, 1)]
    total = sum(qty * price for *_, qty, price in lines)
    street, city, postal_code, country = customer[5:9]
    rows["orders"].append(
        (order_id, customer[0], status, placed.isoformat(), total, street, city, postal_code, country)
    )
    rows["order_items"].extend(lines)
    return total


def _add_shipment(
    rows: dict[str, list[Row]],
    order_id: str,
    carrier: str,
    tracking: str,
    city: str,
    shipped: datetime,
    arrival: datetime,
    returned: datetime | None = None,
) -> None:
    """Insert a shipment and the events that happened by `REFERENCE_TIME`."""
    delivered = arrival if arrival <= REFERENCE_TIME else None
    status = "returned" if returned else "delivered" if delivered else "in_transit"
    rows["shipments"].append(
        (
            order_id,
            carrier,
            tracking,
            status,
            shipped.isoformat(),
            arrival.date().isoformat(),
            delivered.isoformat() if delivered else None,
        )
    )
    events = [
        (shipped, "label created", WAREHOUSE),
        (shipped + timedelta(hours=6), "picked up by carrier", WAREHOUSE),
        (shipped + timedelta(hours=10), "arrived at sorting hub", f"{carrier} hub Leipzig"),
        (shipped + timedelta(hours=14), "departed sorting hub", f"{carrier} hub Leipzig"),
        (arrival - timedelta(hours=4), "out for delivery", city),
        (arrival, "delivered", city),
    ]
    if (arrival - shipped).days >= 3:
        events.append((shipped + timedelta(days=2, hours=3), "in transit", f"{carrier} network"))
    if returned:
        events.append((returned, "return received at warehouse", WAREHOUSE))
    happened = sorted(e for e in events if e[0] <= REFERENCE_TIME)
    for seq, (at, what, where) in enumerate(happened, 1):
        rows["shipment_events"].append((order_id, seq, at.isoformat(), what, where))


def _featured_orders(rows: dict[str, list[Row]], customers: list[Row]) -> None:
    """Orders A-1001 to A-1008: the cases described in `FEATURED`, written out by hand."""
    ana, ben, chloe = customers[:3]
    day = REFERENCE_TIME.replace(hour=10, minute=0)

    def ago(days: int, hour: int = 10) -> datetime:
        return (day - timedelta(days=days)).replace(hour=hour)

    _add_order(rows, "A-1001", ana, ago(5, 9), "shipped", [("Trail running shoes", 1)])
    _add_shipment(rows, "A-1001", "DHL", "JJD0039007100142", "Berlin", ago(4, 8), ago(-2, 14))
    _add_order(rows, "A-1002", ana, ago(16), "delivered", [("Ceramic mug set", 1)])
    _add_shipment(rows, "A-1002", "DHL", "JJD0039007100275", "Berlin", ago(15, 8), ago(10, 13))
    _add_order(rows, "A-1003", ben, ago(51), "delivered", [("Wool scarf", 1)])
    _add_shipment(rows, "A-1003", "GLS", "GLS6120445003", "Amsterdam", ago(50, 9), ago(45, 11))
    _add_order(rows, "A-1004", ben, ago(9), "delivered", [("Espresso machine", 1)])
    _add_shipment(rows, "A-1004", "UPS", "1Z8A41E20457710048", "Amsterdam", ago(8, 9), ago(5, 15))
    _add_order(rows, "A-1005", chloe, ago(12), "cancelled", [("Yoga mat", 1), ("Water bottle", 2)])
    _add_order(rows, "A-1006", chloe, ago(1, 17), "paid", [("Desk lamp", 1), ("LED bulb pack", 1)])
    _add_order(rows, "A-1007", ana, ago(24), "returned", [("Denim jacket", 1)])
    _add_shipment(rows, "A-1007", "DPD", "01505531000719", "Berlin", ago(23, 8), ago(20, 12), ago(3, 11))
    _add_order(rows, "A-1008", ben, ago(12), "delivered", [("Bluetooth speaker", 1)])
    _add_shipment(rows, "A-1008", "GLS", "GLS6120445871", "Amsterdam", ago(11, 9), ago(7, 16))
    rows["refunds"].append(
        (None, "A-1008", 2000, "price adjustment: item went on sale", "seed-A-1008", ago(6).isoformat())
    )


def _random_orders(
    rng: random.Random, rows: dict[str, list[Row]], customers: list[Row], first_number: int, count: int
) -> None:
    """`count` orders over the 90 days before `REFERENCE_TIME`, numbered in the order they were placed."""
    buyer_weights = [TIER_WEIGHT[c[4]] for c in customers]
    # More orders in recent days, so some are still unpaid, unshipped or on their way.
    minutes = sorted(int(rng.triangular(60, 90 * 24 * 60, 60)) for _ in range(count))
    for n, offset in enumerate(reversed(minutes)):
        order_id = f"A-{first_number + n}"
        placed = REFERENCE_TIME - timedelta(minutes=offset)
        customer = rng.choices(customers, weights=buyer_weights)[0]
        city, zone = customer[6], customer[9]
        n_lines = rng.choices((1, 2, 3, 4), weights=(5, 3, 2, 1))[0]
        items = [(rng.choice(PRODUCTS)[0], rng.choices((1, 2, 3), weights=(8, 3, 1))[0]) for _ in range(n_lines)]
        # Most pay at once; a bank transfer takes a few days. Orders ship the day after payment.
        paid = placed + timedelta(days=0 if rng.random() < 0.85 else rng.randint(2, 6))
        shipped = (paid + timedelta(days=1)).replace(hour=rng.randint(8, 11), minute=rng.randrange(60))
        arrival = (shipped + timedelta(days=rng.randint(*TRANSIT_DAYS[zone]))).replace(
            hour=rng.randint(9, 17), minute=rng.randrange(60)
        )
        returned = arrival + timedelta(days=rng.randint(3, 14), hours=2)
        roll = rng.random()
        if paid > REFERENCE_TIME:
            status = "placed"
        elif roll < 0.06:
            status = "cancelled"
        elif shipped > REFERENCE_TIME:
            status = "paid"
        elif arrival > REFERENCE_TIME:
            status = "shipped"
        elif roll < 0.16 and returned <= REFERENCE_TIME:
            status = "returned"
        else:
            status = "delivered"
        total = _add_order(rows, order_id, customer, placed, status, items)
        if status in ("placed", "paid", "cancelled"):
            continue
        carrier = rng.choice(CARRIERS[zone])
        tracking = f"{TRACKING_PREFIX[carrier]}{rng.randint(10**7, 10**8 - 1)}{first_number + n}"
        returned_at = returned if status == "returned" else None
        _add_shipment(rows, order_id, carrier, tracking, city, shipped, arrival, returned_at)
        refund_roll = rng.random()
        if status == "returned" and refund_roll < 0.8:
            amount, reason, at = total, "returned item", returned
        elif status == "delivered" and refund_roll < 0.05 and arrival + timedelta(days=2) <= REFERENCE_TIME:
            amount, reason, at = max(100, total // 1000 * 100), "goodwill credit", arrival + timedelta(days=2)
        else:
            continue
        rows["refunds"].append((None, order_id, amount, reason, f"seed-{order_id}", at.isoformat()))


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description="Write the support example's database from its seed.")
    parser.add_argument("path", nargs="?", default=str(DEFAULT_DB), help=f"default {DEFAULT_DB}")
    args = parser.parse_args(argv)
    path = create_database(args.path)
    conn = connect(path)
    try:
        tables = ("customers", "orders", "shipments", "shipment_events", "refunds")
        counts = ", ".join(f"{conn.execute(f'SELECT count(*) FROM {t}').fetchone()[0]} {t}" for t in tables)
        by_status = conn.execute("SELECT status, count(*) FROM orders GROUP BY status ORDER BY status")
        print(f"wrote {path}: {counts}")
        print("orders by status: " + ", ".join(f"{s} {n}" for s, n in by_status))
    finally:
        conn.close()
    print(f"as of {REFERENCE_DATE}; featured orders:")
    for order_id, what in FEATURED.items():
        print(f"  {order_id}  {what}")


if __name__ == "__main__":
    main()
