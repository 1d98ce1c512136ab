"""`OpenAIModel`: the OpenAI API and every OpenAI-compatible server (vLLM, Ollama, llama.cpp).

Two ways to call tools, chosen by `ModelProfile.tool_mode`:

- ``native``: the provider's tool calling (``tools=[{"type": "function", ...}]``).
- ``envelope``: one JSON object constrained by a ``response_format`` JSON Schema, an ``anyOf`` with
  one branch per tool: ``{"tool": NAME, "arguments": {...}}``. Small local models call tools
  reliably only this way. The instructions that explain the envelope are data, in
  ``keel/prompts/envelope.md``.

Arguments that are not a JSON object (malformed JSON from the model, or an envelope that does not
parse) become ``{"__raw__": "<the text>"}``: the call then fails tool validation with a message
naming the unexpected argument, the loop re-asks, and the model sees its own text again in the
history.
"""

from __future__ import annotations

import asyncio
import json
import os
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any
from urllib.parse import urlsplit

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
from ._base import ModelProfile, estimate_tokens
from ._clients import LoopClients
from ._envelope import (
    FINAL_ANSWER,
    FINAL_RESULT,
    RAW_ARGUMENTS,
    arguments_text,
    compact_json,
    envelope_messages,
    envelope_prompt,
    envelope_schema,
    offers_final_answer,
    parse_envelope,
)
from ._errors import RETRYABLE_STATUS, ModelAPIError, parse_retry_after

if TYPE_CHECKING:
    import openai

__all__ = [
    "FINAL_ANSWER",
    "FINAL_RESULT",
    "RAW_ARGUMENTS",
    "OpenAIModel",
    "envelope_prompt",
    "envelope_schema",
    "ollama_model",
    "parse_envelope",
]

OPENAI_BASE_URL = "https://api.openai.com/v1"
_LOCAL_HOSTS = frozenset({"localhost", "127.0.0.1", "::1", "0.0.0.0"})
_TOKENS_PER_MESSAGE = 4
_TOKENS_PER_TOOL = 12
_TOKENS_PER_REPLY = 3


def _parse_arguments(text: str | None) -> dict[str, Any]:
    if not text or not text.strip():
        return {}
    try:
        value = json.loads(text)
    except ValueError:
        return {RAW_ARGUMENTS: text}
    return value if isinstance(value, dict) else {RAW_ARGUMENTS: text}


def _is_local(url: str) -> bool:
    return (urlsplit(url).hostname or "") in _LOCAL_HOSTS


