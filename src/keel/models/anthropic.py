"""`AnthropicModel`: Claude through the official `anthropic` SDK, with native tool use.

Conversion: system messages join the separate ``system`` prompt; assistant text and tool calls become
``text`` and ``tool_use`` blocks; tool results become ``tool_result`` blocks (with ``is_error``) in a
user turn. Adjacent messages of one role merge, as the API wants turns to alternate. Thinking blocks
in answers are not kept. Stop reasons are reported as keel's: ``stop``, ``length``, ``tool_calls``
(others as the API names them).
"""

from __future__ import annotations

import importlib.util
import json
import os
from collections.abc import Awaitable, Callable, Sequence
from typing import TYPE_CHECKING, Any

from ..exceptions import ConfigError
from ..messages import (
    AssistantMessage,
    Message,
    ModelResponse,
    SystemMessage,
    ToolCall,
    ToolMessage,
    Usage,
    UserMessage,
)
from ._base import ModelProfile, estimate_tokens, message_text
from ._clients import LoopClients
from ._envelope import RAW_ARGUMENTS
from ._errors import RETRYABLE_STATUS, ModelAPIError, parse_retry_after

if TYPE_CHECKING:
    import anthropic

__all__ = ["AnthropicModel", "to_anthropic"]

INSTALL = "pip install 'keel[anthropic]'"
# Anthropic adds a system prompt of a few hundred tokens explaining tool use when tools are given.
_TOOL_USE_PROMPT_TOKENS = 500
_STOP_REASONS = {"end_turn": "stop", "stop_sequence": "stop", "max_tokens": "length", "tool_use": "tool_calls"}


def to_anthropic(messages: Sequence[Message]) -> tuple[str | None, list[dict[str, Any]]]:
    """Convert normalized messages to Anthropic's `system` prompt and `messages` list."""
    system: list[str] = []
    out: list[dict[str, Any]] = []
    for message in messages:
        blocks: list[dict[str, Any]] = []
        role = "user"
        if isinstance(message, SystemMessage):
            system.append(message.content)
            continue
        if isinstance(message, UserMessage):
            if message.content:
                blocks.append({"type": "text", "text": message.content})
        elif isinstance(message, ToolMessage):
            result: dict[str, Any] = {"type": "tool_result", "tool_use_id": message.call_id}
            if message.content:
                result["content"] = message.content
            if message.is_error:
                result["is_error"] = True
            blocks.append(result)
        else:
            role = "assistant"
            if message.content:
                blocks.append({"type": "text", "text": message.content})
            blocks.extend(
                {"type": "tool_use", "id": c.id, "name": c.name, "input": c.arguments} for c in message.tool_calls
            )
        if not blocks:
            continue
        if out and out[-1]["role"] == role:
            out[-1]["content"].extend(blocks)
        else:
            out.append({"role": role, "content": blocks})
    return ("\n\n".join(system) if system else None), out


def _tool_spec(tool: dict[str, Any]) -> dict[str, Any]:
    return {
        "name": tool["name"],
        "description": tool.get("description") or "",
        "input_schema": tool.get("parameters") or {"type": "object", "properties": {}},
    }


