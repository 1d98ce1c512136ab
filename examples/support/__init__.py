"""The flagship example: a customer-support agent for an online shop.

Modules:
    data: the shop's SQLite database, generated from a fixed seed.
    shop: the business rules (lookups, refund policy, address changes), free of keel.
    kb: keyword search over the knowledge base in `kb/*.md`.
    tools: the keel tools the agent calls.
    agent: the agent itself and a few demo tasks.

Run it with `keel run examples/support/agent.py:agent "Where is order A-1001?"`.
"""
