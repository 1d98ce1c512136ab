"""MCP servers' tools in keel agents: listing, calls, validation, policies, reconnects, bad input."""

from __future__ import annotations

import sys
import threading
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

import pytest
from mcp_helpers import SERVER, HttpServer, ServerFiles, kill, stdio_command, wait_for

from keel import Agent, ConfigError, Runtime, ToolCall, tool
from keel.mcp import ElicitationRequest, MCPTool, MCPTools, ToolOptions
from keel.messages import Message, ToolMessage
from keel.models import ScriptedModel
from keel.policies.approvals import RequireApproval

MEMORY = Runtime.in_memory()


@pytest.fixture
def servers() -> Iterator[list[MCPTools]]:
    """MCPTools made by a test; their sessions (and stdio processes) are closed after it."""
    made: list[MCPTools] = []
    yield made
    for s in made:
        s.close()


@pytest.fixture(scope="module")
def shared(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[MCPTools, ServerFiles]]:
    """One stdio server for the tests that do not kill it (starting one costs a second or two)."""
    folder = tmp_path_factory.mktemp("shared")
    files = ServerFiles(folder / "ledger.txt", folder / "hang.pid", {"LEDGER": str(folder / "ledger.txt")})
    toolset = MCPTools(stdio_command(), env=files.env)
    yield toolset, files
    toolset.close()


def stdio(servers: list[MCPTools], files: ServerFiles, **kwargs: Any) -> MCPTools:
    s = MCPTools(stdio_command(), env=files.env, **kwargs)
    servers.append(s)
    return s


def tool_messages(messages: Sequence[Message]) -> list[ToolMessage]:
    return [m for m in messages if isinstance(m, ToolMessage)]


def test_tools_are_listed_with_their_schemas_and_annotations(shared: tuple[MCPTools, ServerFiles]) -> None:
    toolset, files = shared
    tools = {t.name: t for t in toolset.tools()}
    assert set(tools) == {"add", "server_pid", "divide", "quote", "lookup", "charge", "book"}
    add = tools["add"]
    assert isinstance(add, MCPTool) and add.remote_name == "add"
    assert add.parameters["properties"]["a"]["type"] == "integer"
    assert add.parameters["required"] == ["a", "b"]
    assert add.description == "Add two integers."
    # readOnlyHint: no side effects, safe to repeat; an unsafe tool is guarded like any side-effect tool
    assert (add.side_effects, add.idempotent) == (False, True)
    assert (tools["charge"].side_effects, tools["charge"].idempotent) == (True, False)


def test_flags_can_be_overridden_at_configuration(servers: list[MCPTools], files: ServerFiles) -> None:
    toolset = stdio(
        servers,
        files,
        prefix="shop_",
        include=["charge", "add"],
        idempotent=True,
        tool_options={
            "add": ToolOptions(side_effects=True, idempotent=False, name="plus", timeout=5),
            "charge": ToolOptions(requires_approval=True),
        },
    )
    agent = Agent("shop", ScriptedModel(["-"]), tools=[toolset])
    tools = agent.tools_by_name
    assert set(tools) == {"plus", "shop_charge"}
    assert (tools["plus"].side_effects, tools["plus"].idempotent, tools["plus"].timeout) == (True, False, 5)
    assert (tools["shop_charge"].side_effects, tools["shop_charge"].idempotent) == (True, True)
    assert tools["shop_charge"].requires_approval and not tools["plus"].requires_approval
    assert any(isinstance(p, RequireApproval) for p in agent.policies)  # added for the tool that needs it


async def test_an_agent_calls_the_servers_tools(shared: tuple[MCPTools, ServerFiles]) -> None:
    toolset, files = shared
    model = ScriptedModel(
        [
            [ToolCall("add", {"a": 2, "b": 3}), ToolCall("quote", {"sku": "X-1"})],
            ToolCall("charge", {"account": "A-7", "amount": 12}),
            "Done.",
        ]
    )
    before = files.charges()
    agent = Agent("shop", model, tools=[toolset])
    result = await agent.run("sum, quote, charge", runtime=MEMORY)
    assert result.status == "done", result.error
    msgs = tool_messages(result.messages)
    assert [(m.name, m.is_error) for m in msgs] == [("add", False), ("quote", False), ("charge", False)]
    assert msgs[0].content == "5"
    assert '"price": 9.5' in msgs[1].content  # structured content
    assert msgs[2].content == "charged A-7 12"
    assert files.charges() == [*before, "A-7 12"]


