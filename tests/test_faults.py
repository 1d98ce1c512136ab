"""FaultyTransport on a real loopback HTTP server: the OpenAI model, wrapped in Resilient, gets every answer."""

from __future__ import annotations

import http.server
import json
import threading
from collections.abc import Iterator
from typing import Any

import httpx
import openai
import pytest

from keel.messages import ToolCall, UserMessage
from keel.models.openai import OpenAIModel
from keel.recovery import Resilient, RetryPolicy
from keel.testing import FakeClock, FaultyTransport

TOOLS = [{"name": "add", "description": "Add.", "parameters": {"type": "object", "properties": {}}}]


@pytest.fixture
def server() -> Iterator[tuple[str, list[int]]]:
    served: list[int] = []

    class Handler(http.server.BaseHTTPRequestHandler):
        def do_POST(self) -> None:  # noqa: N802 - the stdlib's name
            json.loads(self.rfile.read(int(self.headers["Content-Length"])))
            served.append(1)
            call = {"id": "c1", "type": "function", "function": {"name": "add", "arguments": '{"a":1,"b":2}'}}
            body = {
                "id": "x",
                "object": "chat.completion",
                "created": 1,
                "model": "served",
                "choices": [
                    {"index": 0, "message": {"role": "assistant", "tool_calls": [call]}, "finish_reason": "tool_calls"}
                ],
                "usage": {"prompt_tokens": 5, "completion_tokens": 3, "total_tokens": 8},
            }
            data = json.dumps(body).encode()
            self.send_response(200)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(data)))
            self.end_headers()
            self.wfile.write(data)

        def log_message(self, format: str, *args: Any) -> None:
            pass

    httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    thread = threading.Thread(target=httpd.serve_forever, args=(0.05,), daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{httpd.server_address[1]}/v1", served
    finally:
        httpd.shutdown()
        httpd.server_close()
        thread.join()


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
