-- The support example's shop database. Money is in integer cents (EUR); times are ISO 8601.
CREATE TABLE customers (
    id TEXT PRIMARY KEY,
    name TEXT NOT NULL,
    email TEXT NOT NULL UNIQUE,
    phone TEXT NOT NULL,
    tier TEXT NOT NULL CHECK (tier IN ('standard', 'silver', 'gold'))
);
CREATE TABLE orders (
    id TEXT PRIMARY KEY,
    customer_id TEXT NOT NULL REFERENCES customers(id),
    status TEXT NOT NULL
        CHECK (status IN ('placed', 'paid', 'shipped', 'delivered', 'cancelled', 'returned')),
    placed_at TEXT NOT NULL,
    total_cents INTEGER NOT NULL CHECK (total_cents >= 0),
    street TEXT NOT NULL,
    city TEXT NOT NULL,
    postal_code TEXT NOT NULL,
    country TEXT NOT NULL
);
CREATE INDEX orders_by_customer ON orders (customer_id, placed_at);
CREATE TABLE order_items (
    order_id TEXT NOT NULL REFERENCES orders(id),
    line INTEGER NOT NULL,
    product TEXT NOT NULL,
    qty INTEGER NOT NULL CHECK (qty > 0),
    price_cents INTEGER NOT NULL CHECK (price_cents >= 0),
    PRIMARY KEY (order_id, line)
);
CREATE TABLE shipments (
    order_id TEXT PRIMARY KEY REFERENCES orders(id),
    carrier TEXT NOT NULL,
    tracking_number TEXT NOT NULL UNIQUE,
    status TEXT NOT NULL CHECK (status IN ('in_transit', 'delivered', 'returned')),
    shipped_at TEXT NOT NULL,
    estimated_delivery TEXT NOT NULL,
    delivered_at TEXT
);
CREATE TABLE shipment_events (
    order_id TEXT NOT NULL REFERENCES shipments(order_id),
    seq INTEGER NOT NULL,
    at TEXT NOT NULL,
    status TEXT NOT NULL,
    location TEXT NOT NULL,
    PRIMARY KEY (order_id, seq)
);
CREATE TABLE refunds (
    id INTEGER PRIMARY KEY,
    order_id TEXT NOT NULL REFERENCES orders(id),
    amount_cents INTEGER NOT NULL CHECK (amount_cents > 0),
    reason TEXT NOT NULL,
    idempotency_key TEXT NOT NULL UNIQUE,
    created_at TEXT NOT NULL
);
CREATE TABLE address_changes (
    id INTEGER PRIMARY KEY,
    order_id TEXT NOT NULL REFERENCES orders(id),
    old_address TEXT NOT NULL,
    new_address TEXT NOT NULL,
    idempotency_key TEXT NOT NULL UNIQUE,
    changed_at TEXT NOT NULL
);
CREATE TABLE escalations (
    id INTEGER PRIMARY KEY,
    reason TEXT NOT NULL,
    summary TEXT NOT NULL,
    run_id TEXT,
    idempotency_key TEXT NOT NULL UNIQUE,
    created_at TEXT NOT NULL
);
