"""OpenAIModel against the real `openai` SDK, with the provider's HTTP faked by a MockTransport."""

from __future__ import annotations

import asyncio
import datetime
import decimal
import enum
import gc
import json
from collections.abc import Iterator
from typing import Any, Literal

import httpx2
import openai
import pydantic
import pytest

from keel.messages import AssistantMessage, Message, SystemMessage, ToolCall, ToolMessage, UserMessage
from keel.models import ModelProfile, resolve_model
from keel.models._errors import ModelAPIError
from keel.models.openai import (
    FINAL_ANSWER,
    RAW_ARGUMENTS,
    OpenAIModel,
    envelope_prompt,
    envelope_schema,
    ollama_model,
    parse_envelope,
)
from keel.testing import CompletionRequest, completions_server
from keel.tools import ToolArgumentsError, tool

ENVELOPE = ModelProfile(tool_mode="envelope", context_window=8192, max_output_tokens=256)


@tool
def add(a: int, b: int) -> int:
    """Add two integers.

    Args:
        a: the first number.
        b: the second number.
    """
    return a + b


@tool
def give_up(reason: str) -> str:
    """Stop because the task cannot be done.

    Args:
        reason: why.
    """
    return reason


class Color(enum.Enum):
    RED = "red"
    BLUE = "blue"


class Address(pydantic.BaseModel):
    street: str
    zip_code: str | None = None


class Person(pydantic.BaseModel):
    name: str
    address: Address
    friends: list[Person] = []


@tool
def register(
    person: Person,
    color: Color,
    amount: decimal.Decimal,
    when: datetime.datetime,
    day: datetime.date,
    note: str | None = None,
    tags: list[str] | None = None,
    counts: dict[str, int] | None = None,
    mode: Literal["fast", "slow"] = "fast",
) -> str:
    """Register a person."""
    return "ok"


@tool
def ship(to: Address) -> str:
    """Ship to an address (a second tool with its own `Address` definition).

    Args:
        to: where.
    """
    return "ok"


def completion(message: dict[str, Any], *, finish: str = "stop", prompt: int = 11, output: int = 7) -> dict[str, Any]:
    return {
        "id": "chatcmpl-1",
        "object": "chat.completion",
        "created": 1,
        "model": "served-model",
        "choices": [{"index": 0, "message": {"role": "assistant", **message}, "finish_reason": finish}],
        "usage": {"prompt_tokens": prompt, "completion_tokens": output, "total_tokens": prompt + output},
    }


class Fake:
    """A provider: records each request body and answers with the next canned response."""

    def __init__(self, *answers: dict[str, Any] | httpx2.Response | Exception) -> None:
        self.answers = list(answers)
        self.bodies: list[dict[str, Any]] = []
        self.requests: list[httpx2.Request] = []

    def __call__(self, request: httpx2.Request) -> httpx2.Response:
        self.requests.append(request)
        self.bodies.append(json.loads(request.content))
        answer = self.answers.pop(0)
        if isinstance(answer, Exception):
            raise answer
        if isinstance(answer, httpx2.Response):
            return answer
        return httpx2.Response(200, json=answer)


def make(fake: Fake, *, base_url: str = "http://provider.test/v1", **kwargs: Any) -> OpenAIModel:
    client = openai.AsyncOpenAI(
        api_key="sk-test",
        base_url=base_url,
        max_retries=0,
        http_client=httpx2.AsyncClient(transport=httpx2.MockTransport(fake)),
    )
    return OpenAIModel("gpt-test", client=client, **kwargs)


TOOLS = [add.spec(), give_up.spec()]


