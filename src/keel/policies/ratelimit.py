"""Rate limits: requests and tokens per minute per model, calls per minute per tool, and both per tenant.

The counters are shared by every worker process: in the keel database, or in Redis when
`redis_url` is given. Each minute is a fixed window (``m<minute since the epoch>``); a request takes
one request and its largest token count (prompt plus output budget) from every limit that applies,
all or nothing, and the tokens are settled to the real count afterwards. Over a limit the run
waits for the next window (bounded by `max_wait`) or stops with ``RateLimited``, as configured.
Reading the clock, waiting and taking are a durable step, so a resumed run replays them.
"""

from __future__ import annotations

import asyncio
import math
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Literal

from .._clock import SYSTEM_CLOCK, Clock
from ..exceptions import ConfigError, RateLimited
from ._base import ALLOW, Decision, Policy, PolicyContext
from .budget import PromptCounter, model_candidates

if TYPE_CHECKING:
    from ..messages import ModelResponse, ToolCall
    from ..tools import Tool
    from ._ledger import Ledger, RedisLedger

__all__ = ["RateLimit"]

WINDOW = 60.0


def _limit(name: str, value: int | None) -> int | None:
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, int) or value < 1:
        raise ConfigError(f"RateLimit: {name} must be a whole number 1 or more (or None for no limit), got {value!r}")
    return value


@dataclass(slots=True)
class _Held:
    window: str = ""
    tokens: int = 0
    scopes: list[str] = field(default_factory=list)
    specs: list[dict[str, Any]] | None = None
    prompts: PromptCounter = field(default_factory=PromptCounter)