class OpenAIModel:
    """A model behind the OpenAI chat completions API, or any server that speaks it.

    Construction is offline: the client is made on the first request, one per event loop, and
    closed when that loop shuts down.

    Args:
        name: the model name the server knows (`gpt-4o-mini`, `qwen2.5:0.5b`, ...).
        base_url: the API root; default `OPENAI_BASE_URL`, else the OpenAI API.
        api_key: default `OPENAI_API_KEY`; a placeholder is sent to a server on this machine.
        profile: tool mode, context window and output budget; default native, 128k, 4096.
        client: an `openai.AsyncOpenAI` to use instead of making one (tests, custom transports).
        temperature: sampling temperature; default the server's.
        timeout: seconds a request may take; default the SDK's (600).
        max_retries: the SDK's own retries on connection errors, 408, 409, 429 and 5xx; default 2.
    """

    def __init__(
        self,
        name: str,
        *,
        base_url: str | None = None,
        api_key: str | None = None,
        profile: ModelProfile | None = None,
        client: openai.AsyncOpenAI | None = None,
        temperature: float | None = None,
        timeout: float | None = None,
        max_retries: int = 2,
    ) -> None:
        self.name = name
        self.profile = profile or ModelProfile()
        if client is not None:
            self.base_url = str(client.base_url).rstrip("/")
        else:
            self.base_url = (base_url or os.environ.get("OPENAI_BASE_URL") or OPENAI_BASE_URL).rstrip("/")
        self.temperature = temperature
        self._api_key = api_key
        self._timeout = timeout
        self._max_retries = max_retries
        self._given_client = client
        self._clients = LoopClients(self._make_client, lambda client: client.close())

    def __repr__(self) -> str:
        return f"OpenAIModel({self.name!r}, base_url={self.base_url!r}, tool_mode={self.profile.tool_mode!r})"

    @property
    def _is_openai(self) -> bool:
        return urlsplit(self.base_url).hostname == "api.openai.com"

    async def _client(self) -> openai.AsyncOpenAI:
        if self._given_client is not None:
            return self._given_client
        return await self._clients.get()

    def _make_client(self) -> openai.AsyncOpenAI:
        import openai

        key = self._api_key or os.environ.get("OPENAI_API_KEY")
        if not key and _is_local(self.base_url):
            key = "not-needed"
        if not key:
            raise ModelAPIError(
                f"model {self.name!r} at {self.base_url}: no API key; set OPENAI_API_KEY or pass api_key="
            )
        options: dict[str, Any] = {"api_key": key, "base_url": self.base_url, "max_retries": self._max_retries}
        if self._timeout is not None:
            options["timeout"] = self._timeout
        return openai.AsyncOpenAI(**options)

    async def aclose(self) -> None:
        """Close the HTTP client this model made for the running event loop (not one passed in).

        Clients are also closed when their event loop shuts down (as `asyncio.run` does).
        """
        await self._clients.aclose()

    def build_messages(self, messages: Sequence[Message], tools: Sequence[dict[str, Any]]) -> list[dict[str, Any]]:
        """Convert normalized messages to chat completion messages for this model's tool mode."""
        if self.profile.tool_mode == "envelope":
            return envelope_messages(messages, tools)
        return [_native_message(m) for m in messages]

    def build_request(
        self, messages: Sequence[Message], tools: Sequence[dict[str, Any]], *, max_tokens: int | None = None
    ) -> dict[str, Any]:
        """The keyword arguments of `chat.completions.create` for this request."""
        params: dict[str, Any] = {"model": self.name, "messages": self.build_messages(messages, tools)}
        limit = max_tokens or self.profile.max_output_tokens
        params["max_completion_tokens" if self._is_openai else "max_tokens"] = limit
        if self.temperature is not None:
            params["temperature"] = self.temperature
        if self.profile.tool_mode == "envelope":
            params["response_format"] = {
                "type": "json_schema",
                "json_schema": {"name": "action", "strict": True, "schema": envelope_schema(tools)},
            }
        elif tools:
            params["tools"] = [
                {
                    "type": "function",
                    "function": {
                        "name": t["name"],
                        "description": t.get("description") or "",
                        "parameters": t.get("parameters") or {"type": "object", "properties": {}},
                    },
                }
                for t in tools
            ]
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
            ModelAPIError: the server could not be reached, refused the request or answered nothing.
        """
        params = self.build_request(messages, tools, max_tokens=max_tokens)
        import openai

        try:
            completion = await (await self._client()).chat.completions.create(**params)
        except openai.OpenAIError as exc:
            raise self._error(exc) from exc
        except ValueError as exc:  # a 200 whose body is not JSON (cut short, or not an OpenAI-compatible server)
            raise ModelAPIError(
                f"model {self.name!r} at {self.base_url}: the answer is not valid JSON ({exc}); it may have been cut "
                "short (a retry may succeed), or the server at OPENAI_BASE_URL (or base_url=) does not speak the "
                "OpenAI API",
                retryable=True,
            ) from exc
        if not completion.choices:
            raise ModelAPIError(f"model {self.name!r} at {self.base_url}: the answer has no choices")
        choice = completion.choices[0]
        usage = Usage(requests=1)
        if completion.usage is not None:
            usage.input_tokens = completion.usage.prompt_tokens or 0
            usage.output_tokens = completion.usage.completion_tokens or 0
        finish = choice.finish_reason or "stop"
        model = completion.model or self.name
        if self.profile.tool_mode == "envelope":
            text = choice.message.content or ""
            message = parse_envelope(text, final_answer=offers_final_answer(tools))
            return ModelResponse(message, usage, model, finish, raw_text=text)
        calls = [
            ToolCall(c.function.name, _parse_arguments(c.function.arguments), c.id)
            for c in choice.message.tool_calls or []
            if c.type == "function"
        ]
        return ModelResponse(AssistantMessage(choice.message.content, calls), usage, model, finish)

    async def post_json(self, url: str, body: dict[str, Any]) -> Any:
        """POST JSON to another endpoint of the same server (llama.cpp's `/tokenize`) and return the JSON.

        Raises:
            ModelAPIError: as for `request`.
        """
        import openai

        try:
            return await (await self._client()).post(url, cast_to=object, body=body)
        except openai.OpenAIError as exc:
            raise self._error(exc) from exc

    def _error(self, exc: Exception) -> ModelAPIError:
        """Describe an SDK exception: which model, where, and what to do."""
        import openai

        where = f"model {self.name!r} at {self.base_url}"
        if isinstance(exc, openai.APITimeoutError):
            return ModelAPIError(
                f"{where}: the request timed out; check the server's load or raise timeout=", retryable=True
            )
        if isinstance(exc, openai.APIConnectionError):
            return ModelAPIError(
                f"{where}: cannot connect ({exc.__cause__ or exc}); check that the server runs and that "
                "OPENAI_BASE_URL (or base_url=) is right",
                retryable=True,
            )
        if isinstance(exc, openai.APIStatusError):
            status = exc.status_code
            detail = _error_detail(exc)
            fixes = {
                401: "the API key was rejected; set OPENAI_API_KEY (or pass api_key=) to a valid key",
                403: "the API key may not use this model; check the key's project and permissions",
                404: "the model or endpoint was not found; check the model name and OPENAI_BASE_URL",
                429: "rate limited or out of quota; wait and retry, or check the account's limits",
            }
            fix = fixes.get(status) or (
                "the server failed; retry later" if status >= 500 else "the server rejected the request"
            )
            return ModelAPIError(
                f"{where}: HTTP {status}: {fix} ({detail})",
                status_code=status,
                retry_after=parse_retry_after(exc.response.headers),
                retryable=status in RETRYABLE_STATUS,
            )
        return ModelAPIError(f"{where}: {exc}")

    async def count_tokens(self, messages: Sequence[Message], tools: Sequence[dict[str, Any]]) -> int:
        """Prompt tokens, plus an allowance for message and tool formatting.

        Text is counted exactly with tiktoken for OpenAI's models when it can load their encoding,
        else estimated conservatively.
        """
        encoding = await _encoding(self.name) if self._is_openai else None

        def count(text: str) -> int:
            return len(encoding.encode(text, disallowed_special=())) if encoding else estimate_tokens(text)

        wire = self.build_messages(messages, tools)
        total = _TOKENS_PER_REPLY + sum(count(_wire_text(m)) + _TOKENS_PER_MESSAGE for m in wire)
        if self.profile.tool_mode == "envelope":
            return total + count(compact_json(envelope_schema(tools)))
        return total + sum(count(compact_json(t)) + _TOKENS_PER_TOOL for t in tools)


_ENCODINGS: dict[str, Any] = {}


async def _encoding(model: str) -> Any:
    """The tiktoken encoding for an OpenAI model, or None; the outcome is cached per model name."""
    if model not in _ENCODINGS:
        _ENCODINGS[model] = await asyncio.to_thread(_load_encoding, model)
    return _ENCODINGS[model]


def _load_encoding(model: str) -> Any:
    try:
        import tiktoken

        return tiktoken.encoding_for_model(model)
    except Exception:  # not installed, an unknown model, or no network to fetch the encoding file
        return None


def _wire_text(message: dict[str, Any]) -> str:
    parts = [str(message.get("content") or "")]
    for call in message.get("tool_calls") or []:
        parts.extend((call["id"], call["function"]["name"], call["function"]["arguments"]))
    return "\n".join(parts)


def _error_detail(exc: openai.APIStatusError) -> str:
    body = exc.body
    if isinstance(body, dict):
        inner = body.get("error", body)
        if isinstance(inner, dict) and inner.get("message"):
            return str(inner["message"])
        if isinstance(inner, str):
            return inner
    return str(exc.message)


def _native_message(message: Message) -> dict[str, Any]:
    if isinstance(message, SystemMessage | UserMessage):
        return {"role": message.role, "content": message.content}
    if isinstance(message, ToolMessage):
        content = f"Error: {message.content}" if message.is_error else message.content
        return {"role": "tool", "tool_call_id": message.call_id, "content": content}
    out: dict[str, Any] = {"role": "assistant", "content": message.content}
    if message.tool_calls:
        out["tool_calls"] = [
            {
                "id": call.id,
                "type": "function",
                "function": {"name": call.name, "arguments": arguments_text(call, compact=False)},
            }
            for call in message.tool_calls
        ]
    elif message.content is None:
        out["content"] = ""
    return out


def ollama_model(name: str, *, profile: ModelProfile | None = None) -> OpenAIModel:
    """A model served by Ollama at `OLLAMA_HOST` (default `http://127.0.0.1:11434`), through its OpenAI API.

    Args:
        name: the Ollama model name (`qwen2.5:0.5b`).
        profile: tool mode, context window and output budget; default native.
    """
    host = os.environ.get("OLLAMA_HOST") or "http://127.0.0.1:11434"
    if "://" not in host:
        host = f"http://{host}"
    return OpenAIModel(name, base_url=host.rstrip("/") + "/v1", api_key="ollama", profile=profile)
