"""`MCPTools`: the tools of one MCP server as keel `Tool`s, with their JSON Schemas kept."""

from __future__ import annotations

import asyncio
import inspect
import os
import re
import shlex
from collections.abc import Awaitable, Mapping, Sequence
from concurrent.futures import TimeoutError as FutureTimeout
from dataclasses import dataclass
from typing import Any, Literal, Protocol, cast

import jsonschema
import mcp_types
import pydantic
from jsonschema.exceptions import SchemaError
from jsonschema.protocols import Validator
from jsonschema.validators import validator_for
from mcp import Client, MCPError
from referencing import Registry

from ..exceptions import CallInterrupted, ConfigError, Escalate, ToolError
from ..tools import TOOL_NAME, Tool, ToolArgumentsError, ToolContext
from ._connection import (
    CallLost,
    Connection,
    ServerSpec,
    Unreachable,
    describe,
    is_session_gone,
    is_transport_error,
    on_loop,
    to_loop,
)

__all__ = ["ElicitHandler", "ElicitationRequest", "MCPTool", "MCPTools", "ToolOptions"]

CONTEXT_PARAM = "__keel_tool_context__"
_UNSAFE = re.compile(r"[^a-zA-Z0-9_-]")
_LIST_PAGES = 100


@dataclass(frozen=True, slots=True)
class ToolOptions:
    """Per-tool settings that override what the server's annotations say.

    Attributes:
        side_effects: the tool changes the world; default from the annotations (not read-only).
        idempotent: repeating a call has no second effect; default from the annotations.
        requires_approval: each call waits for a person; default the server-wide setting.
        timeout: seconds a call may take; default the server-wide setting.
        name: the name the model sees; default the server's name (with the prefix).
        untrusted: the tool's results are tainted (`keel.policies.taint`); default the server-wide setting.
        taint_safe: the tool may run after tainted content without approval; default False.
    """

    side_effects: bool | None = None
    idempotent: bool | None = None
    requires_approval: bool | None = None
    timeout: float | None = None
    name: str | None = None
    untrusted: bool | None = None
    taint_safe: bool = False


@dataclass(frozen=True, slots=True)
class ElicitationRequest:
    """A server's request for input from the user, made while one of its tools runs.

    Attributes:
        server: the MCP server's label.
        message: what the server asks.
        schema: the JSON Schema of the answer it wants (form mode), or None.
        url: the page the user should open (URL mode), or None.
    """

    server: str
    message: str
    schema: dict[str, Any] | None = None
    url: str | None = None


class ElicitHandler(Protocol):
    """Answers a server's request for input: the content to accept with, or None to decline (may be async)."""

    def __call__(self, request: ElicitationRequest, /) -> dict[str, Any] | None | Awaitable[dict[str, Any] | None]:
        """Answer `request`."""
        ...


