"""AnthropicModel against the real `anthropic` SDK, with the API's HTTP faked by a MockTransport."""

from __future__ import annotations

import importlib.util
import json
from typing import Any

import anthropic
import httpx2
import pytest

from keel.exceptions import ConfigError
from keel.messages import AssistantMessage, Message, SystemMessage, ToolCall, ToolMessage, UserMessage
from keel.models import resolve_model
from keel.models._errors import ModelAPIError
from keel.models.anthropic import AnthropicModel
from keel.tools import tool


@tool
def add(a: int, b: int) -> int:
    """Add two integers.

    Args:
        a: the first number.
        b: the second number.
    """
    return a + b


TOOLS = [add.spec()]


def reply(content: list[dict[str, Any]], *, stop: str = "end_turn", **usage: int) -> dict[str, Any]:
    return {
        "id": "msg_1",
        "type": "message",
        "role": "assistant",
        "model": "claude-served",
        "content": content,
        "stop_reason": stop,
        "stop_sequence": None,
        "usage": {"input_tokens": 10, "output_tokens": 5, **usage},
    }


class Fake:
    def __init__(self, *answers: dict[str, Any] | httpx2.Response | Exception) -> None:
        self.answers = list(answers)
        self.bodies: list[dict[str, Any]] = []
        self.paths: list[str] = []

    def __call__(self, request: httpx2.Request) -> httpx2.Response:
        self.paths.append(request.url.path)
        self.bodies.append(json.loads(request.content))
        answer = self.answers.pop(0)
        if isinstance(answer, Exception):
            raise answer
        if isinstance(answer, httpx2.Response):
            return answer
        return httpx2.Response(200, json=answer)


def make(fake: Fake, **kwargs: Any) -> AnthropicModel:
    client = anthropic.AsyncAnthropic(
        api_key="sk-ant-test",
        base_url="http://anthropic.test",
        max_retries=0,
        http_client=httpx2.AsyncClient(transport=httpx2.MockTransport(fake)),
    )
    return AnthropicModel("claude-test", client=client, **kwargs)


async def test_request_converts_messages_and_tools() -> None:
    fake = Fake(reply([{"type": "text", "text": "ok"}]))
    model = make(fake, max_tokens=300)
    history: list[Message] = [
        SystemMessage("Be brief."),
        UserMessage("add 1 and 2, and 3 and 4"),
        AssistantMessage(
            "Adding.", [ToolCall("add", {"a": 1, "b": 2}, "toolu_1"), ToolCall("add", {"a": 3}, "toolu_2")]
        ),
        ToolMessage("toolu_1", "add", "3"),
        ToolMessage("toolu_2", "add", "add: argument 'b' is required", is_error=True),
        UserMessage("thanks"),
        SystemMessage("Answer in English."),
    ]
    await model.request(history, TOOLS)
    body = fake.bodies[0]
    assert fake.paths == ["/v1/messages"]
    assert body["model"] == "claude-test"
    assert body["max_tokens"] == 300
    assert body["system"] == "Be brief.\n\nAnswer in English."
    assert body["tools"] == [{"name": "add", "description": "Add two integers.", "input_schema": add.parameters}]
    assert body["messages"] == [
        {"role": "user", "content": [{"type": "text", "text": "add 1 and 2, and 3 and 4"}]},
        {
            "role": "assistant",
            "content": [
                {"type": "text", "text": "Adding."},
                {"type": "tool_use", "id": "toolu_1", "name": "add", "input": {"a": 1, "b": 2}},
                {"type": "tool_use", "id": "toolu_2", "name": "add", "input": {"a": 3}},
            ],
        },
        {
            "role": "user",
            "content": [
                {"type": "tool_result", "tool_use_id": "toolu_1", "content": "3"},
                {
                    "type": "tool_result",
                    "tool_use_id": "toolu_2",
                    "content": "add: argument 'b' is required",
                    "is_error": True,
                },
                {"type": "text", "text": "thanks"},
            ],
        },
    ]