async def test_arguments_are_checked_against_the_servers_schema_before_any_call(
    shared: tuple[MCPTools, ServerFiles],
) -> None:
    toolset, files = shared
    model = ScriptedModel(
        [ToolCall("charge", {"account": "A-7", "amount": "twelve"}), ToolCall("charge", {"account": "A-7"}), "ok"]
    )
    events: list[Any] = []
    before = files.charges()
    result = await Agent("shop", model, tools=[toolset]).run("charge", runtime=MEMORY, on_event=events.append)
    assert result.status == "done"
    problems = [p for e in events if e.kind == "output_rejected" for p in e.data["problems"]]
    assert problems == [
        "charge: argument 'amount' 'twelve' is not of type 'integer'",
        "charge: 'amount' is a required property",
    ]
    assert files.charges() == before  # neither malformed call reached the server


async def test_an_error_from_the_server_reaches_the_model(shared: tuple[MCPTools, ServerFiles]) -> None:
    toolset, files = shared
    seen: list[str] = []

    def script(messages: Sequence[Message], tools: Sequence[dict[str, Any]]) -> Any:
        last = messages[-1]
        if isinstance(last, ToolMessage):
            seen.append(last.content)
            return ToolCall("divide", {"a": 1, "b": 4}) if last.is_error else f"it is {last.content}"
        return ToolCall("divide", {"a": 1, "b": 0})

    result = await Agent("calc", ScriptedModel(script), tools=[toolset]).run("1/0", runtime=MEMORY)
    assert result.status == "done" and result.output == "it is 0.25"
    assert seen[0] == "Error executing tool divide: b must not be zero; pass a non-zero divisor"
    assert [m.is_error for m in tool_messages(result.messages)] == [True, False]


async def test_policies_govern_mcp_calls_like_any_tool(shared: tuple[MCPTools, ServerFiles]) -> None:
    toolset, files = shared
    before = files.charges()
    model = ScriptedModel([ToolCall("charge", {"account": "A-7", "amount": 12}), "never"])
    policies = [RequireApproval(tools={"charge"})]
    result = await Agent("shop", model, tools=[toolset], policies=policies).run("charge", runtime=MEMORY)
    assert result.status == "waiting"
    assert "approval" in (result.error or "")
    assert files.charges() == before


def test_an_agent_is_reused_across_runs_on_different_event_loops(shared: tuple[MCPTools, ServerFiles]) -> None:
    toolset, _ = shared
    agent = Agent("calc", ScriptedModel([ToolCall("add", {"a": 1, "b": 1}), "two"]), tools=[toolset])
    opened = toolset.connection.opened
    for _ in range(2):  # each run_sync has its own event loop; the MCP session outlives them
        result = agent.run_sync("1+1", runtime=MEMORY)
        assert result.status == "done" and tool_messages(result.messages)[0].content == "2"
    assert toolset.connection.opened == opened  # no new session: the one session served both loops


async def test_concurrent_runs_share_one_session(shared: tuple[MCPTools, ServerFiles]) -> None:
    import asyncio

    toolset, _ = shared
    toolset.tools()  # listed (and connected) before the runs start
    opened = toolset.connection.opened

    async def one(i: int) -> str:
        model = ScriptedModel([ToolCall("add", {"a": i, "b": 100}), "ok"])
        result = await Agent("calc", model, tools=[toolset]).run(f"add {i}", runtime=MEMORY)
        assert result.status == "done", result.error
        return tool_messages(result.messages)[0].content

    assert await asyncio.gather(*(one(i) for i in range(8))) == [str(i + 100) for i in range(8)]
    assert toolset.connection.opened == opened


async def test_a_server_killed_between_calls_is_reconnected(servers: list[MCPTools], files: ServerFiles) -> None:
    killed: list[int] = []

    def script(messages: Sequence[Message], tools: Sequence[dict[str, Any]]) -> Any:
        pids = [int(m.content) for m in tool_messages(messages)]
        if len(pids) == 1 and not killed:
            kill(pids[0])
            killed.append(pids[0])
        return ToolCall("server_pid", {}) if len(pids) < 2 else "done"

    toolset = stdio(servers, files)
    agent = Agent("ops", ScriptedModel(script), tools=[toolset], policies=[])  # no loop guard: the call repeats
    result = await agent.run("pids", runtime=MEMORY)
    assert result.status == "done", result.error
    first, second = (int(m.content) for m in tool_messages(result.messages))
    assert killed == [first] and second != first
    assert toolset.connection.opened == 2


def kill_when_hung(files: ServerFiles) -> threading.Thread:
    """Kill the server once it has a call in flight (it writes its pid to the hang file)."""

    def run() -> None:
        wait_for(lambda: files.hang.exists() and files.hang.read_text().strip(), "a call in flight")
        kill(int(files.hang.read_text()))

    thread = threading.Thread(target=run, daemon=True)
    thread.start()
    return thread


