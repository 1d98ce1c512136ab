"""FaultyTransport on a real loopback HTTP server: the OpenAI model, wrapped in Resilient, gets every answer."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import httpx
import openai
import pytest

from keel.messages import ToolCall, UserMessage
from keel.models.openai import OpenAIModel
from keel.recovery import Resilient, RetryPolicy
from keel.testing import CompletionRequest, FakeClock, FaultyTransport, completions_server

TOOLS = [{"name": "add", "description": "Add.", "parameters": {"type": "object", "properties": {}}}]


@pytest.fixture
def server() -> Iterator[tuple[str, list[int]]]:
    served: list[int] = []

    def answer(request: CompletionRequest) -> dict[str, Any]:
        served.append(1)
        call = {"id": "c1", "type": "function", "function": {"name": "add", "arguments": '{"a":1,"b":2}'}}
        return {
            "id": "x",
            "object": "chat.completion",
            "created": 1,
            "model": "served",
            "choices": [
                {"index": 0, "message": {"role": "assistant", "tool_calls": [call]}, "finish_reason": "tool_calls"}
            ],
            "usage": {"prompt_tokens": 5, "completion_tokens": 3, "total_tokens": 8},
        }

    with completions_server(answer) as url:
        yield url, served


async def test_injected_http_faults_are_retried_until_every_request_is_answered(
    server: tuple[str, list[int]],
) -> None:
    url, served = server
    transport = FaultyTransport(httpx.AsyncHTTPTransport(), rate=0.3, seed=11, retry_after=4)
    client = openai.AsyncOpenAI(
        base_url=url, api_key="k", max_retries=0, http_client=httpx.AsyncClient(transport=transport)
    )
    clock = FakeClock()
    model = Resilient(OpenAIModel("served", client=client), retry=RetryPolicy(attempts=10), breakers=False, clock=clock)
    try:
        for _ in range(60):
            response = await model.request([UserMessage("1+2")], TOOLS)
            assert response.message.tool_calls == [ToolCall("add", {"a": 1, "b": 2}, "c1")]
    finally:
        await client.close()
    injected = transport.injected.faults
    assert set(injected) == {"429", "5xx", "timeout", "disconnect", "malformed", "truncated"}
    assert transport.injected.passed == 60  # each answer came from a request that got through, none twice
    assert len(served) == 60 + injected.count("truncated")  # a truncated answer was served, then cut
    assert clock.sleeps.count(4.0) >= injected.count("429")  # the Retry-After header was honoured
    assert len(clock.sleeps) == len(injected)
