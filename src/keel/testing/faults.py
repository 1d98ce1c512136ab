"""Fault injection for recovery tests: a model wrapper and an httpx transport that fail at a given rate.

Faults: ``429`` (with a Retry-After), ``5xx`` (500, 502, 503), ``timeout``, ``disconnect`` (the
connection dropped mid-answer), ``malformed`` (the answer is not valid JSON / its tool arguments are
not) and ``truncated`` (the answer is cut off). Both take a seed, so a test's faults repeat exactly.

Example:
    >>> from keel.models import ScriptedModel
    >>> model = FaultyModel(ScriptedModel(["hi"]), rate=0.3, seed=7)
"""

from __future__ import annotations

import json
import random
from collections.abc import Sequence
from dataclasses import dataclass, field, replace
from typing import Any

import httpx

from ..exceptions import ConfigError
from ..messages import AssistantMessage, Message, ModelResponse, ToolCall
from ..models._base import Model
from ..models._envelope import RAW_ARGUMENTS
from ..models._errors import ModelAPIError

__all__ = ["FAULTS", "FaultyModel", "FaultyTransport", "Injected"]

FAULTS = ("429", "5xx", "timeout", "disconnect", "malformed", "truncated")


@dataclass(slots=True)
class Injected:
    """The faults injected so far, in order, and how many calls passed through untouched."""

    faults: list[str] = field(default_factory=list)
    passed: int = 0

    def count(self, fault: str) -> int:
        """How many times `fault` was injected."""
        return self.faults.count(fault)


def _check(rate: float, faults: Sequence[str]) -> tuple[str, ...]:
    if not isinstance(rate, int | float) or not 0 <= rate <= 1:
        raise ConfigError(f"fault rate must be between 0 and 1, got {rate!r}")
    unknown = [f for f in faults if f not in FAULTS]
    if unknown or not faults:
        raise ConfigError(f"unknown faults {unknown or faults!r}; choose from {', '.join(FAULTS)}")
    return tuple(faults)