async def test_native_request_converts_messages_and_tools() -> None:
    fake = Fake(completion({"content": "done"}))
    model = make(fake, temperature=0.2)
    history: list[Message] = [
        SystemMessage("Be brief."),
        UserMessage("add 1 and 2"),
        AssistantMessage("Adding.", [ToolCall("add", {"a": 1, "b": 2}, "call_1")]),
        ToolMessage("call_1", "add", "3"),
        ToolMessage("call_2", "add", "add: argument 'a' is required", is_error=True),
    ]
    await model.request(history, TOOLS, max_tokens=50)
    body = fake.bodies[0]
    assert body["model"] == "gpt-test"
    assert body["max_tokens"] == 50
    assert body["temperature"] == 0.2
    assert body["tools"][0] == {
        "type": "function",
        "function": {"name": "add", "description": "Add two integers.", "parameters": add.parameters},
    }
    assert body["messages"] == [
        {"role": "system", "content": "Be brief."},
        {"role": "user", "content": "add 1 and 2"},
        {
            "role": "assistant",
            "content": "Adding.",
            "tool_calls": [
                {"id": "call_1", "type": "function", "function": {"name": "add", "arguments": '{"a": 1, "b": 2}'}}
            ],
        },
        {"role": "tool", "tool_call_id": "call_1", "content": "3"},
        {"role": "tool", "tool_call_id": "call_2", "content": "Error: add: argument 'a' is required"},
    ]


async def test_openai_api_gets_max_completion_tokens() -> None:
    fake = Fake(completion({"content": "hi"}))
    await make(fake, base_url="https://api.openai.com/v1").request([UserMessage("hi")], [])
    assert fake.bodies[0]["max_completion_tokens"] == 4096
    assert "max_tokens" not in fake.bodies[0]
    assert "tools" not in fake.bodies[0]


async def test_native_response_round_trips_through_history() -> None:
    calls = [
        {"id": "call_a", "type": "function", "function": {"name": "add", "arguments": '{"a": 2, "b": 3}'}},
        {"id": "call_b", "type": "function", "function": {"name": "give_up", "arguments": '{"reason": "x"}'}},
    ]
    fake = Fake(
        completion({"content": None, "tool_calls": calls}, finish="tool_calls", prompt=20, output=9),
        completion({"content": "5"}),
    )
    model = make(fake)
    response = await model.request([UserMessage("2+3?")], TOOLS)
    assert response.message == AssistantMessage(
        None, [ToolCall("add", {"a": 2, "b": 3}, "call_a"), ToolCall("give_up", {"reason": "x"}, "call_b")]
    )
    assert (response.usage.input_tokens, response.usage.output_tokens, response.usage.requests) == (20, 9, 1)
    assert response.finish_reason == "tool_calls"
    assert response.model == "served-model"
    assert response.raw_text is None

    history = [UserMessage("2+3?"), response.message, ToolMessage("call_a", "add", "5")]
    await model.request(history, TOOLS)
    sent = fake.bodies[1]["messages"][1]
    assert [c["id"] for c in sent["tool_calls"]] == ["call_a", "call_b"]
    assert [json.loads(c["function"]["arguments"]) for c in sent["tool_calls"]] == [{"a": 2, "b": 3}, {"reason": "x"}]
    assert sent["content"] is None


async def test_malformed_arguments_are_kept_raw_and_rejected_by_validation() -> None:
    calls = [
        {"id": "c1", "type": "function", "function": {"name": "add", "arguments": '{"a": 1, "b":'}},
        {"id": "c2", "type": "function", "function": {"name": "give_up", "arguments": ""}},
        {"id": "c3", "type": "function", "function": {"name": "add", "arguments": "[1, 2]"}},
    ]
    fake = Fake(completion({"content": None, "tool_calls": calls}, finish="tool_calls"), completion({"content": "ok"}))
    model = make(fake)
    response = await model.request([UserMessage("go")], TOOLS)
    first, second, third = response.message.tool_calls
    assert first.arguments == {RAW_ARGUMENTS: '{"a": 1, "b":'}
    assert second.arguments == {}
    assert third.arguments == {RAW_ARGUMENTS: "[1, 2]"}
    with pytest.raises(ToolArgumentsError, match="unexpected argument '__raw__'"):
        add.validate(first.arguments)
    # The model sees exactly what it wrote.
    await model.request([UserMessage("go"), response.message], TOOLS)
    sent = fake.bodies[1]["messages"][1]["tool_calls"]
    assert [c["function"]["arguments"] for c in sent] == ['{"a": 1, "b":', "{}", "[1, 2]"]


