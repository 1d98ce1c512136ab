"""`ModelAPIError`: a `ModelError` that keeps what a provider's HTTP answer said about retrying."""

from __future__ import annotations

import email.utils
import time
from collections.abc import Mapping

from ..exceptions import ModelError

__all__ = ["ModelAPIError", "parse_retry_after"]

RETRYABLE_STATUS = frozenset({408, 409, 425, 429, 500, 502, 503, 504, 529})


class ModelAPIError(ModelError):
    """A provider request failed; the message names the model, the endpoint and the fix.

    Attributes:
        status_code: the HTTP status, or None when no answer came (connection error, timeout).
        retry_after: seconds the provider asked to wait before retrying, when it said.
        retryable: a retry may succeed (timeouts, connection errors, 408, 409, 429, 5xx).
    """

    def __init__(
        self,
        message: str,
        *,
        status_code: int | None = None,
        retry_after: float | None = None,
        retryable: bool = False,
    ) -> None:
        super().__init__(message)
        self.status_code = status_code
        self.retry_after = retry_after
        self.retryable = retryable


def parse_retry_after(headers: Mapping[str, str]) -> float | None:
    """Seconds to wait from `retry-after-ms` or `retry-after` (seconds or an HTTP date), if present."""
    millis = headers.get("retry-after-ms")
    if millis:
        try:
            return max(0.0, float(millis) / 1000)
        except ValueError:
            pass
    value = headers.get("retry-after")
    if not value:
        return None
    try:
        return max(0.0, float(value))
    except ValueError:
        pass
    try:
        when = email.utils.parsedate_to_datetime(value)
    except (TypeError, ValueError):
        return None
    return max(0.0, when.timestamp() - time.time())
