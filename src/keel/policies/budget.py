"""Budgets: dollar caps (per run, per agent per day, per tenant per day), token, step and time limits.

Before each model request the budget reserves the most the request could cost (its prompt tokens
plus the model's output budget, at the price table's rates) and afterwards settles the real cost.
A request that could go over a cap is never made: the run stops with ``BudgetExceeded``, its state
intact, and resumes once the cap is raised. Per-day spend is held in the keel database, shared by
every process that uses it. Reading the clock, counting tokens and reserving are durable steps, so
a resumed run decides exactly as before.
"""

from __future__ import annotations

import asyncio
import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any

from .._clock import SYSTEM_CLOCK, Clock
from ..exceptions import BudgetExceeded, ConfigError
from ._base import ALLOW, Decision, Policy, PolicyContext

if TYPE_CHECKING:
    from .._seam import AgentSpec
    from ..messages import Message, ModelResponse, Usage
    from ..models._base import Model
    from ._ledger import Ledger

__all__ = ["Budget", "DEFAULT_PRICES", "PriceTable", "PromptCounter"]

DEFAULT_PRICES: dict[str, tuple[float, float]] = {
    "gpt-4o": (2.50, 10.00),
    "gpt-4o-mini": (0.15, 0.60),
    "gpt-4.1": (2.00, 8.00),
    "gpt-4.1-mini": (0.40, 1.60),
    "gpt-4.1-nano": (0.10, 0.40),
    "o3-mini": (1.10, 4.40),
    "o4-mini": (1.10, 4.40),
    "claude-3-haiku": (0.25, 1.25),
    "claude-3-5-haiku": (0.80, 4.00),
    "claude-3-5-sonnet": (3.00, 15.00),
    "claude-3-7-sonnet": (3.00, 15.00),
    "claude-sonnet-4": (3.00, 15.00),
    "claude-opus-4": (15.00, 75.00),
}
"""US dollars per million input and output tokens. Check your provider's current prices and override."""

FREE_MODELS = frozenset({"local", "local-large"})
REPORTED = 4096
"""Runs whose spend `Budget.spent` still reports (a record only: the caps read the run's own state)."""


class PromptCounter:
    """Upper bounds on one run's prompt tokens, counted incrementally: each message once.

    The sum of the counts of single messages, plus the tool specs counted alone, is at least the count
    of the whole prompt (each part carries the per-request overhead again). Call it inside a durable
    step: counting may ask the model's server.
    """

    def __init__(self) -> None:
        self._seen: list[Message] = []
        self._counts: list[int] = []
        self._tools = -1

    async def count(self, model: Model, messages: Sequence[Message], specs: list[dict[str, Any]]) -> int:
        """Prompt tokens of `messages` with `specs`, at most overcounted."""
        seen, counts, tools = self._seen, self._counts, self._tools
        known = len(seen)
        stale = known > len(messages) or (known > 0 and seen[-1] is not messages[known - 1])
        if stale or (known > 1 and seen[1] is not messages[1]):  # a policy may redact the task in place
            seen, counts, known = [], [], 0
        if tools < 0:
            tools = await model.count_tokens([], specs)
        for message in messages[known:]:
            seen.append(message)
            counts.append(await model.count_tokens([message], []))
        self._seen, self._counts, self._tools = seen, counts, tools
        return sum(counts) + tools


def model_candidates(model: Model) -> list[Model]:
    """The models a request may go to: a fallback chain's members, or the model itself."""
    members = getattr(model, "models", None)
    return list(members) if isinstance(members, Sequence) and members else [model]