# --- envelope mode ---------------------------------------------------------------------------------


async def test_envelope_request_and_reply() -> None:
    reply = '{"tool": "add", "arguments": {"a": 4, "b": 5}}'
    fake = Fake(completion({"content": reply}))
    model = make(fake, profile=ENVELOPE)
    response = await model.request([SystemMessage("You add."), UserMessage("4+5?")], TOOLS)
    body = fake.bodies[0]
    assert "tools" not in body
    assert body["response_format"] == {
        "type": "json_schema",
        "json_schema": {"name": "action", "strict": True, "schema": envelope_schema(TOOLS)},
    }
    system = body["messages"][0]
    assert system["role"] == "system"
    assert system["content"].startswith("You add.\n\n")
    assert system["content"].endswith(envelope_prompt(TOOLS))
    assert body["max_tokens"] == 256
    assert response.message == AssistantMessage(None, [ToolCall("add", {"a": 4, "b": 5})])
    assert response.raw_text == reply


async def test_envelope_final_answer_becomes_text() -> None:
    reply = json.dumps({"tool": FINAL_ANSWER, "arguments": {"answer": "It is 9."}})
    fake = Fake(completion({"content": reply}))
    response = await make(fake, profile=ENVELOPE).request([UserMessage("4+5?")], TOOLS)
    assert response.message == AssistantMessage("It is 9.")
    assert response.raw_text == reply
    assert fake.bodies[0]["messages"][0]["role"] == "system"


def test_envelope_schema_branches() -> None:
    schema = envelope_schema(TOOLS)
    names = [b["properties"]["tool"]["const"] for b in schema["anyOf"]]
    assert names == ["add", "give_up", FINAL_ANSWER]
    assert schema["anyOf"][0] == {
        "type": "object",
        "properties": {"tool": {"const": "add"}, "arguments": add.parameters},
        "required": ["tool", "arguments"],
        "additionalProperties": False,
    }
    structured = [*TOOLS, {"name": "final_result", "description": "The result.", "parameters": add.parameters}]
    with_output = envelope_schema(structured)
    assert [b["properties"]["tool"]["const"] for b in with_output["anyOf"]] == ["add", "give_up", "final_result"]
    assert "final_answer" not in envelope_prompt(structured)


def _refs(node: Any) -> Iterator[str]:
    if isinstance(node, dict):
        for key, value in node.items():
            if key == "$ref" and isinstance(value, str):
                yield value
            else:
                yield from _refs(value)
    elif isinstance(node, list):
        for value in node:
            yield from _refs(value)


def test_envelope_schema_hoists_definitions_per_tool() -> None:
    schema = envelope_schema([register.spec(), ship.spec()])
    refs = set(_refs(schema))
    assert refs == {
        "#/$defs/register__Person",
        "#/$defs/register__Address",
        "#/$defs/register__Color",
        "#/$defs/ship__Address",
    }
    for ref in refs:
        assert ref.removeprefix("#/$defs/") in schema["$defs"]
    assert all("$defs" not in branch["properties"]["arguments"] for branch in schema["anyOf"])


@pytest.mark.parametrize(
    "tools",
    [[add.spec(), give_up.spec()], [register.spec(), ship.spec(), give_up.spec()], [register.spec()]],
    ids=["simple", "nested", "single"],
)
def test_llama_cpp_accepts_envelope_schema(tools: list[dict[str, Any]]) -> None:
    import xllamacpp
    grammar = xllamacpp.json_schema_to_grammar(envelope_schema(tools))
    assert isinstance(grammar, str)
    assert grammar


