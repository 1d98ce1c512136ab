"""Serve a keel agent over MCP: the agent as a tool that runs a task, and/or its tools, over stdio or HTTP."""

from __future__ import annotations

import json
from collections.abc import Callable, Sequence
from typing import TYPE_CHECKING, Any, Literal

import mcp_types
import pydantic
from mcp.server.lowlevel import Server
from mcp.server.stdio import stdio_server

from .._tool_exec import ToolCrashed, tool_step
from ..exceptions import CallInterrupted, ConfigError, KeelError
from ..tools import Tool, ToolArgumentsError, ToolContext

if TYPE_CHECKING:
    from .._runtime import Runtime
    from .._seam import RunResult
    from ..agent import Agent

__all__ = ["Expose", "build_server", "serve"]

Expose = Literal["agent", "tools", "both"]
TASK_SCHEMA: dict[str, Any] = {
    "type": "object",
    "properties": {"task": {"type": "string", "description": "what the agent should do, in plain words"}},
    "required": ["task"],
    "additionalProperties": False,
}
RUN_SCHEMA: dict[str, Any] = {
    "type": "object",
    "properties": {
        "run_id": {"type": "string"},
        "status": {"type": "string", "enum": ["done", "failed", "waiting", "needs_attention"]},
        "output": {},
        "error": {"type": ["string", "null"]},
    },
    "required": ["run_id", "status"],
}


def _text(text: str, *, error: bool = False, structured: Any = None) -> mcp_types.CallToolResult:
    return mcp_types.CallToolResult(
        content=[mcp_types.TextContent(text=text)], is_error=error, structured_content=structured
    )


def _agent_tool_name(agent: Agent, tools: Sequence[Tool]) -> str:
    name = agent.name
    return f"{name}_agent" if any(t.name == name for t in tools) else name


def _describe_agent(agent: Agent) -> str:
    first = next((line.strip() for line in agent.instructions.splitlines() if line.strip()), "")
    about = f" It is instructed: {first[:300]}" if first else ""
    return (
        f"Run the keel agent {agent.name!r} on a task and return its answer.{about} The run is recorded; "
        "if it must wait for a person's approval the result says so and names the run."
    )


def _annotations(tool: Tool) -> mcp_types.ToolAnnotations:
    return mcp_types.ToolAnnotations(
        read_only_hint=not tool.side_effects,
        idempotent_hint=tool.idempotent or not tool.side_effects,
        destructive_hint=tool.side_effects and not tool.idempotent,
    )


def _run_result(result: RunResult) -> mcp_types.CallToolResult:
    output = result.output
    if isinstance(output, pydantic.BaseModel):
        output = output.model_dump(mode="json")
    summary = {"run_id": result.run_id, "status": result.status, "output": output, "error": result.error}
    if result.status == "done":
        text = output if isinstance(output, str) else json.dumps(output, ensure_ascii=False)
        return _text(text, structured=summary)
    if result.status in ("waiting", "needs_attention"):
        text = (
            f"run {result.run_id} is {result.status.replace('_', ' ')}: {result.error}. A person decides with "
            f"`keel approvals list`; a `keel worker` then carries the run on (`keel runs show {result.run_id}`)."
        )
        return _text(text, error=True, structured=summary)
    return _text(f"run {result.run_id} failed: {result.error}", error=True, structured=summary)