class MCPTools:
    """The tools of one MCP server, to put in an agent's `tools`.

    The server is a streamable-HTTP URL or a stdio command. Its tools are listed once, when the agent
    is built (a server that is not there is a `ConfigError` then); calls open the session lazily, on
    a background event loop shared by every run in the process, and reopen it when the server dies or
    restarts. A read-only or idempotent call cut off by a restart is sent again; any other call cut
    off mid-flight may or may not have taken effect, so the run asks a person (exactly as for a worker
    that died mid-call).

    Example:
        >>> files = MCPTools(["npx", "-y", "@modelcontextprotocol/server-filesystem", "/data"])  # doctest: +SKIP
        >>> agent = Agent("ops", model, tools=[files, lookup_order])  # doctest: +SKIP

    Args:
        server: an ``http://`` or ``https://`` URL (streamable HTTP), or a command: a list of
            arguments, or one string split like a shell would.
        name: a label for messages and events; default the URL or the command's program.
        prefix: put before every tool name (``"fs_"``), to keep names unique across servers.
        include: only these tools (by the server's names); default all.
        exclude: leave these tools out (by the server's names).
        tool_options: per-tool overrides (by the server's names) of flags, timeout and name.
        side_effects: the default for every tool, over the annotations (None: read them).
        idempotent: the default for every tool, over the annotations (None: read them).
        requires_approval: every call waits for a person's approval; default False.
        untrusted: the server's results are content from outside, tainted for
            `keel.policies.taint.TaintPolicy`; default True (declare False for a server you run and trust).
        timeout: seconds a call may take; default no limit.
        env: extra environment variables for a stdio server.
        cwd: working directory of a stdio server.
        headers: HTTP headers sent to a streamable-HTTP server (authorization, ...).
        connect_timeout: seconds to start the server and finish the handshake; default 30.
        reconnect_within: seconds a call keeps trying to reach a server that went away (restarting)
            before it fails as a tool error the model sees; default 15.
        retries: times a safe call is sent again after a reconnect; default 2.
        elicit: what to do when the server asks for input while a tool runs (MCP elicitation):
            ``"person"`` (default) hands the question to a person: the call goes on without an answer,
            and the run pauses (``needs_attention``) until a person continues it with a note, which
            the model sees with the server's question; ``"decline"`` declines at once; or a function
            (sync or async) from an `ElicitationRequest` to the answer's content (None declines); a
            sync function runs on a worker thread, so it may block (prompt a person at a terminal).

    Raises:
        ConfigError: the server is misconfigured (empty command, bad URL, bad option).
    """

    def __init__(
        self,
        server: str | Sequence[str],
        *,
        name: str | None = None,
        prefix: str = "",
        include: Sequence[str] | None = None,
        exclude: Sequence[str] = (),
        tool_options: Mapping[str, ToolOptions] | None = None,
        side_effects: bool | None = None,
        idempotent: bool | None = None,
        requires_approval: bool = False,
        untrusted: bool = True,
        timeout: float | None = None,
        env: Mapping[str, str] | None = None,
        cwd: str | None = None,
        headers: Mapping[str, str] | None = None,
        connect_timeout: float = 30.0,
        reconnect_within: float = 15.0,
        retries: int = 2,
        elicit: Literal["person", "decline"] | ElicitHandler = "person",
    ) -> None:
        if isinstance(server, str) and server.startswith(("http://", "https://")):
            spec = ServerSpec(name or server, url=server, headers=dict(headers or {}) or None)
        else:
            command = shlex.split(server) if isinstance(server, str) else [str(a) for a in server]
            if not command or not command[0]:
                raise ConfigError(
                    f"MCP server {server!r}: give a streamable-HTTP URL (http://host:port/mcp) or a command "
                    "to start a stdio server, e.g. ['python', 'server.py']"
                )
            label = name or shlex.join([os.path.basename(command[0]), *command[1:]])[:80]
            spec = ServerSpec(label, command=command, env=dict(env) if env else None, cwd=cwd)
        if connect_timeout <= 0 or reconnect_within < 0:
            raise ConfigError(
                f"MCP server {spec.label}: connect_timeout must be positive and reconnect_within 0 or more seconds"
            )
        if timeout is not None and timeout <= 0:
            raise ConfigError(f"MCP server {spec.label}: timeout must be positive seconds, got {timeout!r}")
        if not isinstance(retries, int) or retries < 0:
            raise ConfigError(f"MCP server {spec.label}: retries must be 0 or more, got {retries!r}")
        if prefix and not TOOL_NAME.fullmatch(prefix + "x"):
            raise ConfigError(f"MCP server {spec.label}: prefix {prefix!r} may hold only letters, digits, '_', '-'")
        self.spec = ServerSpec(
            spec.label,
            spec.url,
            spec.command,
            spec.env,
            spec.cwd,
            spec.headers,
            connect_timeout=connect_timeout,
            reconnect_within=reconnect_within,
        )
        self.name = spec.label
        self.prefix = prefix
        self.include = None if include is None else set(include)
        self.exclude = set(exclude)
        self.tool_options = dict(tool_options or {})
        for key, opts in self.tool_options.items():
            if not isinstance(opts, ToolOptions):
                raise ConfigError(
                    f"MCP server {spec.label}: tool_options[{key!r}] must be a keel.mcp.ToolOptions, "
                    f"got {type(opts).__name__}"
                )
        self.side_effects = side_effects
        self.idempotent = idempotent
        self.requires_approval = requires_approval
        self.untrusted = untrusted
        self.timeout = timeout
        self.retries = retries
        if not callable(elicit) and elicit not in ("person", "decline"):
            raise ConfigError(
                f"MCP server {spec.label}: elicit must be 'person', 'decline' or a function, got {elicit!r}"
            )
        self.elicit = elicit
        self.asked: list[ElicitationRequest] = []  # questions left for a person, in order
        self.connection = Connection(self.spec, self._on_elicit)
        self._tools: list[MCPTool] | None = None

    def __repr__(self) -> str:
        return f"MCPTools({self.name!r})"

    def tools(self) -> list[Tool]:
        """The server's tools as keel tools, listed on first use and kept.

        Raises:
            ConfigError: the server cannot be reached, or returned a listing keel cannot use.
        """
        if self._tools is None:
            future = on_loop(self._list())
            try:
                listed = future.result(timeout=self.spec.connect_timeout + 30)
            except FutureTimeout:
                future.cancel()
                self.close()
                raise ConfigError(f"MCP server {self.name}: listing its tools took too long") from None
            except Unreachable as exc:
                self.close()
                raise ConfigError(f"{exc}; check the command or URL, or start the server") from None
            self._tools = self._build(listed)
        return list(self._tools)

    async def _list(self) -> list[mcp_types.Tool]:
        for attempt in range(2):  # a session left from a server that since restarted is reopened once
            client = await self.connection.session()
            try:
                tools: list[mcp_types.Tool] = []
                cursor: str | None = None
                for _ in range(_LIST_PAGES):
                    page = await client.list_tools(cursor=cursor)
                    tools.extend(page.tools)
                    cursor = page.next_cursor
                    if cursor is None:
                        break
                return tools
            except Exception as exc:
                await self.connection.drop(client)
                if attempt == 0 and (is_transport_error(exc) or is_session_gone(exc)):
                    continue
                if isinstance(exc, pydantic.ValidationError):
                    raise Unreachable(
                        f"MCP server {self.name} returned a tool listing that is not valid MCP: {exc.error_count()} "
                        f"problem(s), first: {_first_problem(exc)}"
                    ) from None
                raise Unreachable(f"MCP server {self.name} failed to list its tools: {describe(exc)}") from exc
        raise Unreachable(f"MCP server {self.name} closed the connection while listing its tools")

    def _build(self, listed: list[mcp_types.Tool]) -> list[MCPTool]:
        known = {t.name for t in listed}
        for option_name in [*(self.include or ()), *self.exclude, *self.tool_options]:
            if option_name not in known:
                raise ConfigError(
                    f"MCP server {self.name} has no tool named {option_name!r} (named in include, exclude or "
                    f"tool_options); it lists: {', '.join(sorted(known)) or 'no tools'}"
                )
        built: dict[str, MCPTool] = {}
        for remote in listed:
            if self.include is not None and remote.name not in self.include:
                continue
            if remote.name in self.exclude:
                continue
            tool = MCPTool(self, remote, self.tool_options.get(remote.name, ToolOptions()))
            if tool.name in built:
                raise ConfigError(
                    f"MCP server {self.name}: tools {built[tool.name].remote_name!r} and {remote.name!r} both become "
                    f"{tool.name!r}; rename one with tool_options={{{remote.name!r}: ToolOptions(name=...)}}"
                )
            built[tool.name] = tool
        return list(built.values())

    async def _on_elicit(
        self, context: Any, params: mcp_types.ElicitRequestParams
    ) -> mcp_types.ElicitResult | mcp_types.ErrorData:
        """Answer a server's request for input (runs on the MCP loop, while the tool call waits)."""
        schema = getattr(params, "requested_schema", None)
        request = ElicitationRequest(
            self.name,
            params.message,
            schema.model_dump(by_alias=True, exclude_none=True) if isinstance(schema, pydantic.BaseModel) else schema,
            getattr(params, "url", None),
        )
        if self.elicit == "decline":
            return mcp_types.ElicitResult(action="decline")
        if self.elicit == "person":
            self.asked.append(request)  # the tool call that is waiting hands it to a person when it returns
            return mcp_types.ElicitResult(action="cancel")
        try:
            handler = self.elicit
            # a plain function may block (a prompt, a lookup): it runs on a thread, not on the shared MCP loop
            answer = (
                handler(request) if inspect.iscoroutinefunction(handler) else await asyncio.to_thread(handler, request)
            )
            if inspect.isawaitable(answer):
                answer = await answer
        except Exception as exc:
            return mcp_types.ErrorData(code=mcp_types.INTERNAL_ERROR, message=f"the elicitation handler failed: {exc}")
        if answer is None:
            return mcp_types.ElicitResult(action="decline")
        return mcp_types.ElicitResult(action="accept", content=answer)

    def close(self) -> None:
        """Close the session, stopping a stdio server (a later call opens a new one)."""
        on_loop(self.connection.close()).result(timeout=30)

    async def aclose(self) -> None:
        """Close the session from async code, without blocking the event loop."""
        await to_loop(self.connection.close())

    async def call(
        self, remote_name: str, arguments: dict[str, Any], ctx: ToolContext | None, guarded: bool, timeout: float | None
    ) -> mcp_types.CallToolResult:
        """Call a tool on the server, reconnecting when the session broke. Runs on the MCP loop.

        Raises:
            Unreachable: the server could not be reached; the call was not sent.
            CallLost: a guarded call was cut off after it was sent.
            MCPError: the server answered with a protocol error.
        """
        meta: mcp_types.RequestParamsMeta | None = None
        if ctx is not None:  # lets a server that keeps idempotency keys tell a repeated call from a new one
            meta = cast(
                mcp_types.RequestParamsMeta, {"keel/run_id": ctx.run_id, "keel/idempotency_key": ctx.idempotency_key}
            )
        resent = 0
        while True:
            client = await self.connection.session(self.spec.reconnect_within if self.connection.opened else 0.0)
            if guarded:
                client = await self._alive(client)
            try:
                return await client.call_tool(remote_name, arguments, read_timeout_seconds=timeout, meta=meta)
            except Exception as exc:
                gone = is_session_gone(exc)  # refused unread: safe to send again, whatever the tool does
                if not gone and not is_transport_error(exc):
                    raise
                await self.connection.drop(client)
                if guarded and not gone:
                    raise CallLost(describe(exc)) from exc
                resent += 1
                if resent > self.retries:
                    raise Unreachable(
                        f"MCP server {self.name} dropped the connection {resent} times in a row "
                        f"({describe(exc)}){self.connection._stderr_note()}"
                    ) from exc

    async def _alive(self, client: Client) -> Client:
        """Before a guarded call: make sure the session still answers, so a failure after it means in flight."""
        try:
            await client.session.send_ping()
            return client
        except Exception as exc:
            if not is_transport_error(exc) and not isinstance(exc, MCPError):
                raise
            await self.connection.drop(client)
            return await self.connection.session(self.spec.reconnect_within)


