"""The `Model` protocol every provider implements, and the profile that says how it calls tools."""

from __future__ import annotations

import json
from collections.abc import Sequence
from contextvars import ContextVar
from dataclasses import dataclass
from typing import Any, Literal, Protocol, runtime_checkable

from ..messages import AssistantMessage, Message, ModelResponse

__all__ = ["Model", "ModelProfile", "estimate_tokens", "message_text", "request_number"]

request_number: ContextVar[int] = ContextVar("keel_request_number", default=0)
"""The 1-based number of the model request the loop is making in the current run (0 outside a run).

Replayed requests count too, so a resumed run numbers its requests exactly as the first attempt did.
"""


@dataclass(frozen=True, slots=True)
class ModelProfile:
    """How keel talks to one model.

    Attributes:
        tool_mode: `native` uses the provider's tool calling; `envelope` asks for one JSON object
            constrained by a schema (`response_format` json_schema) naming the tool and its arguments.
            Small local models call tools reliably only in `envelope` mode.
        context_window: tokens the model accepts, prompt plus completion.
        max_output_tokens: the completion budget reserved for each request.
    """

    tool_mode: Literal["native", "envelope"] = "native"
    context_window: int = 128_000
    max_output_tokens: int = 4_096


@runtime_checkable
class Model(Protocol):
    """A language model keel can drive.

    Implementations convert the normalized messages to the provider's format and back without loss,
    and report usage. `request` is only ever called inside a durable step.
    """

    name: str
    profile: ModelProfile

    async def request(
        self,
        messages: Sequence[Message],
        tools: Sequence[dict[str, Any]],
        *,
        max_tokens: int | None = None,
    ) -> ModelResponse:
        """Send the conversation and tool specs; return the normalized answer."""
        ...

    async def count_tokens(self, messages: Sequence[Message], tools: Sequence[dict[str, Any]]) -> int:
        """Tokens the request would use as prompt (exact where the provider allows, else an upper bound)."""
        ...


def estimate_tokens(text: str) -> int:
    """A conservative token estimate: no common tokenizer yields more tokens than this for the text.

    BPE tokenizers average about four characters a token on English text; three characters a token
    over-counts that by a third, and every non-ASCII byte is counted as its own token.
    """
    ascii_chars = len(text.encode("ascii", "ignore"))
    other_bytes = len(text.encode("utf-8")) - ascii_chars
    return ascii_chars // 3 + other_bytes + 1


def message_text(message: Message) -> str:
    """The text a tokenizer would see for one message, including its role and tool calls."""
    parts = [message.role, message.content or ""]
    if isinstance(message, AssistantMessage):
        parts.extend(json.dumps(c.to_dict()) for c in message.tool_calls)
    return "\n".join(parts)