def build_server(agent: Agent, *, expose: Expose = "both", runtime: Runtime | None = None) -> Server[Any]:
    """An MCP server (the SDK's low-level `Server`) that exposes `agent` and/or its tools.

    The agent becomes one tool taking ``task``; each call is a run on `runtime`. Its tools keep their
    JSON Schemas and are called directly, without the agent's policies, so tools that need a person's
    approval are not exposed (nor called as another tool's fallback).

    Args:
        agent: the agent.
        expose: ``agent`` (the agent as a tool), ``tools`` (its tools) or ``both``.
        runtime: where the agent's runs go; default the durable runtime on ``KEEL_DATABASE_URL``.

    Raises:
        ConfigError: `expose` is not one of the three, or there is nothing to expose.
    """
    if expose not in ("agent", "tools", "both"):
        raise ConfigError(f"expose must be 'agent', 'tools' or 'both', got {expose!r}")
    direct = [t for t in agent.tools if not t.requires_approval] if expose in ("tools", "both") else []
    agent_name = _agent_tool_name(agent, direct) if expose in ("agent", "both") else None
    if agent_name is None and not direct:
        raise ConfigError(
            f"agent {agent.name!r} has no tools that can be served without a person's approval; "
            "serve the agent itself with --expose agent"
        )
    by_name = {t.name: t for t in direct}
    listing: list[mcp_types.Tool] = []
    if agent_name is not None:
        listing.append(
            mcp_types.Tool(
                name=agent_name,
                description=_describe_agent(agent),
                input_schema=TASK_SCHEMA,
                output_schema=RUN_SCHEMA,
                annotations=mcp_types.ToolAnnotations(read_only_hint=False, open_world_hint=True),
            )
        )
    listing.extend(
        mcp_types.Tool(name=t.name, description=t.description, input_schema=t.parameters, annotations=_annotations(t))
        for t in direct
    )
    schemas = {t.name: t.input_schema for t in listing}

    async def list_tools(ctx: Any, params: mcp_types.PaginatedRequestParams | None) -> mcp_types.ListToolsResult:
        return mcp_types.ListToolsResult(tools=listing)

    async def call_tool(ctx: Any, params: mcp_types.CallToolRequestParams) -> mcp_types.CallToolResult:
        arguments = params.arguments or {}
        if params.name == agent_name:
            task = arguments.get("task")
            if not isinstance(task, str) or not task.strip():
                return _text(f"{agent_name}: argument 'task' must be a non-empty string", error=True)
            try:
                result = await agent.run(task, runtime=runtime, metadata={"via": "mcp"})
            except KeelError as exc:
                return _text(f"{agent_name}: {exc}", error=True)
            return _run_result(result)
        tool = by_name.get(params.name)
        if tool is None:
            return _text(f"unknown tool {params.name!r}; available: {', '.join(sorted(schemas))}", error=True)
        try:
            kwargs = tool.validate(arguments)
        except ToolArgumentsError as exc:
            return _text(str(exc), error=True)
        request_id = str(getattr(ctx, "request_id", "") or "")
        tctx = ToolContext("mcp", request_id, 0, f"mcp/{request_id}/{tool.name}")
        try:
            out = await tool_step(tool, kwargs, tctx)
            while out.get("fall_back") and tool.fallback is not None:  # the fallback passes the same rule
                fallback, failed = tool.fallback, out["content"]
                if fallback.requires_approval:
                    return _text(f"{failed}; its fallback {fallback.name} needs a person's approval", error=True)
                tool, out = fallback, await tool_step(fallback, fallback.validate(kwargs), tctx)
        except (ToolCrashed, CallInterrupted) as exc:
            return _text(f"{tool.name} failed unexpectedly: {exc}", error=True)
        except ToolArgumentsError as exc:
            return _text(str(exc), error=True)
        return _text(out["content"], error=bool(out["is_error"] or out.get("escalate")))

    return Server(
        agent.name,
        version=_version(),
        instructions=f"Tools of the keel agent {agent.name!r}.",
        get_tool_input_schema=schemas.get,
        on_list_tools=list_tools,
        on_call_tool=call_tool,
    )


def _version() -> str:
    from .. import __version__

    return __version__


async def serve(
    agent: Agent,
    *,
    transport: Literal["stdio", "http"] = "stdio",
    host: str = "127.0.0.1",
    port: int = 8000,
    path: str = "/mcp",
    expose: Expose = "both",
    runtime: Runtime | None = None,
    on_ready: Callable[[int], None] | None = None,
) -> None:
    """Serve `agent` over MCP until the client leaves (stdio) or the process is stopped (HTTP).

    Over HTTP, `on_ready` is called with the port listened on once connections are accepted (with
    `port` 0 the system picks a free one).

    Raises:
        ConfigError: an unknown transport or `expose` value.
    """
    server = build_server(agent, expose=expose, runtime=runtime)
    if transport == "stdio":
        async with stdio_server() as (read, write):
            await server.run(read, write, server.create_initialization_options())
        return
    if transport != "http":
        raise ConfigError(f"transport must be 'stdio' or 'http', got {transport!r}")
    import uvicorn

    app = server.streamable_http_app(streamable_http_path=path, host=host)
    config = uvicorn.Config(app, host=host, port=port, log_level="warning", lifespan="on")

    class Listening(uvicorn.Server):
        async def startup(self, sockets: Any = None) -> None:
            await super().startup(sockets)
            if self.started and on_ready is not None:
                bound = [sock.getsockname()[1] for listener in self.servers for sock in listener.sockets]
                on_ready(int(bound[0]) if bound else port)

    await Listening(config).serve()