def _first_problem(exc: pydantic.ValidationError) -> str:
    err = exc.errors(include_url=False)[0]
    return f"{'.'.join(str(p) for p in err['loc'])}: {err['msg']}"


class MCPTool(Tool):
    """A tool served by an MCP server; its schema, description and flags come from the server.

    Attributes:
        remote_name: the tool's name on the server.
        server: the `MCPTools` it belongs to.
        annotations: the server's hints (read-only, destructive, idempotent, open-world), if any.
    """

    rename_hint = "MCPTools(..., prefix=...) or tool_options={name: ToolOptions(name=...)}"

    def __init__(self, server: MCPTools, remote: mcp_types.Tool, options: ToolOptions) -> None:
        self.server = server
        self.remote_name = remote.name
        self.annotations = remote.annotations
        name = options.name or server.prefix + _UNSAFE.sub("_", remote.name)[: 64 - len(server.prefix)]
        if not TOOL_NAME.fullmatch(name):
            raise ConfigError(
                f"MCP server {server.name}: tool {remote.name!r} cannot be offered as {name!r}; give a name of "
                f"1-64 letters, digits, '_' or '-' with tool_options={{{remote.name!r}: ToolOptions(name=...)}}"
            )
        self.name = name
        self.description = (remote.description or remote.title or "").strip() or name
        if remote.title and remote.description and remote.title not in remote.description:
            self.description = f"{remote.title}: {self.description}"
        schema = remote.input_schema
        if not isinstance(schema, dict) or schema.get("type", "object") != "object":
            raise ConfigError(
                f"MCP server {server.name}: tool {remote.name!r} has an input schema that is not a JSON object "
                f"schema ({str(schema)[:120]}); fix the server or leave the tool out with exclude=[{remote.name!r}]"
            )
        try:
            cls = validator_for(schema, default=jsonschema.Draft202012Validator)
            cls.check_schema(schema)
            self.validator: Validator = cls(schema, registry=Registry())
        except SchemaError as exc:
            raise ConfigError(
                f"MCP server {server.name}: tool {remote.name!r} has an invalid input schema "
                f"({exc.message} at {'/'.join(str(p) for p in exc.schema_path) or 'the root'}); fix the server "
                f"or leave the tool out with exclude=[{remote.name!r}]"
            ) from None
        self.parameters = {"type": "object", **schema} if "type" not in schema else dict(schema)
        self.parameters.setdefault("properties", {})

        hints = remote.annotations
        read_only = bool(hints and hints.read_only_hint)
        side_effects = not read_only
        idempotent = read_only or bool(hints and hints.idempotent_hint)
        if server.side_effects is not None:
            side_effects = server.side_effects
        if server.idempotent is not None:
            idempotent = server.idempotent
        self.side_effects = side_effects if options.side_effects is None else options.side_effects
        self.idempotent = idempotent if options.idempotent is None else options.idempotent
        approval = options.requires_approval
        self.requires_approval = server.requires_approval if approval is None else approval
        self.untrusted = server.untrusted if options.untrusted is None else options.untrusted
        self.taint_safe = options.taint_safe
        timeout = server.timeout if options.timeout is None else options.timeout
        if timeout is not None and timeout <= 0:
            raise ConfigError(f"tool {name!r}: timeout must be positive seconds, got {timeout!r}")
        self.timeout = timeout
        self.fallback = None
        self.func = self._call
        self.is_async = True
        self.context_param = CONTEXT_PARAM
        self.return_adapter = None

    def __repr__(self) -> str:
        return f"MCPTool({self.name!r}, server={self.server.name!r})"

    def validate(self, arguments: dict[str, Any]) -> dict[str, Any]:
        """Check arguments against the server's JSON Schema before any call.

        Raises:
            ToolArgumentsError: the arguments do not match; the message names each bad field.
        """
        if not isinstance(arguments, dict):
            raise ToolArgumentsError(f"{self.name}: arguments must be a JSON object, got {type(arguments).__name__}")
        problems = []
        for err in sorted(self.validator.iter_errors(arguments), key=lambda e: [str(p) for p in e.path]):
            where = ".".join(str(p) for p in err.path)
            problems.append(
                f"{self.name}: argument '{where}' {err.message}" if where else f"{self.name}: {err.message}"
            )
        if problems:
            raise ToolArgumentsError("; ".join(problems[:5]))
        return dict(arguments)

    async def _call(self, **kwargs: Any) -> str:
        ctx = kwargs.pop(CONTEXT_PARAM, None)
        guarded = self.side_effects and not self.idempotent
        coro = self.server.call(self.remote_name, kwargs, ctx, guarded, self.timeout)
        mark = len(self.server.asked)
        try:
            result = await to_loop(coro)
        except Unreachable as exc:
            raise ToolError(f"{self.name} was not run: {exc}; try again later or do without it") from None
        except CallLost as exc:
            raise CallInterrupted(
                f"{self.name}: MCP server {self.server.name} went away while the call ran ({exc}); it may or may "
                "not have taken effect"
            ) from None
        except MCPError as exc:
            raise ToolError(f"{self.name}: the MCP server refused the call: {exc.message}") from None
        except RuntimeError as exc:  # the SDK's check of structured content against the output schema
            raise ToolError(f"{self.name}: the MCP server's result is malformed: {exc}") from None
        asked = self.server.asked[mark:]
        if asked:
            del self.server.asked[mark:]
            raise Escalate(self._question(asked, result))
        return render(self.name, result)

    def _question(self, asked: list[ElicitationRequest], result: mcp_types.CallToolResult) -> str:
        """What a person is asked when the server wanted input during this call."""
        parts = []
        for req in asked:
            fields = ", ".join((req.schema or {}).get("properties", {}))
            where = f" (fields: {fields})" if fields else (f" (open {req.url})" if req.url else "")
            parts.append(f"{req.message!r}{where}")
        try:
            outcome = render(self.name, result)
        except ToolError as exc:
            outcome = f"error: {exc}"
        return (
            f"MCP server {self.server.name} asked for input while {self.name} ran: {'; '.join(parts)}. "
            f"It went on without an answer and returned: {outcome[:500]!r}. Continue the run with the answer "
            "as a note (the model sees it and can call the tool again), or fail it"
        )