async def test_a_safe_call_in_flight_when_the_server_dies_is_sent_again(
    servers: list[MCPTools], files: ServerFiles
) -> None:
    files.env["HANG_FILE"] = str(files.hang)
    toolset = stdio(servers, files)
    model = ScriptedModel([ToolCall("lookup", {"key": "k1"}), "found"])
    killer = kill_when_hung(files)
    result = await Agent("ops", model, tools=[toolset]).run("look k1 up", runtime=MEMORY)
    killer.join(5)
    assert result.status == "done", result.error
    assert [m.content for m in tool_messages(result.messages)] == ["value-of-k1"]
    assert toolset.connection.opened == 2


async def test_a_side_effect_call_in_flight_when_the_server_dies_is_not_repeated(
    servers: list[MCPTools], files: ServerFiles
) -> None:
    files.env["HANG_FILE"] = str(files.hang)
    toolset = stdio(servers, files)
    model = ScriptedModel([ToolCall("charge", {"account": "A-7", "amount": 12}), "charged"])
    killer = kill_when_hung(files)
    result = await Agent("shop", model, tools=[toolset]).run("charge", runtime=MEMORY)
    killer.join(5)
    assert result.status == "needs_attention"
    assert "may or may not have taken effect" in (result.error or "")
    assert files.charges() == ["A-7 12"]  # charged once, and not sent again


async def test_streamable_http_calls_and_reconnect_after_a_restart(
    servers: list[MCPTools], http_server: HttpServer
) -> None:
    toolset = MCPTools(http_server.url)
    servers.append(toolset)

    def script(messages: Sequence[Message], tools: Sequence[dict[str, Any]]) -> Any:
        done = tool_messages(messages)
        if len(done) == 1:  # restart the server between the two calls: its sessions are gone
            http_server.stop()
            http_server.start()
        return ToolCall("server_pid", {}) if len(done) < 2 else "done"

    agent = Agent("ops", ScriptedModel(script), tools=[toolset], policies=[])  # no loop guard: the call repeats
    result = await agent.run("pids", runtime=MEMORY)
    assert result.status == "done", result.error
    first, second = (int(m.content) for m in tool_messages(result.messages))
    assert first != second
    assert toolset.connection.opened == 2


async def test_streamable_http_call_in_flight_during_a_restart_is_sent_again(
    servers: list[MCPTools], files: ServerFiles, http_server: HttpServer
) -> None:
    http_server.stop()
    files.env["HANG_FILE"] = str(files.hang)
    http_server.env = files.env
    http_server.start()
    toolset = MCPTools(http_server.url)
    servers.append(toolset)

    def restart() -> None:
        wait_for(lambda: files.hang.exists() and files.hang.read_text().strip(), "a call in flight")
        http_server.stop()
        http_server.start()

    thread = threading.Thread(target=restart, daemon=True)
    thread.start()
    model = ScriptedModel([ToolCall("lookup", {"key": "k2"}), "found"])
    result = await Agent("ops", model, tools=[toolset]).run("look k2 up", runtime=MEMORY)
    thread.join(30)
    assert result.status == "done", result.error
    assert [m.content for m in tool_messages(result.messages)] == ["value-of-k2"]


# Bad input: clear errors at construction, never a crash.


def test_a_server_that_is_not_there_is_a_config_error(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match=r"cannot connect to MCP server .*No such file"):
        Agent("x", ScriptedModel(["-"]), tools=[MCPTools([str(tmp_path / "no-such-server")])])
    from mcp_helpers import closed_port

    with closed_port() as closed, pytest.raises(ConfigError, match=r"cannot connect to MCP server http://127\.0\.0\.1:\d+/mcp"):
        port = closed.getsockname()[1]
        Agent("x", ScriptedModel(["-"]), tools=[MCPTools(f"http://127.0.0.1:{port}/mcp")])


def test_a_command_that_exits_at_once_is_a_config_error_naming_its_stderr() -> None:
    bad = MCPTools([sys.executable, "-c", "import sys; sys.exit('no MCP here')"])
    with pytest.raises(ConfigError, match=r"cannot connect to MCP server .*no MCP here"):
        bad.tools()


def test_a_server_that_never_answers_the_handshake_is_a_config_error() -> None:
    silent = MCPTools([sys.executable, "-c", "import sys; sys.stdin.read()"], connect_timeout=1)
    try:
        with pytest.raises(ConfigError, match="did not complete the MCP handshake within 1"):
            silent.tools()
    finally:
        silent.close()