class FaultyModel:
    """Wraps a model; each request fails with probability `rate`, with one of `faults` chosen at random.

    ``malformed`` and ``truncated`` return an answer (tool arguments that are not JSON; text cut off
    with ``finish_reason='length'``) instead of raising, as a real provider would.

    Args:
        model: the model that answers when no fault is injected.
        rate: probability of a fault per request, 0 to 1.
        faults: the kinds to draw from; default all.
        seed: seeds the draws.
        retry_after: the Retry-After (seconds) a 429 carries; default 2.

    Attributes:
        injected: what was injected.
    """

    def __init__(
        self,
        model: Model,
        rate: float,
        *,
        faults: Sequence[str] = FAULTS,
        seed: int | None = None,
        retry_after: float = 2.0,
    ) -> None:
        self.faults = _check(rate, faults)
        self.model, self.rate, self.retry_after = model, float(rate), retry_after
        self.name, self.profile = model.name, model.profile
        self._rng = random.Random(seed)
        self.injected = Injected()

    async def request(
        self, messages: Sequence[Message], tools: Sequence[dict[str, Any]], *, max_tokens: int | None = None
    ) -> ModelResponse:
        """Answer through the wrapped model, or inject a fault."""
        if self._rng.random() >= self.rate:
            self.injected.passed += 1
            return await self.model.request(messages, tools, max_tokens=max_tokens)
        fault = self._rng.choice(self.faults)
        self.injected.faults.append(fault)
        where = f"model {self.name!r} (injected fault)"
        if fault == "429":
            raise ModelAPIError(
                f"{where}: HTTP 429: rate limited", status_code=429, retry_after=self.retry_after, retryable=True
            )
        if fault == "5xx":
            status = self._rng.choice((500, 502, 503))
            raise ModelAPIError(f"{where}: HTTP {status}: the server failed", status_code=status, retryable=True)
        if fault == "timeout":
            raise ModelAPIError(f"{where}: the request timed out", retryable=True)
        if fault == "disconnect":
            raise ModelAPIError(f"{where}: the connection dropped", retryable=True)
        good = await self.model.request(messages, tools, max_tokens=max_tokens)
        if fault == "malformed":
            name = str(tools[0]["name"]) if tools else "unknown_tool"
            bad = ToolCall(name, {RAW_ARGUMENTS: '{"a": 1, "b":'}, "call_bad")
            calls = [
                replace(c, arguments={RAW_ARGUMENTS: json.dumps(c.arguments)[:-3]}) for c in good.message.tool_calls
            ]
            return replace(good, message=AssistantMessage(None, calls or [bad]), finish_reason="tool_calls")
        text = good.message.content or json.dumps([c.to_dict() for c in good.message.tool_calls])
        return replace(good, message=AssistantMessage(text[: max(1, len(text) // 2)]), finish_reason="length")

    async def count_tokens(self, messages: Sequence[Message], tools: Sequence[dict[str, Any]]) -> int:
        """The wrapped model's count (never faulty)."""
        return await self.model.count_tokens(messages, tools)


class FaultyTransport(httpx.AsyncBaseTransport):
    """An httpx transport that fails a request with probability `rate`, else passes it to `inner`.

    ``429`` answers with a ``Retry-After`` header; ``5xx`` with 500, 502 or 503; ``timeout`` raises
    `httpx.ReadTimeout`; ``disconnect`` raises `httpx.RemoteProtocolError` (the server closed the
    connection); ``malformed`` answers 200 with a body that is not JSON; ``truncated`` answers 200 with
    the first half of the real body.

    Args:
        inner: the transport that does the real request (e.g. ``httpx.AsyncHTTPTransport()``).
        rate: probability of a fault per request, 0 to 1.
        faults: the kinds to draw from; default all.
        seed: seeds the draws.
        retry_after: the Retry-After header a 429 carries, in seconds; default 2.

    Attributes:
        injected: what was injected.
    """

    def __init__(
        self,
        inner: httpx.AsyncBaseTransport,
        rate: float,
        *,
        faults: Sequence[str] = FAULTS,
        seed: int | None = None,
        retry_after: float = 2.0,
    ) -> None:
        self.faults = _check(rate, faults)
        self.inner, self.rate, self.retry_after = inner, float(rate), retry_after
        self._rng = random.Random(seed)
        self.injected = Injected()

    async def handle_async_request(self, request: httpx.Request) -> httpx.Response:
        """Pass the request on, or fail it."""
        if self._rng.random() >= self.rate:
            self.injected.passed += 1
            return await self.inner.handle_async_request(request)
        fault = self._rng.choice(self.faults)
        self.injected.faults.append(fault)
        json_type = {"content-type": "application/json"}
        if fault == "429":
            body = b'{"error": {"message": "rate limited (injected)", "type": "rate_limit"}}'
            headers = {**json_type, "retry-after": f"{self.retry_after:g}"}
            return httpx.Response(429, headers=headers, content=body, request=request)
        if fault == "5xx":
            body = b'{"error": {"message": "server error (injected)"}}'
            return httpx.Response(self._rng.choice((500, 502, 503)), headers=json_type, content=body, request=request)
        if fault == "timeout":
            raise httpx.ReadTimeout("injected read timeout", request=request)
        if fault == "disconnect":
            raise httpx.RemoteProtocolError("injected: server disconnected without sending a response", request=request)
        if fault == "malformed":
            return httpx.Response(200, headers=json_type, content=b'{"id": "x", "choices": [{"mess', request=request)
        real = await self.inner.handle_async_request(request)
        body = await real.aread()
        await real.aclose()
        return httpx.Response(200, headers=json_type, content=body[: len(body) // 2], request=request)

    async def aclose(self) -> None:
        """Close the inner transport."""
        await self.inner.aclose()