def render(name: str, result: mcp_types.CallToolResult) -> str:
    """The text the model sees for an MCP tool result; an error result raises `ToolError`.

    Raises:
        ToolError: the server marked the result as an error.
    """
    parts: list[str] = []
    for block in result.content:
        if isinstance(block, mcp_types.TextContent):
            parts.append(block.text)
        elif isinstance(block, mcp_types.ImageContent | mcp_types.AudioContent):
            parts.append(f"[{block.type} {block.mime_type}, {len(block.data) * 3 // 4} bytes]")
        elif isinstance(block, mcp_types.ResourceLink):
            parts.append(f"[resource {block.uri}" + (f": {block.description}]" if block.description else "]"))
        elif isinstance(block, mcp_types.EmbeddedResource):
            res = block.resource
            if isinstance(res, mcp_types.TextResourceContents):
                parts.append(f"[resource {res.uri}]\n{res.text}")
            else:
                parts.append(f"[resource {res.uri}, {res.mime_type or 'binary'}, {len(res.blob) * 3 // 4} bytes]")
    text = "\n".join(parts)
    if not text and result.structured_content is not None:
        import json

        text = json.dumps(result.structured_content, ensure_ascii=False)
    if result.is_error:
        raise ToolError(text or f"{name} failed (the MCP server gave no details)")
    return text
