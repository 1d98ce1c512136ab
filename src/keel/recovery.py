"""Error recovery: retries with backoff and jitter, circuit breakers, fallback models, escalation.

`Resilient` wraps the agent's model. Inside the model step it retries transient faults (429
honouring Retry-After, 5xx, timeouts, dropped connections, a truncated or malformed answer) with
exponential backoff and full jitter (tenacity), never a request the provider rejected as invalid;
it skips a provider whose circuit is open and falls back along a chain of models. When every model
fails, the step fails, the run ends ``failed`` with a report of what failed and where, and it can
be resumed once the cause is fixed: completed steps replay from the journal.

Example:
    >>> from keel.models import ScriptedModel
    >>> model = Resilient(ScriptedModel(["hi"]), fallbacks=[ScriptedModel(["hello"], name="backup")])
"""

from __future__ import annotations

import json
import random
import threading
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import httpx
import tenacity

from ._clock import SYSTEM_CLOCK, Clock
from .exceptions import ConfigError, Escalate, ModelError
from .messages import Message, ModelResponse
from .models._base import Model, ModelProfile
from .models._envelope import RAW_ARGUMENTS
from .models._errors import ModelAPIError
from .tools import tool

__all__ = [
    "CircuitBreaker",
    "CircuitOpen",
    "MalformedResponse",
    "Resilient",
    "RetryPolicy",
    "escalate_to_human",
    "is_transient",
]


class MalformedResponse(ModelError):
    """The model's answer was cut off (``finish_reason='length'``) or its tool arguments were not JSON."""


class CircuitOpen(ModelError):
    """A provider failed too often lately; requests to it are skipped until its circuit closes."""


def is_transient(exc: BaseException) -> bool:
    """Whether a retry may succeed: 408/409/425/429/5xx, timeouts, dropped connections, a garbled answer.

    A request the provider rejected (400, 401, 403, 404, 422) and every other error are not retried.
    """
    if isinstance(exc, ModelAPIError):
        if exc.retryable:
            return True
        cause = exc.__cause__
        return cause is not None and _garbled(cause)
    if isinstance(exc, MalformedResponse):
        return True
    if isinstance(exc, httpx.TimeoutException | httpx.NetworkError | httpx.RemoteProtocolError):
        return True
    if isinstance(exc, TimeoutError | ConnectionError):
        return True
    return _garbled(exc)


def _garbled(exc: BaseException) -> bool:
    """A 2xx answer whose body was not the JSON it should be (cut off or corrupted on the way)."""
    if isinstance(exc, json.JSONDecodeError):
        return True
    name = type(exc).__name__
    return name in ("APIResponseValidationError", "DecodingError") or isinstance(exc.__cause__, json.JSONDecodeError)


@dataclass(frozen=True, slots=True)
class RetryPolicy:
    """How transient faults are retried.

    Attributes:
        attempts: tries per model, the first included; default 5.
        initial: the first backoff in seconds; default 0.5.
        maximum: the longest backoff in seconds; default 30.
        multiplier: backoff growth per attempt; default 2.
        jitter: draw each wait uniformly from [0, backoff] ("full jitter"); default True.
        max_retry_after: the longest Retry-After honoured, in seconds (a longer one fails over); default 120.
    """

    attempts: int = 5
    initial: float = 0.5
    maximum: float = 30.0
    multiplier: float = 2.0
    jitter: bool = True
    max_retry_after: float = 120.0

    def __post_init__(self) -> None:
        if not isinstance(self.attempts, int) or self.attempts < 1:
            raise ConfigError(f"RetryPolicy: attempts must be 1 or more, got {self.attempts!r}")
        for name in ("initial", "maximum", "multiplier", "max_retry_after"):
            value = getattr(self, name)
            if not isinstance(value, int | float) or value < 0:
                raise ConfigError(f"RetryPolicy: {name} must be a number 0 or more, got {value!r}")

    def backoff(self, attempt: int, rng: random.Random) -> float:
        """Seconds to wait after failed attempt number `attempt` (1-based)."""
        ceiling = min(self.maximum, self.initial * self.multiplier ** (attempt - 1))
        return rng.uniform(0, ceiling) if self.jitter else ceiling


class _Wait(tenacity.wait.wait_base):
    """Honour the provider's Retry-After when it gave one, else back off exponentially with jitter."""

    def __init__(self, policy: RetryPolicy, rng: random.Random) -> None:
        self.policy, self.rng = policy, rng

    def __call__(self, retry_state: tenacity.RetryCallState) -> float:
        outcome = retry_state.outcome
        exc = outcome.exception() if outcome is not None else None
        after = getattr(exc, "retry_after", None)
        if isinstance(after, int | float):
            return float(after)
        return self.policy.backoff(retry_state.attempt_number, self.rng)