def test_a_malformed_schema_is_a_config_error_naming_the_tool(servers: list[MCPTools]) -> None:
    command = [sys.executable, str(SERVER), "malformed"]
    with pytest.raises(ConfigError, match=r"tool 'broken' has an invalid input schema .*exclude=\['broken'\]"):
        Agent("x", ScriptedModel(["-"]), tools=[MCPTools(command)])
    fine = MCPTools(command, exclude=["broken"])
    servers.append(fine)
    model = ScriptedModel([ToolCall("files_read", {}), "ok"])
    agent = Agent("x", model, tools=[fine])
    assert [t.name for t in agent.tools] == ["fine", "files_read"]  # a name providers refuse, made safe
    result = agent.run_sync("read", runtime=MEMORY)
    assert tool_messages(result.messages)[0].content == "called files.read"  # the server's own name is sent


def test_a_name_clash_with_a_local_tool_is_a_config_error(
    servers: list[MCPTools], files: ServerFiles, shared: tuple[MCPTools, ServerFiles]
) -> None:
    @tool
    def add(a: int, b: int) -> int:
        """Add locally."""
        return a + b

    with pytest.raises(ConfigError, match=r"two tools are named 'add'.*prefix="):
        Agent("x", ScriptedModel(["-"]), tools=[add, shared[0]])
    agent = Agent("x", ScriptedModel(["-"]), tools=[add, stdio(servers, files, prefix="remote_")])
    assert {"add", "remote_add"} <= set(agent.tools_by_name)


def test_unknown_names_in_options_are_config_errors(servers: list[MCPTools], files: ServerFiles) -> None:
    with pytest.raises(ConfigError, match=r"has no tool named 'refund'.*it lists: add, book, charge"):
        stdio(servers, files, exclude=["refund"]).tools()
    with pytest.raises(ConfigError, match="give a streamable-HTTP URL"):
        MCPTools([])


# Elicitation: a server asking for input while a tool runs.


async def test_an_elicitation_is_answered_by_a_handler(servers: list[MCPTools], files: ServerFiles) -> None:
    asked: list[ElicitationRequest] = []

    async def answer(request: ElicitationRequest) -> dict[str, Any] | None:
        asked.append(request)
        return {"confirm": True, "seat": "window"}

    toolset = stdio(servers, files, elicit=answer)
    model = ScriptedModel([ToolCall("book", {"date": "2026-12-24"}), "Booked."])
    result = await Agent("host", model, tools=[toolset]).run("book", runtime=MEMORY)
    assert result.status == "done", result.error
    assert tool_messages(result.messages)[0].content == "booked 2026-12-24, seat window"
    [request] = asked
    assert request.message == "Confirm the booking on 2026-12-24?"
    assert request.schema is not None and set(request.schema["properties"]) == {"confirm", "seat"}


async def test_an_elicitation_pauses_the_run_for_a_person_by_default(shared: tuple[MCPTools, ServerFiles]) -> None:
    toolset, _ = shared
    model = ScriptedModel([ToolCall("book", {"date": "2026-12-24"}), "Booked."])
    result = await Agent("host", model, tools=[toolset]).run("book", runtime=MEMORY)
    assert result.status == "needs_attention"
    assert "asked for input while book ran: 'Confirm the booking on 2026-12-24?' (fields: confirm, seat)" in (
        result.error or ""
    )
    assert "returned: 'not booked (cancel)'" in (result.error or "")
    assert toolset.asked == []  # handed over, not left for the next call


async def test_the_person_answer_reaches_the_model_in_a_durable_run(
    tmp_path: Path, shared: tuple[MCPTools, ServerFiles]
) -> None:
    import asyncio

    from keel.durable import DurableEngine

    toolset, _ = shared
    runtime = Runtime(f"sqlite:///{tmp_path / 'keel.db'}")
    seen: list[str] = []

    def script(messages: Sequence[Message], tools: Sequence[dict[str, Any]]) -> Any:
        done = tool_messages(messages)
        if not done:
            return ToolCall("book", {"date": "2026-12-24"})
        seen.append(done[-1].content)
        return "I asked; the person confirmed a window seat."

    agent = Agent("host", ScriptedModel(script), tools=[toolset])
    try:
        paused = await agent.run("book", runtime=runtime)
        assert paused.status == "needs_attention"
        [request] = runtime.approvals(run_id=paused.run_id)
        assert request.kind == "pause" and "Confirm the booking" in request.reason
        runtime.resolve(request.id, "continue", by="host", note="yes, confirmed, window seat", dispatch=False)
        done = await runtime.resume(agent, paused.run_id)
        assert done.status == "done", done.error
        assert seen[-1].endswith("A person reviewed the run and says: yes, confirmed, window seat")
    finally:
        await asyncio.to_thread(DurableEngine.close)
