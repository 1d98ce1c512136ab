"""Request limits: a cap on body size (an ASGI middleware) and a token bucket per API key."""

from __future__ import annotations

import json
import math
import threading
import time
from typing import Any

__all__ = ["BodyLimit", "RateLimiter"]

Scope = dict[str, Any]


class BodyTooLarge(Exception):  # noqa: N818 - names what happened
    """The request body is over the limit."""


class BodyLimit:
    """Reject request bodies over `max_bytes` with 413, by Content-Length or while the body streams in."""

    def __init__(self, app: Any, max_bytes: int) -> None:
        self.app = app
        self.max_bytes = max_bytes

    async def __call__(self, scope: Scope, receive: Any, send: Any) -> None:
        """Serve one ASGI request."""
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        for name, value in scope.get("headers", []):
            if name == b"content-length":
                try:
                    declared = int(value)
                except ValueError:
                    await self._reject(send, 400, "invalid_request", "the Content-Length header is not a number")
                    return
                if declared > self.max_bytes:
                    await self._too_large(send)
                    return
        received = 0
        over = False  # the body went over the limit before any answer started
        answered = False

        async def limited_receive() -> Any:
            nonlocal received, over
            message = await receive()
            if message["type"] == "http.request":
                received += len(message.get("body", b""))
                if received > self.max_bytes:
                    over = not answered
                    raise BodyTooLarge
            return message

        async def guarded_send(message: Any) -> None:
            # The framework may catch the error raised while it reads the body and answer with its own
            # (FastAPI answers 400 "error parsing the body"): once the body went over, the answer is 413.
            nonlocal answered
            if over:
                if not answered:
                    answered = True
                    await self._too_large(send)
                return
            if message["type"] == "http.response.start":
                answered = True
            await send(message)

        try:
            await self.app(scope, limited_receive, guarded_send)
        except BodyTooLarge:
            if not answered:
                answered = True
                await self._too_large(send)

    async def _too_large(self, send: Any) -> None:
        await self._reject(
            send,
            413,
            "body_too_large",
            f"the request body is larger than {self.max_bytes} bytes; send less (for a long task, store it and "
            "send a reference)",
        )

    @staticmethod
    async def _reject(send: Any, status: int, code: str, message: str) -> None:
        body = json.dumps({"error": code, "message": message, "fields": []}).encode()
        headers = [(b"content-type", b"application/json"), (b"content-length", str(len(body)).encode())]
        await send({"type": "http.response.start", "status": status, "headers": headers})
        await send({"type": "http.response.body", "body": body})


class RateLimiter:
    """A token bucket per key: `rate` requests a second on average, bursts up to `burst`."""

    def __init__(self, rate: float, burst: int) -> None:
        self.rate = rate
        self.burst = burst
        self._buckets: dict[str, tuple[float, float]] = {}
        self._lock = threading.Lock()

    def take(self, key: str) -> float:
        """Take one token for `key`; return 0 if allowed, else the seconds to wait before retrying."""
        now = time.monotonic()
        with self._lock:
            tokens, last = self._buckets.get(key, (float(self.burst), now))
            tokens = min(float(self.burst), tokens + (now - last) * self.rate)
            if tokens >= 1.0:
                self._buckets[key] = (tokens - 1.0, now)
                return 0.0
            self._buckets[key] = (tokens, now)
            return (1.0 - tokens) / self.rate

    @staticmethod
    def retry_after(wait: float) -> str:
        """The Retry-After header value for a wait in seconds (whole seconds, at least 1)."""
        return str(max(1, math.ceil(wait)))