class _RetryAfterTooLong(ModelError):
    """The provider asked for a longer wait than `max_retry_after`: try the next model instead."""


class CircuitBreaker:
    """Counts a provider's consecutive failures; past `threshold` it opens for `reset_after` seconds.

    Open, requests are refused at once (`allow` is False). After `reset_after` one trial request is let
    through (half open): success closes the circuit, failure opens it again.

    Args:
        threshold: consecutive failures that open the circuit; default 5.
        reset_after: seconds the circuit stays open; default 30.
        clock: the clock; default the system clock.
    """

    def __init__(self, threshold: int = 5, reset_after: float = 30.0, clock: Clock | None = None) -> None:
        if not isinstance(threshold, int) or threshold < 1:
            raise ConfigError(f"CircuitBreaker: threshold must be 1 or more, got {threshold!r}")
        if not isinstance(reset_after, int | float) or reset_after < 0:
            raise ConfigError(f"CircuitBreaker: reset_after must be 0 or more seconds, got {reset_after!r}")
        self.threshold, self.reset_after = threshold, float(reset_after)
        self.clock = clock or SYSTEM_CLOCK
        self.failures = 0
        self.opened_at: float | None = None
        self._lock = threading.Lock()

    @property
    def state(self) -> str:
        """``closed``, ``open`` or ``half_open``."""
        if self.opened_at is None:
            return "closed"
        return "half_open" if self.clock.time() - self.opened_at >= self.reset_after else "open"

    def allow(self) -> bool:
        """Whether a request may go to the provider now."""
        return self.state != "open"

    def success(self) -> None:
        """Record a success: the circuit closes."""
        with self._lock:
            self.failures, self.opened_at = 0, None

    def failure(self) -> None:
        """Record a failure: the circuit opens at the threshold (or again, after a failed trial)."""
        with self._lock:
            self.failures += 1
            if self.failures >= self.threshold or self.opened_at is not None:
                self.opened_at = self.clock.time()


_BREAKERS: dict[str, CircuitBreaker] = {}
_BREAKERS_LOCK = threading.Lock()


def provider_of(model: Model) -> str:
    """The provider a model belongs to: its class and endpoint (one breaker per provider)."""
    return f"{type(model).__name__}:{getattr(model, 'base_url', model.name)}"


def breaker_for(
    provider: str, *, threshold: int = 5, reset_after: float = 30.0, clock: Clock | None = None
) -> CircuitBreaker:
    """The process's circuit breaker for `provider` (made on first use with these settings)."""
    with _BREAKERS_LOCK:
        found = _BREAKERS.get(provider)
        if found is None:
            found = _BREAKERS[provider] = CircuitBreaker(threshold, reset_after, clock)
        return found


@dataclass(slots=True)
class Attempt:
    """One failed try, for the error a run ends with and for tests."""

    model: str
    error: str
    transient: bool
    waited: float = 0.0


@dataclass(slots=True)
class _Log:
    attempts: list[Attempt] = field(default_factory=list)