async def test_response_round_trips_through_history() -> None:
    blocks = [
        {"type": "text", "text": "Let me add."},
        {"type": "tool_use", "id": "toolu_9", "name": "add", "input": {"a": 2, "b": 3}},
    ]
    fake = Fake(
        reply(blocks, stop="tool_use", cache_read_input_tokens=4, cache_creation_input_tokens=1),
        reply([{"type": "text", "text": "5"}], stop="max_tokens"),
    )
    model = make(fake)
    response = await model.request([UserMessage("2+3?")], TOOLS)
    assert response.message == AssistantMessage("Let me add.", [ToolCall("add", {"a": 2, "b": 3}, "toolu_9")])
    assert (response.usage.input_tokens, response.usage.output_tokens, response.usage.requests) == (15, 5, 1)
    assert response.finish_reason == "tool_calls"
    assert response.model == "claude-served"

    history = [UserMessage("2+3?"), response.message, ToolMessage("toolu_9", "add", "5")]
    second = await model.request(history, TOOLS)
    assert fake.bodies[1]["messages"][1] == {"role": "assistant", "content": blocks}
    assert second.message == AssistantMessage("5")
    assert second.finish_reason == "length"
    assert fake.bodies[1]["max_tokens"] == 4096


def _status(code: int, headers: dict[str, str] | None = None) -> httpx2.Response:
    body = {"type": "error", "error": {"type": "some_error", "message": f"api says {code}"}}
    return httpx2.Response(code, headers=headers, json=body)


@pytest.mark.parametrize(
    ("answer", "status", "retryable", "words"),
    [
        (_status(401), 401, False, ["ANTHROPIC_API_KEY", "api says 401"]),
        (_status(404), 404, False, ["model name"]),
        (_status(429, {"retry-after": "3"}), 429, True, ["rate limited"]),
        (_status(529), 529, True, ["overloaded"]),
        (httpx2.ConnectError("refused"), None, True, ["cannot connect"]),
        (httpx2.ReadTimeout("slow"), None, True, ["timed out"]),
    ],
    ids=["401", "404", "429", "529", "connect", "timeout"],
)
async def test_errors_are_mapped(
    answer: httpx2.Response | Exception, status: int | None, retryable: bool, words: list[str]
) -> None:
    with pytest.raises(ModelAPIError) as info:
        await make(Fake(answer)).request([UserMessage("hi")], [])
    error = info.value
    assert "'claude-test'" in str(error) and "http://anthropic.test" in str(error)
    for word in words:
        assert word in str(error)
    assert error.status_code == status
    assert error.retryable is retryable
    assert isinstance(error.__cause__, anthropic.AnthropicError)
    if status == 429:
        assert error.retry_after == 3.0


async def test_missing_key_names_the_fix(monkeypatch: pytest.MonkeyPatch, tmp_path: Any) -> None:
    for name in ("ANTHROPIC_API_KEY", "ANTHROPIC_AUTH_TOKEN", "ANTHROPIC_PROFILE"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("ANTHROPIC_CONFIG_DIR", str(tmp_path))
    model = resolve_model("anthropic:claude-test")  # construction needs no key
    with pytest.raises(ModelAPIError, match="set ANTHROPIC_API_KEY"):
        await model.request([UserMessage("hi")], [])


def test_missing_package_names_the_extra(monkeypatch: pytest.MonkeyPatch) -> None:
    real = importlib.util.find_spec
    monkeypatch.setattr(importlib.util, "find_spec", lambda name, *a: None if name == "anthropic" else real(name, *a))
    with pytest.raises(ConfigError, match=r"pip install 'keel\[anthropic\]'"):
        AnthropicModel("claude-test")


async def test_count_tokens() -> None:
    model = make(Fake({"input_tokens": 42}))
    estimate = await model.count_tokens([UserMessage("hello " * 50)], TOOLS)
    assert estimate > 100
    exact = make(Fake({"input_tokens": 42}), count_with_api=True)
    assert await exact.count_tokens([SystemMessage("s"), UserMessage("hi")], TOOLS) == 42