class RateLimit(Policy):
    """Limits on requests and tokens per minute, shared across worker processes.

    Args:
        requests_per_minute: model requests per minute, per model.
        tokens_per_minute: prompt plus output tokens per minute, per model.
        tool_calls_per_minute: calls per minute per tool: a mapping of tool name to limit (``*`` for
            every other tool), or one number for each tool.
        tenant_requests_per_minute: model requests per minute per tenant (``metadata[tenant_key]``).
        tenant_tokens_per_minute: tokens per minute per tenant.
        on_limit: ``wait`` for the next minute (default) or ``fail`` with ``RateLimited`` at once.
        max_wait: the longest a run waits, in seconds, before it fails instead; default 120.
        database_url: where the counters are kept; default ``KEEL_DATABASE_URL``.
        redis_url: keep the counters in Redis instead (``redis://127.0.0.1:6379/0``).
        tenant_key: the metadata key naming the tenant; default ``tenant``.
        clock: the clock (a fake one in tests); default the system clock.

    Raises:
        ConfigError: a limit that is not a whole number 1 or more, or an unknown `on_limit`.
    """

    def __init__(
        self,
        *,
        requests_per_minute: int | None = None,
        tokens_per_minute: int | None = None,
        tool_calls_per_minute: int | Mapping[str, int] | None = None,
        tenant_requests_per_minute: int | None = None,
        tenant_tokens_per_minute: int | None = None,
        on_limit: Literal["wait", "fail"] = "wait",
        max_wait: float = 120.0,
        database_url: str | None = None,
        redis_url: str | None = None,
        tenant_key: str = "tenant",
        clock: Clock | None = None,
    ) -> None:
        self.rpm = _limit("requests_per_minute", requests_per_minute)
        self.tpm = _limit("tokens_per_minute", tokens_per_minute)
        self.tenant_rpm = _limit("tenant_requests_per_minute", tenant_requests_per_minute)
        self.tenant_tpm = _limit("tenant_tokens_per_minute", tenant_tokens_per_minute)
        if tool_calls_per_minute is None:
            tools: dict[str, int] = {}
        elif isinstance(tool_calls_per_minute, Mapping):
            tools = {str(k): _limit(f"tool_calls_per_minute[{k!r}]", v) or 0 for k, v in tool_calls_per_minute.items()}
        else:
            tools = {"*": _limit("tool_calls_per_minute", tool_calls_per_minute) or 0}
        self.tools = tools
        if on_limit not in ("wait", "fail"):
            raise ConfigError(f"RateLimit: on_limit must be 'wait' or 'fail', got {on_limit!r}")
        if not isinstance(max_wait, int | float) or not math.isfinite(max_wait) or max_wait < 0:
            raise ConfigError(f"RateLimit: max_wait must be a number of seconds 0 or more, got {max_wait!r}")
        if redis_url is not None and not str(redis_url).startswith(("redis://", "rediss://", "unix://")):
            raise ConfigError(f"RateLimit: redis_url must look like redis://host:6379/0, got {redis_url!r}")
        if database_url == "memory":
            raise ConfigError("RateLimit: limits are shared through a database or Redis; set database_url or redis_url")
        self.on_limit, self.max_wait = on_limit, float(max_wait)
        self.database_url, self.redis_url, self.tenant_key = database_url, redis_url, tenant_key
        self.clock = clock or SYSTEM_CLOCK
        self._counters: Ledger | RedisLedger | None = None

    def counters(self) -> Ledger | RedisLedger:
        """The shared counters (database or Redis)."""
        if self._counters is None:
            from ._ledger import Ledger, RedisLedger

            if self.redis_url is not None:
                self._counters = RedisLedger.for_url(self.redis_url)
            else:
                url = self.database_url
                if url is None:
                    from ..config import settings

                    url = settings().database_url
                if url == "memory":
                    raise ConfigError("RateLimit: limits are shared through a database or Redis; set database_url")
                self._counters = Ledger.for_url(url)
        return self._counters

    async def _acquire(
        self, requests: list[tuple[str, float]], tokens: list[tuple[str, float]], amount: int
    ) -> dict[str, Any]:
        """Take one request and `amount` tokens from every limit, waiting for later windows if allowed."""
        for scope, cap in tokens:
            if amount > cap:
                raise RateLimited(
                    f"one request may use {amount} tokens, more than {scope}'s limit of {cap:g} per minute; raise "
                    "the tokens-per-minute limit or lower the model's output budget"
                )
        counters, waited = self.counters(), 0.0
        while True:
            now = self.clock.time()
            window = f"m{int(now // WINDOW)}"
            amounts = [1.0] * len(requests) + [float(amount)] * len(tokens)
            over = await asyncio.to_thread(counters.take, window, 1, requests + tokens, amounts)  # off the loop
            if over is None:
                return {"window": window, "waited": waited}
            wait = WINDOW - (now % WINDOW)
            if self.on_limit == "fail" or waited + wait > self.max_wait:
                cap = dict(requests + tokens)[over]
                how = "waiting is off (on_limit='fail')" if self.on_limit == "fail" else f"max_wait={self.max_wait:g} s"
                raise RateLimited(
                    f"{over} reached its limit of {cap:g} per minute and {how}; resume the run later, or raise "
                    "the limit or max_wait"
                )
            await self.clock.sleep(wait)
            waited += wait

    def _held(self, ctx: PolicyContext) -> _Held:
        held: _Held | None = ctx.state.get("held")
        if held is None or ctx.step <= 1:
            held = ctx.state["held"] = _Held()
        return held

    async def before_model(self, ctx: PolicyContext) -> Decision:
        """Take a request (and its tokens) from the model's and the tenant's limits, or wait, or stop."""
        held = self._held(ctx)
        if ctx.model is None or not (self.rpm or self.tpm or self.tenant_rpm or self.tenant_tpm):
            return ALLOW
        model, tenant = ctx.model, str(ctx.metadata.get(self.tenant_key) or "-")
        requests = [
            (s, float(c))
            for s, c in ((f"rpm:model:{model.name}", self.rpm), (f"rpm:tenant:{tenant}", self.tenant_rpm))
            if c
        ]
        tokens = [
            (s, float(c))
            for s, c in ((f"tpm:model:{model.name}", self.tpm), (f"tpm:tenant:{tenant}", self.tenant_tpm))
            if c
        ]
        if held.specs is None:
            held.specs = [t.spec() for t in ctx.tools.values()]
        specs = held.specs

        async def acquire() -> dict[str, Any]:
            amount = 0
            if tokens:
                prompt = await held.prompts.count(model, ctx.messages, specs)
                amount = prompt + max(m.profile.max_output_tokens for m in model_candidates(model))
            return {**await self._acquire(requests, tokens, amount), "tokens": amount}

        try:
            got = await ctx.effect("RateLimit", acquire)
        except RateLimited as exc:
            return Decision.stop(str(exc), kind="RateLimited")
        held.window, held.tokens, held.scopes = str(got["window"]), int(got["tokens"]), [s for s, _ in tokens]
        return ALLOW

    async def after_model(self, ctx: PolicyContext, response: ModelResponse) -> Decision:
        """Give back the tokens reserved but not used."""
        held: _Held | None = ctx.state.get("held")
        if held is None or not held.scopes:
            return ALLOW
        window, scopes, delta = held.window, list(held.scopes), response.usage.total_tokens - held.tokens
        held.scopes = []

        async def settle() -> dict[str, Any]:
            await asyncio.to_thread(self.counters().adjust, window, delta, scopes)
            return {"settled": delta}

        await ctx.effect("RateLimit.settle", settle)
        return ALLOW

    async def before_tool(self, ctx: PolicyContext, call: ToolCall, tool: Tool) -> Decision:
        """Take a call from the tool's limit, or wait, or stop."""
        cap = self.tools.get(tool.name) or self.tools.get("*")
        if not cap:
            return ALLOW

        async def acquire() -> dict[str, Any]:
            return await self._acquire([(f"rpm:tool:{tool.name}", float(cap))], [], 0)

        try:
            await ctx.effect(f"RateLimit.tool:{tool.name}", acquire)
        except RateLimited as exc:
            return Decision.stop(str(exc), kind="RateLimited")
        return ALLOW