class Resilient:
    """A model that retries transient faults, skips providers whose circuit is open, and falls back.

    It is itself a `Model`: give it to an `Agent`. Everything happens inside the model step, so a
    resumed run replays the answer that was finally given and never repeats the retries.

    Args:
        model: the primary model (a model string or a `Model`).
        fallbacks: models tried in order when the primary fails (after its retries) or its circuit is open.
        retry: how transient faults are retried; default `RetryPolicy()`.
        breakers: keep a circuit breaker per provider (shared by every `Resilient` in the process);
            default True.
        breaker_threshold: consecutive failures that open a provider's circuit; default 5.
        breaker_reset: seconds an open circuit stays open; default 30.
        check_output: treat an answer cut off at the token limit, or tool arguments that are not JSON, as
            a transient fault and ask again; default True.
        clock: where backoff sleeps (a `keel.testing.FakeClock` in tests); default the system clock.
        seed: seeds the jitter (tests); default random.

    Attributes:
        attempts: the failed tries of the latest request (model, error, whether transient, wait).

    Raises:
        ConfigError: a model string is invalid or a setting is out of range.
    """

    def __init__(
        self,
        model: str | Model,
        fallbacks: Sequence[str | Model] = (),
        *,
        retry: RetryPolicy | None = None,
        breakers: bool = True,
        breaker_threshold: int = 5,
        breaker_reset: float = 30.0,
        check_output: bool = True,
        clock: Clock | None = None,
        seed: int | None = None,
    ) -> None:
        from .models import resolve_model

        self.models: list[Model] = [resolve_model(m) for m in (model, *fallbacks)]
        primary = self.models[0]
        self.name = primary.name
        self.profile = ModelProfile(
            primary.profile.tool_mode,
            min(m.profile.context_window for m in self.models),
            primary.profile.max_output_tokens,
        )
        self.retry = retry or RetryPolicy()
        self.clock = clock or SYSTEM_CLOCK
        self.check_output = check_output
        self._rng = random.Random(seed)
        self._breakers = (
            [
                breaker_for(provider_of(m), threshold=breaker_threshold, reset_after=breaker_reset, clock=self.clock)
                for m in self.models
            ]
            if breakers
            else None
        )
        self.attempts: list[Attempt] = []

    def __repr__(self) -> str:
        return f"Resilient({[m.name for m in self.models]!r})"

    async def request(
        self,
        messages: Sequence[Message],
        tools: Sequence[dict[str, Any]],
        *,
        max_tokens: int | None = None,
    ) -> ModelResponse:
        """Ask each model in turn, retrying transient faults, until one answers.

        Raises:
            ModelError: every model failed or was skipped; the message lists each one's last error.
        """
        log = _Log()
        self.attempts = log.attempts
        last: BaseException | None = None
        for index, model in enumerate(self.models):
            breaker = None if self._breakers is None else self._breakers[index]
            if breaker is not None and not breaker.allow():
                log.attempts.append(Attempt(model.name, f"circuit open for {provider_of(model)}", True))
                last = CircuitOpen(f"model {model.name!r}: its provider's circuit is open after repeated failures")
                continue
            try:
                response = await self._with_retries(model, messages, tools, max_tokens, log)
            except Exception as exc:
                log.attempts.append(Attempt(model.name, str(exc), is_transient(exc)))
                if breaker is not None and (is_transient(exc) or isinstance(exc, _RetryAfterTooLong)):
                    breaker.failure()
                fallible = isinstance(exc, ModelError | httpx.HTTPError | TimeoutError | ConnectionError)
                if not (fallible or is_transient(exc)):
                    raise  # a bug or a configuration error: no fallback will fix it
                last = exc
                continue
            if breaker is not None:
                breaker.success()
            return response
        last_errors = {a.model: a.error for a in log.attempts}
        tried = "; ".join(f"{name}: {error}" for name, error in last_errors.items())
        raise ModelError(
            f"every model failed ({', '.join(m.name for m in self.models)}); last errors: {tried}. "
            "Fix the cause (key, quota, endpoint) or add a fallback model, then resume the run"
        ) from last

    async def _with_retries(
        self,
        model: Model,
        messages: Sequence[Message],
        tools: Sequence[dict[str, Any]],
        max_tokens: int | None,
        log: _Log,
    ) -> ModelResponse:
        policy = self.retry

        def retryable(exc: BaseException) -> bool:
            return is_transient(exc) and not isinstance(exc, _RetryAfterTooLong)

        def note(state: tenacity.RetryCallState) -> None:
            exc = state.outcome.exception() if state.outcome is not None else None
            waited = state.next_action.sleep if state.next_action is not None else 0.0
            log.attempts.append(Attempt(model.name, str(exc), True, waited))

        retrying = tenacity.AsyncRetrying(
            sleep=self.clock.sleep,
            stop=tenacity.stop_after_attempt(policy.attempts),
            wait=_Wait(policy, self._rng),
            retry=tenacity.retry_if_exception(retryable),
            before_sleep=note,
            reraise=True,
        )
        async for attempt in retrying:
            with attempt:
                response = await self._once(model, messages, tools, max_tokens)
        return response

    async def _once(
        self, model: Model, messages: Sequence[Message], tools: Sequence[dict[str, Any]], max_tokens: int | None
    ) -> ModelResponse:
        try:
            response = await model.request(messages, tools, max_tokens=max_tokens)
        except ModelAPIError as exc:
            if exc.retry_after is not None and exc.retry_after > self.retry.max_retry_after:
                raise _RetryAfterTooLong(
                    f"{exc} (Retry-After {exc.retry_after:g} s is over max_retry_after={self.retry.max_retry_after:g})"
                ) from exc
            raise
        if self.check_output:
            if response.finish_reason == "length":
                raise MalformedResponse(f"model {model.name!r}: the answer was cut off at the output token limit")
            for call in response.message.tool_calls:
                if RAW_ARGUMENTS in call.arguments:
                    raise MalformedResponse(f"model {model.name!r}: the arguments of {call.name} were not JSON")
        return response

    async def count_tokens(self, messages: Sequence[Message], tools: Sequence[dict[str, Any]]) -> int:
        """The largest prompt count among the chain's models (a request may go to any of them)."""
        return max([await m.count_tokens(messages, tools) for m in self.models])


@tool(name="escalate_to_human")
def escalate_to_human(reason: str) -> str:
    """Hand the conversation to a person when you cannot go on safely or the user asks for a human.

    The run pauses until a person decides; their note comes back as this tool's result.

    Args:
        reason: what the person must decide or do, and why.
    """
    raise Escalate(reason)