class AnthropicModel:
    """A Claude model on the Anthropic API.

    Construction is offline: the client is made on the first request, one per event loop, and
    closed when that loop shuts down.

    Args:
        name: the model (`claude-sonnet-4-5`, ...).
        api_key: default `ANTHROPIC_API_KEY` (or the SDK's other credential sources).
        client: an `anthropic.AsyncAnthropic` to use instead of making one.
        max_tokens: the completion budget per request; default 4096.
        profile: tool mode, context window and output budget; default native, 200k, `max_tokens`.
        count_with_api: count prompt tokens exactly with the API's token counting endpoint (a
            network call) instead of a conservative local estimate; default False.
        timeout: seconds a request may take; default the SDK's.
        max_retries: the SDK's own retries on connection errors, 408, 409, 429 and 5xx; default 2.

    Raises:
        ConfigError: the `anthropic` package is not installed.
    """

    def __init__(
        self,
        name: str,
        *,
        api_key: str | None = None,
        client: anthropic.AsyncAnthropic | None = None,
        max_tokens: int = 4096,
        profile: ModelProfile | None = None,
        count_with_api: bool = False,
        timeout: float | None = None,
        max_retries: int = 2,
    ) -> None:
        if client is None and importlib.util.find_spec("anthropic") is None:
            raise ConfigError(f"model 'anthropic:{name}' needs the anthropic package: {INSTALL}")
        self.name = name
        self.profile = profile or ModelProfile(tool_mode="native", context_window=200_000, max_output_tokens=max_tokens)
        self.count_with_api = count_with_api
        self._api_key = api_key
        self._timeout = timeout
        self._max_retries = max_retries
        self._given_client = client
        self._clients = LoopClients(self._make_client, lambda client: client.close())

    def __repr__(self) -> str:
        return f"AnthropicModel({self.name!r})"

    @property
    def base_url(self) -> str:
        """The API root requests go to."""
        if self._given_client is not None:
            return str(self._given_client.base_url).rstrip("/")
        return (os.environ.get("ANTHROPIC_BASE_URL") or "https://api.anthropic.com").rstrip("/")

    def _make_client(self) -> anthropic.AsyncAnthropic:
        import anthropic

        options: dict[str, Any] = {"max_retries": self._max_retries}
        if self._api_key:
            options["api_key"] = self._api_key
        if self._timeout is not None:
            options["timeout"] = self._timeout
        return anthropic.AsyncAnthropic(**options)

    async def aclose(self) -> None:
        """Close the HTTP client this model made for the running event loop (not one passed in).

        Clients are also closed when their event loop shuts down (as `asyncio.run` does).
        """
        await self._clients.aclose()

    def build_request(
        self, messages: Sequence[Message], tools: Sequence[dict[str, Any]], *, max_tokens: int | None = None
    ) -> dict[str, Any]:
        """The keyword arguments of `messages.create` for this request."""
        system, converted = to_anthropic(messages)
        params: dict[str, Any] = {
            "model": self.name,
            "max_tokens": max_tokens or self.profile.max_output_tokens,
            "messages": converted,
        }
        if system:
            params["system"] = system
        if tools:
            params["tools"] = [_tool_spec(t) for t in tools]
        return params

    async def request(
        self,
        messages: Sequence[Message],
        tools: Sequence[dict[str, Any]],
        *,
        max_tokens: int | None = None,
    ) -> ModelResponse:
        """Send the conversation and tool specs; return the normalized answer.

        Raises:
            ModelAPIError: the API could not be reached or refused the request.
        """
        params = self.build_request(messages, tools, max_tokens=max_tokens)
        reply = await self._call(lambda client: client.messages.create(**params))
        texts: list[str] = []
        calls: list[ToolCall] = []
        for block in reply.content:
            if block.type == "text":
                texts.append(block.text)
            elif block.type == "tool_use":
                arguments = block.input if isinstance(block.input, dict) else {RAW_ARGUMENTS: json.dumps(block.input)}
                calls.append(ToolCall(block.name, dict(arguments), block.id))
        usage = reply.usage
        input_tokens = (
            usage.input_tokens + (usage.cache_creation_input_tokens or 0) + (usage.cache_read_input_tokens or 0)
        )
        stop = reply.stop_reason or "end_turn"
        return ModelResponse(
            AssistantMessage("\n\n".join(texts) if texts else None, calls),
            Usage(input_tokens=input_tokens, output_tokens=usage.output_tokens, requests=1),
            reply.model or self.name,
            _STOP_REASONS.get(stop, stop),
        )

    async def _call(self, send: Callable[[anthropic.AsyncAnthropic], Awaitable[Any]]) -> Any:
        """Run one SDK call, turning its exceptions into `ModelAPIError`."""
        import anthropic

        try:
            client = self._given_client or await self._clients.get()
            return await send(client)
        except anthropic.AnthropicError as exc:
            raise self._error(exc) from exc
        except TypeError as exc:
            # The SDK raises TypeError when it finds no credentials at all.
            if "authentication" not in str(exc):
                raise
            raise ModelAPIError(
                f"model {self.name!r} at {self.base_url}: no API key; set ANTHROPIC_API_KEY or pass api_key="
            ) from exc

    def _error(self, exc: Exception) -> ModelAPIError:
        import anthropic

        where = f"model {self.name!r} at {self.base_url}"
        if isinstance(exc, anthropic.APITimeoutError):
            return ModelAPIError(f"{where}: the request timed out; retry, or raise timeout=", retryable=True)
        if isinstance(exc, anthropic.APIConnectionError):
            return ModelAPIError(
                f"{where}: cannot connect ({exc.__cause__ or exc}); check the network and ANTHROPIC_BASE_URL",
                retryable=True,
            )
        if isinstance(exc, anthropic.APIStatusError):
            status = exc.status_code
            fixes = {
                401: "the API key was rejected; set ANTHROPIC_API_KEY (or pass api_key=) to a valid key",
                403: "the API key may not use this model; check the key's workspace and permissions",
                404: "the model was not found; check the model name",
                429: "rate limited; wait and retry, or check the organization's limits",
                529: "the API is overloaded; retry later",
            }
            fix = fixes.get(status) or (
                "the API failed; retry later" if status >= 500 else "the API rejected the request"
            )
            detail = getattr(exc, "api_message", None) or exc.message
            return ModelAPIError(
                f"{where}: HTTP {status}: {fix} ({detail})",
                status_code=status,
                retry_after=parse_retry_after(exc.response.headers),
                retryable=status in RETRYABLE_STATUS,
            )
        if isinstance(exc, anthropic.CredentialsError):
            return ModelAPIError(f"{where}: {exc}; set ANTHROPIC_API_KEY or pass api_key=")
        return ModelAPIError(f"{where}: {exc}")

    async def count_tokens(self, messages: Sequence[Message], tools: Sequence[dict[str, Any]]) -> int:
        """Prompt tokens: from the API's counting endpoint when `count_with_api`, else a conservative estimate.

        Raises:
            ModelAPIError: counting with the API failed.
        """
        if self.count_with_api:
            params = self.build_request(messages, tools)
            del params["max_tokens"]
            result = await self._call(lambda client: client.messages.count_tokens(**params))
            return int(result.input_tokens)
        total = sum(estimate_tokens(message_text(m)) + 4 for m in messages)
        if tools:
            total += _TOOL_USE_PROMPT_TOKENS + sum(estimate_tokens(json.dumps(_tool_spec(t))) + 12 for t in tools)
        return total