CUT = '{"tool": "add", "arguments": {"a": 1'
NOT_OBJECT = '{"tool": "add", "arguments": 3}'


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ('{"tool": "add", "arguments": {"a": 1, "b": 2}}', AssistantMessage(None, [ToolCall("add", {"a": 1, "b": 2})])),
        ('{"tool": "final_answer", "arguments": {"answer": "hi"}}', AssistantMessage("hi")),
        (CUT, AssistantMessage(None, [ToolCall("add", {RAW_ARGUMENTS: CUT})])),
        ("no json", AssistantMessage(None, [ToolCall("unparsed_reply", {RAW_ARGUMENTS: "no json"})])),
        (NOT_OBJECT, AssistantMessage(None, [ToolCall("add", {RAW_ARGUMENTS: NOT_OBJECT})])),
    ],
)  # fmt: skip
def test_parse_envelope(text: str, expected: AssistantMessage) -> None:
    assert parse_envelope(text) == expected


def test_parse_envelope_without_final_answer_treats_it_as_a_tool() -> None:
    text = '{"tool": "final_answer", "arguments": {"answer": "hi"}}'
    assert parse_envelope(text, final_answer=False) == AssistantMessage(
        None, [ToolCall("final_answer", {"answer": "hi"})]
    )


def test_envelope_history() -> None:
    model = OpenAIModel("m", base_url="http://127.0.0.1:1/v1", profile=ENVELOPE)
    history: list[Message] = [
        UserMessage("add 1 and 2, then 3"),
        AssistantMessage(None, [ToolCall("add", {"a": 1, "b": 2}, "call_1")]),
        ToolMessage("call_1", "add", "3"),
        AssistantMessage(None, [ToolCall("add", {RAW_ARGUMENTS: '{"tool": "add", "argu'}, "call_2")]),
        ToolMessage("call_2", "add", "add: unexpected argument '__raw__'; remove it", is_error=True),
        UserMessage("hurry"),
        AssistantMessage("It is 6."),
    ]
    wire = model.build_messages(history, TOOLS)
    assert [m["role"] for m in wire] == ["system", "user", "assistant", "user", "assistant", "user", "assistant"]
    assert wire[0]["content"] == envelope_prompt(TOOLS)
    assert wire[2]["content"] == '{"tool": "add", "arguments": {"a": 1, "b": 2}}'
    assert wire[3]["content"].startswith("Result of add (call_1):\n3\n")
    assert "final_answer" in wire[3]["content"]
    assert wire[4]["content"] == '{"tool": "add", "argu'
    assert wire[5]["content"].startswith("Error from add (call_2):\nadd: unexpected argument '__raw__'; remove it")
    assert wire[5]["content"].endswith("\n\nhurry")
    assert json.loads(wire[6]["content"]) == {"tool": "final_answer", "arguments": {"answer": "It is 6."}}


# --- errors ----------------------------------------------------------------------------------------


def _status(code: int, headers: dict[str, str] | None = None) -> httpx2.Response:
    return httpx2.Response(code, headers=headers, json={"error": {"message": f"server says {code}", "type": "x"}})


@pytest.mark.parametrize(
    ("answer", "status", "retryable", "words"),
    [
        (_status(401), 401, False, ["OPENAI_API_KEY", "server says 401"]),
        (_status(404), 404, False, ["model name"]),
        (_status(400), 400, False, ["rejected the request", "server says 400"]),
        (_status(429, {"retry-after": "7"}), 429, True, ["rate limited"]),
        (_status(503), 503, True, ["retry later"]),
        (httpx2.ConnectError("refused"), None, True, ["cannot connect", "OPENAI_BASE_URL"]),
        (httpx2.ReadTimeout("slow"), None, True, ["timed out"]),
    ],
    ids=["401", "404", "400", "429", "503", "connect", "timeout"],
)
async def test_errors_are_mapped(
    answer: httpx2.Response | Exception, status: int | None, retryable: bool, words: list[str]
) -> None:
    model = make(Fake(answer))
    with pytest.raises(ModelAPIError) as info:
        await model.request([UserMessage("hi")], [])
    error = info.value
    assert "'gpt-test'" in str(error) and "http://provider.test/v1" in str(error)
    for word in words:
        assert word in str(error)
    assert error.status_code == status
    assert error.retryable is retryable
    assert isinstance(error.__cause__, openai.OpenAIError)
    if status == 429:
        assert error.retry_after == 7.0


