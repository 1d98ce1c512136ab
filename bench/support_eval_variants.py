"""Variants of the support agent for measuring what moves the embedded model's pass^k on the eval set.

Each variant changes one thing against `examples/support/agent.py`; run one with

    nice -n 19 .venv/bin/keel eval examples/support/evals.yaml --model local --trials 1 --db memory \\
        --fail-under 0 --agent bench/support_eval_variants.py:facts --json /tmp/facts.json

The embedded model decodes greedily, so its trials of one case agree (the full run with 3 trials
showed it case by case); one trial per case measures a variant. Results: docs/benchmarks.md.
"""

from __future__ import annotations

import re
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from examples.support.agent import agent as support  # noqa: E402

from keel import Agent, Decision, Policy, PolicyContext  # noqa: E402
from keel.messages import ToolMessage, UserMessage  # noqa: E402

FACTS = """

When you answer, repeat the facts from the tool results that the customer needs: carrier and expected \
delivery date, amounts in euros, ticket ids. For "where is my order" or "has it shipped" questions call \
track_shipment. If the customer gives no order id and asks about an order, ask for the order id (it looks \
like A-1234) instead of calling a tool. Never repeat card numbers or other customers' details."""


def _variant(instructions: str) -> Agent:
    return Agent(
        support.name,
        support.model,
        instructions=instructions,
        tools=support.tools,
        max_steps=support.max_steps,
        policies=support.policies,
    )


facts = _variant(support.instructions + FACTS)
"""The instructions plus a paragraph: repeat the facts, route tracking questions, ask for a missing id."""

EMAIL_FIRST = """

Rules for the first tool call: if the customer's message contains an email address, the first call is \
find_customer with that email, whatever else they ask. If it names an order and asks where it is or \
whether it shipped, the first call is track_shipment. After find_customer, call lookup_order for the order \
they name, then act (refund_order, update_shipping_address) only if the order is theirs."""

email_first = _variant(support.instructions + EMAIL_FIRST)
"""The instructions plus explicit first-call rules: an email means find_customer first; tracking questions
mean track_shipment."""


class FirstToolRouter(Policy):
    """Offer only the tool the request calls for, until it has run: the first-tool choice leaves the model.

    An email address in the task means `find_customer` first; otherwise an order id with "where" or
    "shipped" means `track_shipment` first. Once that tool has been called (even if it failed), every
    tool is offered again.
    """

    name = "first-tool-router"

    async def before_model(self, ctx: PolicyContext) -> Decision:
        """Narrow the offered tools while the routed tool has not run."""
        task = next((m.content for m in ctx.messages if isinstance(m, UserMessage)), "")
        ran = {m.name for m in ctx.messages if isinstance(m, ToolMessage)}  # an error counts: it was tried
        if EMAIL.search(task) and "find_customer" not in ran:
            return Decision.modify("an email was given: check the customer first", tools=["find_customer"])
        if ORDER.search(task) and TRACKING.search(task) and not EMAIL.search(task) and "track_shipment" not in ran:
            return Decision.modify("a tracking question: track the parcel first", tools=["track_shipment"])
        return Decision.allow()


EMAIL = re.compile(r"[\w.+-]+@[\w-]+\.[\w.]+")
ORDER = re.compile(r"\bA-?\d{4}\b", re.IGNORECASE)
TRACKING = re.compile(r"\bwhere\b|\bshipped\b", re.IGNORECASE)

routed = Agent(
    support.name,
    support.model,
    instructions=support.instructions,
    tools=support.tools,
    max_steps=support.max_steps,
    policies=[FirstToolRouter(), *support.policies],
)
"""The agent as it is, plus `FirstToolRouter` ahead of its policies."""