class PriceTable:
    """Input and output prices per million tokens, by model name.

    A name matches its exact entry, else the longest entry it extends with a dash
    (``gpt-4o-mini-2024-07-18`` is priced as ``gpt-4o-mini``). The embedded local models and
    ``ScriptedModel`` cost nothing unless the table names them.

    Args:
        prices: ``{model: (input_usd_per_million, output_usd_per_million)}``, over the defaults.
        defaults: start from `DEFAULT_PRICES`; default True.

    Raises:
        ConfigError: a price is not a pair of non-negative numbers.
    """

    def __init__(self, prices: Mapping[str, tuple[float, float]] | None = None, *, defaults: bool = True) -> None:
        table = dict(DEFAULT_PRICES) if defaults else {}
        for name, pair in (prices or {}).items():
            if (
                not isinstance(name, str)
                or not isinstance(pair, tuple | list)
                or len(pair) != 2
                or not all(isinstance(p, int | float) and math.isfinite(p) and p >= 0 for p in pair)
            ):
                raise ConfigError(
                    f"price table: the price of {name!r} must be (input_usd_per_million, output_usd_per_million), "
                    f"two numbers 0 or more, got {pair!r}"
                )
            table[name] = (float(pair[0]), float(pair[1]))
        self.prices = table

    def lookup(self, name: str) -> tuple[float, float] | None:
        """The price of the model named `name`, or None when the table has none."""
        found = self.prices.get(name)
        if found is not None:
            return found
        best = max((k for k in self.prices if name.startswith(k + "-")), key=len, default=None)
        return None if best is None else self.prices[best]

    def price(self, model: Model) -> tuple[float, float]:
        """The highest input and output prices among the models a request may go to.

        Raises:
            ConfigError: a model has no price and is not free.
        """
        worst = (0.0, 0.0)
        for member in model_candidates(model):
            found = self.lookup(member.name)
            if found is None:
                if member.name in FREE_MODELS or type(member).__name__ == "ScriptedModel":
                    continue
                raise ConfigError(
                    f"Budget: model {member.name!r} is not in the price table; add its prices, e.g. "
                    f"Budget(prices={{{member.name!r}: (input_usd_per_million, output_usd_per_million)}})"
                )
            worst = (max(worst[0], found[0]), max(worst[1], found[1]))
        return worst

    def cost(self, response: ModelResponse, model: Model) -> float:
        """The cost of one answered request: the answering model's price, else the agent model's."""
        found = self.lookup(response.model) if response.model else None
        inp, out = found if found is not None else self.price(model)
        return _usd(response.usage, inp, out)


def _usd(usage: Usage, inp: float, out: float) -> float:
    return (usage.input_tokens * inp + usage.output_tokens * out) / 1_000_000


@dataclass(slots=True)
class _Spend:
    """One run's spend, rebuilt from the run's journal on replay."""

    spent: float = 0.0
    started: float | None = None
    hold: float | None = None
    window: str = ""
    scopes: list[str] = field(default_factory=list)
    specs: list[dict[str, Any]] | None = None
    prompts: PromptCounter = field(default_factory=PromptCounter)


def _cap(name: str, value: float | None, *, whole: bool = False) -> float | None:
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, int | float) or not math.isfinite(value) or value < 0:
        raise ConfigError(f"Budget: {name} must be a number 0 or more (or None for no cap), got {value!r}")
    if whole and not isinstance(value, int):
        raise ConfigError(f"Budget: {name} must be a whole number, got {value!r}")
    return float(value)