async def test_an_answer_that_is_not_json_is_a_retryable_model_error() -> None:
    cut = httpx2.Response(200, content=b'{"choices": [', headers={"content-type": "application/json"})
    model = make(Fake(cut))
    with pytest.raises(ModelAPIError, match="not valid JSON") as info:
        await model.request([UserMessage("hi")], [])
    assert "'gpt-test'" in str(info.value) and "OPENAI_BASE_URL" in str(info.value)
    assert info.value.retryable is True and info.value.status_code is None
    assert isinstance(info.value.__cause__, json.JSONDecodeError)


async def test_missing_key_names_the_fix(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("OPENAI_API_KEY", raising=False)
    monkeypatch.delenv("OPENAI_BASE_URL", raising=False)
    model = resolve_model("openai:gpt-4o-mini")  # construction needs no key
    with pytest.raises(ModelAPIError, match="set OPENAI_API_KEY"):
        await model.request([UserMessage("hi")], [])


async def test_count_tokens_is_an_upper_bound_and_grows() -> None:
    model = OpenAIModel("gpt-4o-mini", base_url="https://api.openai.com/v1")
    short = await model.count_tokens([UserMessage("hi")], [])
    longer = await model.count_tokens([UserMessage("hi " * 200)], TOOLS)
    assert 0 < short < longer
    assert longer >= 200
    envelope = OpenAIModel("m", base_url="http://127.0.0.1:1/v1", profile=ENVELOPE)
    assert await envelope.count_tokens([UserMessage("hi")], TOOLS) > len(envelope_prompt(TOOLS)) // 4


def test_ollama_model(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("OLLAMA_HOST", "127.0.0.1:9999")
    model = ollama_model("qwen2.5:0.5b")
    assert model.base_url == "http://127.0.0.1:9999/v1"
    assert model.name == "qwen2.5:0.5b"
    monkeypatch.delenv("OLLAMA_HOST")
    assert resolve_model("ollama:llama3").base_url == "http://127.0.0.1:11434/v1"  # type: ignore[attr-defined]


# --- a real HTTP round trip on loopback ------------------------------------------------------------


@pytest.fixture
def local_server() -> Iterator[tuple[str, list[dict[str, Any]]]]:
    seen: list[dict[str, Any]] = []

    def answer(request: CompletionRequest) -> dict[str, Any]:
        seen.append({"path": request.path, "auth": request.headers.get("authorization"), "body": request.body})
        call = {"id": "call_9", "type": "function", "function": {"name": "add", "arguments": '{"a":1,"b":1}'}}
        return completion({"content": None, "tool_calls": [call]}, finish="tool_calls")

    with completions_server(answer) as url:
        yield url, seen


async def test_native_round_trip_over_loopback(
    local_server: tuple[str, list[dict[str, Any]]], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv("OPENAI_API_KEY", raising=False)
    url, seen = local_server
    model = OpenAIModel("local-test", base_url=url)
    try:
        response = await model.request([UserMessage("1+1")], TOOLS)
    finally:
        await model.aclose()
    assert response.message.tool_calls == [ToolCall("add", {"a": 1, "b": 1}, "call_9")]
    assert seen[0]["path"] == "/v1/chat/completions"
    assert seen[0]["auth"] == "Bearer not-needed"
    assert seen[0]["body"]["tools"][0]["function"]["name"] == "add"


def test_a_client_per_event_loop_closed_with_its_loop(
    local_server: tuple[str, list[dict[str, Any]]], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv("OPENAI_API_KEY", raising=False)
    url, seen = local_server
    model = OpenAIModel("local-test", base_url=url)
    for _ in range(3):  # as repeated run_sync calls do: a new loop each time
        response = asyncio.run(model.request([UserMessage("1+1")], TOOLS))
        assert response.message.tool_calls[0].id == "call_9"
        assert len(model._clients) == 0
    gc.collect()  # an unclosed socket would warn here, and warnings are errors
    assert len(seen) == 3