class Budget(Policy):
    """Caps on what a run may spend: dollars, tokens, steps and seconds.

    Args:
        max_usd: dollars one run may spend.
        agent_daily_usd: dollars all runs of this agent may spend per UTC day (shared through the database).
        tenant_daily_usd: dollars all runs of one tenant may spend per UTC day; the tenant is the run's
            ``metadata[tenant_key]`` (runs without one share the tenant ``-``).
        max_tokens: input plus output tokens one run may use.
        max_steps: model requests one run may make.
        max_seconds: wall-clock seconds from a run's first model request (time paused included).
        prices: model prices over `DEFAULT_PRICES`, or a `PriceTable`.
        database_url: where per-day spend is kept; default ``KEEL_DATABASE_URL``.
        tenant_key: the metadata key naming the tenant; default ``tenant``.
        clock: the clock (a fake one in tests); default the system clock.

    Raises:
        ConfigError: a negative or non-numeric cap, a malformed price, or (at agent creation) a model
            without a price.
    """

    def __init__(
        self,
        *,
        max_usd: float | None = None,
        agent_daily_usd: float | None = None,
        tenant_daily_usd: float | None = None,
        max_tokens: int | None = None,
        max_steps: int | None = None,
        max_seconds: float | None = None,
        prices: PriceTable | Mapping[str, tuple[float, float]] | None = None,
        database_url: str | None = None,
        tenant_key: str = "tenant",
        clock: Clock | None = None,
    ) -> None:
        self.max_usd = _cap("max_usd", max_usd)
        self.agent_daily_usd = _cap("agent_daily_usd", agent_daily_usd)
        self.tenant_daily_usd = _cap("tenant_daily_usd", tenant_daily_usd)
        self.max_tokens = _cap("max_tokens", max_tokens, whole=True)
        self.max_steps = _cap("max_steps", max_steps, whole=True)
        self.max_seconds = _cap("max_seconds", max_seconds)
        if prices is not None and not isinstance(prices, PriceTable | Mapping):
            raise ConfigError(f"Budget: prices must be a PriceTable or a mapping of model to prices, got {prices!r}")
        self.prices = prices if isinstance(prices, PriceTable) else PriceTable(prices)
        if database_url is not None and not isinstance(database_url, str):
            raise ConfigError(f"Budget: database_url must be a database URL string, got {database_url!r}")
        if database_url == "memory" and (agent_daily_usd is not None or tenant_daily_usd is not None):
            raise ConfigError(
                "Budget: per-day caps are shared through a database; give database_url a SQLite or PostgreSQL URL"
            )
        self.database_url = database_url
        self.tenant_key = tenant_key
        self.clock = clock or SYSTEM_CLOCK
        self._usd = any(c is not None for c in (self.max_usd, self.agent_daily_usd, self.tenant_daily_usd))
        self._daily = self.agent_daily_usd is not None or self.tenant_daily_usd is not None
        self._reserve = self._usd or self.max_tokens is not None or self.max_seconds is not None
        self._ledger: Ledger | None = None
        self._spent: dict[str, float] = {}  # a record for `spent`, of the latest REPORTED runs

    def check_agent(self, agent: AgentSpec[object, object]) -> None:
        """Every model the agent may call must have a price when a dollar cap is set.

        Raises:
            ConfigError: a model has no price; the message shows how to add it.
        """
        if self._usd:
            self.prices.price(agent.model)

    def spent(self, run_id: str) -> float:
        """Dollars the run has spent so far, as this policy has seen (0 for an unknown run).

        A record of the latest 4096 runs to spend; the caps themselves read the run's own state.
        """
        return self._spent.get(run_id, 0.0)

    def ledger(self) -> Ledger:
        """The shared counters holding per-day spend."""
        if self._ledger is None:
            from ._ledger import Ledger

            url = self.database_url
            if url is None:
                from ..config import settings

                url = settings().database_url
            if url == "memory":
                raise ConfigError("Budget: per-day caps are shared through a database; set database_url")
            self._ledger = Ledger.for_url(url)
        return self._ledger

    def _spend(self, ctx: PolicyContext) -> _Spend:
        spend: _Spend | None = ctx.state.get("spend")
        if spend is None or ctx.step <= 1:
            spend = ctx.state["spend"] = _Spend()
        return spend

    async def before_model(self, ctx: PolicyContext) -> Decision:
        """Stop before a request that could go over a cap; else reserve what it could cost."""
        spend = self._spend(ctx)
        if self.max_steps is not None and ctx.step > self.max_steps:
            return Decision.stop(
                f"the run made {ctx.step - 1} model requests, its max_steps={self.max_steps:g}; raise max_steps "
                "and resume the run",
                kind="BudgetExceeded",
            )
        if not self._reserve or ctx.model is None:
            return ALLOW
        model = ctx.model
        if spend.specs is None:
            spend.specs = [t.spec() for t in ctx.tools.values()]
        specs, tenant = spend.specs, str(ctx.metadata.get(self.tenant_key) or "-")

        async def reserve() -> dict[str, Any]:
            members = model_candidates(model)
            prompt = await spend.prompts.count(model, ctx.messages, specs)
            most_out = max(m.profile.max_output_tokens for m in members)
            inp, out = self.prices.price(model) if self._usd else (0.0, 0.0)
            hold = (prompt * inp + most_out * out) / 1_000_000
            now = self.clock.time()
            if self.max_tokens is not None and ctx.usage.total_tokens + prompt + most_out > self.max_tokens:
                raise BudgetExceeded(
                    f"the run used {ctx.usage.total_tokens} tokens and its next request could use "
                    f"{prompt + most_out} more, over max_tokens={self.max_tokens:g}; raise max_tokens and resume "
                    "the run",
                    run_id=ctx.run_id,
                )
            if self.max_usd is not None and spend.spent + hold > self.max_usd:
                raise BudgetExceeded(
                    f"the run spent ${spend.spent:.6f} and its next request could cost up to ${hold:.6f}, over "
                    f"max_usd=${self.max_usd:g}; raise max_usd and resume the run",
                    run_id=ctx.run_id,
                )
            if self.max_seconds is not None and spend.started is not None and now - spend.started > self.max_seconds:
                raise BudgetExceeded(
                    f"the run has taken {now - spend.started:.1f} s, over max_seconds={self.max_seconds:g}; raise "
                    "max_seconds and resume the run",
                    run_id=ctx.run_id,
                )
            window, scopes = datetime.fromtimestamp(now, UTC).strftime("%Y-%m-%d"), []
            if self._daily:
                caps = []
                if self.agent_daily_usd is not None:
                    caps.append((f"usd:agent:{ctx.agent}", self.agent_daily_usd))
                if self.tenant_daily_usd is not None:
                    caps.append((f"usd:tenant:{tenant}", self.tenant_daily_usd))
                over = await asyncio.to_thread(self.ledger().take, window, hold, caps)  # off the event loop
                if over is not None:
                    which = "agent_daily_usd" if over.startswith("usd:agent:") else "tenant_daily_usd"
                    raise BudgetExceeded(
                        f"{over.split(':', 2)[2]!r} has spent its {which}=${dict(caps)[over]:g} for {window} (the "
                        f"next request could cost up to ${hold:.6f}); raise {which} and resume the run, or wait "
                        "for the next day",
                        run_id=ctx.run_id,
                    )
                scopes = [scope for scope, _ in caps]
            return {"prompt_tokens": prompt, "hold": hold, "now": now, "window": window, "scopes": scopes}

        try:
            held = await ctx.effect("Budget", reserve)
        except BudgetExceeded as exc:
            return Decision.stop(str(exc), kind="BudgetExceeded")
        spend.hold, spend.window, spend.scopes = float(held["hold"]), str(held["window"]), list(held["scopes"])
        if spend.started is None:
            spend.started = float(held["now"])
        return ALLOW

    async def after_model(self, ctx: PolicyContext, response: ModelResponse) -> Decision:
        """Settle the request's real cost against what was reserved."""
        spend: _Spend | None = ctx.state.get("spend")
        if spend is None or spend.hold is None or ctx.model is None:
            return ALLOW
        cost = self.prices.cost(response, ctx.model) if self._usd else 0.0
        spend.spent += cost
        self._spent.pop(ctx.run_id, None)
        self._spent[ctx.run_id] = spend.spent
        while len(self._spent) > REPORTED:
            self._spent.pop(next(iter(self._spent)))
        hold, spend.hold = spend.hold, None
        if spend.scopes:
            window, scopes, delta = spend.window, list(spend.scopes), cost - hold

            async def settle() -> dict[str, Any]:
                await asyncio.to_thread(self.ledger().adjust, window, delta, scopes)
                return {"settled": delta}

            await ctx.effect("Budget.settle", settle)
        return ALLOW
