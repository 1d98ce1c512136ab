"""Typed tools: `@tool` turns a typed, documented function into something a model can call.

The JSON Schema of the arguments comes from the type hints, and each argument's description from
the Google-style docstring. Arguments are validated before the function runs; a call with invalid
arguments is never executed.

Example:
    >>> @tool
    ... def add(a: int, b: int) -> int:
    ...     '''Add two integers.
    ...
    ...     Args:
    ...         a: the first number.
    ...         b: the second number.
    ...     '''
    ...     return a + b
    >>> add.name, sorted(add.parameters["properties"])
    ('add', ['a', 'b'])
"""

from __future__ import annotations

import inspect
import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any, Protocol, get_type_hints, overload, runtime_checkable

import docstring_parser
import pydantic
import pydantic_core
from pydantic import BaseModel, ConfigDict, TypeAdapter

from .exceptions import ConfigError

__all__ = ["Tool", "ToolArgumentsError", "ToolContext", "Toolset", "tool"]

TOOL_NAME = re.compile(r"^[a-zA-Z0-9_-]{1,64}$")


@dataclass(frozen=True, slots=True)
class ToolContext:
    """Facts about the current call, injected into a tool parameter annotated `ToolContext`.

    Attributes:
        run_id: the run making the call.
        call_id: the model's id for this call.
        step: the loop step.
        idempotency_key: stable across re-runs of the same call; pass it to the service the tool
            calls so a repeated request has no second effect.
        metadata: the values attached to the run (tenant, user), as given to `Agent.run`.
    """

    run_id: str
    call_id: str
    step: int
    idempotency_key: str
    metadata: Mapping[str, Any] = field(default_factory=dict)


class ToolArgumentsError(ValueError):
    """Arguments from the model did not validate; the message names each bad field."""


def _check_name(name: str) -> None:
    if not isinstance(name, str) or not TOOL_NAME.fullmatch(name):  # fullmatch: '$' accepts a trailing newline
        raise ConfigError(
            f"tool name {name!r} is invalid: providers accept 1-64 letters, digits, '_' or '-' "
            f"(^[a-zA-Z0-9_-]{{1,64}}$); pass a valid name with @tool(name=...)"
        )


def _strip_titles(schema: Any) -> Any:
    """Drop pydantic's generated titles: they cost tokens and tell the model nothing new."""
    if isinstance(schema, dict):
        return {k: _strip_titles(v) for k, v in schema.items() if k != "title" or not isinstance(v, str)}
    if isinstance(schema, list):
        return [_strip_titles(v) for v in schema]
    return schema


def format_validation_error(tool_name: str, error: pydantic.ValidationError) -> str:
    """Describe a validation error as one line per bad field, naming the field and what it got."""
    lines = []
    for err in error.errors(include_url=False):
        loc = ".".join(str(p) for p in err["loc"]) or "(arguments)"
        kind = err["type"]
        if kind == "missing":
            lines.append(f"{tool_name}: argument '{loc}' is required")
        elif kind == "extra_forbidden":
            lines.append(f"{tool_name}: unexpected argument '{loc}'; remove it")
        else:
            msg = err["msg"][0].lower() + err["msg"][1:]
            lines.append(f"{tool_name}: argument '{loc}' {msg}, got {err.get('input')!r}")
    return "; ".join(lines)


@runtime_checkable
class Toolset(Protocol):
    """A source of several tools (the tools of an MCP server, say), expanded when an agent is built."""

    def tools(self) -> list[Tool]:
        """The tools, in the order the model should see them.

        Raises:
            ConfigError: the tools cannot be had (the message names the source and the fix).
        """
        ...


class Tool:
    """A function the model can call, with its schema, metadata and validation.

    Build one with the `tool` decorator. Calling the `Tool` object calls the function directly.

    Attributes:
        name: the name the model uses.
        description: what the tool does, for the model.
        parameters: JSON Schema of the arguments.
        timeout: seconds a call may take before it fails (None: no limit).
        side_effects: the tool changes the world (writes, payments, messages).
        idempotent: a repeated call with the same idempotency key has no second effect.
        requires_approval: a person must approve each call before it runs.
        fallback: a tool to call with the same arguments when this one fails unexpectedly.
        untrusted: the tool reads content from outside (web pages, emails, documents, a knowledge base):
            its results are tainted for `keel.policies.taint.TaintPolicy`.
        taint_safe: the tool may run after tainted content without a person (it cannot be turned
            against the user: it only notifies them, say).
    """

    rename_hint = "@tool(name=...)"
    """How to give this kind of tool another name, for error messages."""

    def __init__(
        self,
        func: Callable[..., Any],
        *,
        name: str | None = None,
        description: str | None = None,
        timeout: float | None = None,
        side_effects: bool = False,
        idempotent: bool = False,
        requires_approval: bool = False,
        fallback: Tool | None = None,
        untrusted: bool = False,
        taint_safe: bool = False,
    ) -> None:
        self.func = func
        self.name = func.__name__ if name is None else name
        _check_name(self.name)
        if timeout is not None and timeout <= 0:
            raise ConfigError(f"tool {self.name!r}: timeout must be positive seconds, got {timeout!r}")
        self.timeout = timeout
        self.side_effects = side_effects
        self.idempotent = idempotent
        self.requires_approval = requires_approval
        self.fallback = fallback
        self.untrusted = untrusted
        self.taint_safe = taint_safe
        self.is_async = inspect.iscoroutinefunction(func)

        doc = docstring_parser.parse(inspect.getdoc(func) or "")
        # `doc.description` keeps a summary wrapped over several lines as one paragraph.
        self.description = description or (doc.description or "").strip() or self.name
        param_docs = {p.arg_name: p.description for p in doc.params}

        try:
            hints = get_type_hints(func, include_extras=True)
        except Exception as exc:  # unresolvable forward references
            raise ConfigError(f"tool {self.name!r}: cannot resolve its type hints ({exc})") from exc

        self.context_param: str | None = None
        fields: dict[str, Any] = {}
        for pname, param in inspect.signature(func).parameters.items():
            if param.kind in (param.VAR_POSITIONAL, param.VAR_KEYWORD):
                star = "*" if param.kind is param.VAR_POSITIONAL else "**"
                raise ConfigError(f"tool {self.name!r}: {star}{pname} is not supported; declare each argument by name")
            if param.kind is param.POSITIONAL_ONLY:
                raise ConfigError(
                    f"tool {self.name!r}: argument {pname!r} is positional-only; the model passes arguments by "
                    "name, so remove the '/' from the signature"
                )
            if pname.startswith("model_") or hasattr(BaseModel, pname):
                raise ConfigError(
                    f"tool {self.name!r}: argument name {pname!r} is reserved by pydantic; rename the argument"
                )
            annotation = hints.get(pname)
            if annotation is ToolContext:
                self.context_param = pname
                continue
            if annotation is None:
                raise ConfigError(
                    f"tool {self.name!r}: argument {pname!r} has no type hint; add one so the model knows what to pass"
                )
            default = ... if param.default is inspect.Parameter.empty else param.default
            fields[pname] = (annotation, pydantic.Field(default, description=param_docs.get(pname)))

        try:
            self.args_model: type[BaseModel] = pydantic.create_model(
                f"{self.name}_args",
                __config__=ConfigDict(extra="forbid", arbitrary_types_allowed=False),
                **fields,
            )
            self.parameters: dict[str, Any] = _strip_titles(self.args_model.model_json_schema())
        except (pydantic.PydanticSchemaGenerationError, pydantic.PydanticUserError, TypeError) as exc:
            raise ConfigError(
                f"tool {self.name!r}: an argument type has no JSON Schema ({exc}); use JSON-compatible "
                "types (str, int, float, bool, Literal, Enum, list, dict, pydantic models, Decimal, datetime)"
            ) from exc

        self.return_adapter: TypeAdapter[Any] | None = None
        ret = hints.get("return", inspect.Signature.empty)
        if ret not in (inspect.Signature.empty, Any, str, None, type(None)):
            try:
                adapter: TypeAdapter[Any] = TypeAdapter(ret)
                adapter.json_schema(mode="serialization")
            except (pydantic.PydanticSchemaGenerationError, pydantic.PydanticUserError, TypeError) as exc:
                raise ConfigError(
                    f"tool {self.name!r}: return type {ret!r} cannot be serialised to JSON for the model; "
                    "return str, a JSON-compatible type, a pydantic model or a dataclass"
                ) from exc
            self.return_adapter = adapter

    def __call__(self, *args: Any, **kwargs: Any) -> Any:
        """Call the underlying function directly (no validation)."""
        return self.func(*args, **kwargs)

    def __repr__(self) -> str:
        return f"Tool({self.name!r})"

    def validate(self, arguments: dict[str, Any]) -> dict[str, Any]:
        """Validate arguments from the model and return them as keyword arguments for the function.

        Raises:
            ToolArgumentsError: an argument is missing, unexpected or of the wrong type.
        """
        if not isinstance(arguments, dict):
            raise ToolArgumentsError(f"{self.name}: arguments must be a JSON object, got {type(arguments).__name__}")
        try:
            model = self.args_model.model_validate(arguments)
        except pydantic.ValidationError as exc:
            raise ToolArgumentsError(format_validation_error(self.name, exc)) from None
        return {name: getattr(model, name) for name in type(model).model_fields}

    def plain(self, kwargs: dict[str, Any]) -> dict[str, Any]:
        """The JSON form of validated arguments (what `validate` returned): what a person approves and sees."""
        value: dict[str, Any] = pydantic_core.to_jsonable_python(kwargs)
        return value

    def serialize(self, result: Any) -> str:
        """Turn a tool's return value into the text the model sees (JSON unless it is a str).

        Raises:
            TypeError: the value cannot be serialised to JSON.
        """
        if isinstance(result, str):
            return result
        try:
            if self.return_adapter is not None:
                return self.return_adapter.dump_json(result).decode()
            return pydantic_core.to_json(result).decode()
        except pydantic_core.PydanticSerializationError as exc:
            raise TypeError(
                f"{self.name}: returned a {type(result).__name__}, which cannot be serialised to JSON ({exc})"
            ) from None

    def spec(self) -> dict[str, Any]:
        """The tool as the provider-neutral description models receive."""
        return {"name": self.name, "description": self.description, "parameters": self.parameters}


@overload
def tool(func: Callable[..., Any], /) -> Tool: ...


@overload
def tool(
    *,
    name: str | None = None,
    description: str | None = None,
    timeout: float | None = None,
    side_effects: bool = False,
    idempotent: bool = False,
    requires_approval: bool = False,
    fallback: Tool | None = None,
    untrusted: bool = False,
    taint_safe: bool = False,
) -> Callable[[Callable[..., Any]], Tool]: ...


def tool(
    func: Callable[..., Any] | None = None,
    /,
    *,
    name: str | None = None,
    description: str | None = None,
    timeout: float | None = None,
    side_effects: bool = False,
    idempotent: bool = False,
    requires_approval: bool = False,
    fallback: Tool | None = None,
    untrusted: bool = False,
    taint_safe: bool = False,
) -> Tool | Callable[[Callable[..., Any]], Tool]:
    """Make a function a tool, as `@tool` or `@tool(...)`.

    Args:
        func: the function (when used as a bare decorator).
        name: the tool's name; defaults to the function's name.
        description: overrides the docstring's description.
        timeout: seconds a call may take; default no limit.
        side_effects: the tool changes the world; default False.
        idempotent: repeating a call with the same idempotency key has no second effect; default False.
        requires_approval: each call waits for a person's approval; default False.
        fallback: a tool called with the same arguments when this one fails unexpectedly.
        untrusted: the tool reads content from outside (the web, email, documents, a knowledge base),
            so its results are tainted: see `keel.policies.taint.TaintPolicy`; default False.
        taint_safe: a side-effecting tool that may run after tainted content without a person's
            approval (it cannot be turned against the user); default False.

    Raises:
        ConfigError: the name is invalid, an argument lacks a type hint, or a type has no JSON form.
    """

    def wrap(f: Callable[..., Any]) -> Tool:
        return Tool(
            f,
            name=name,
            description=description,
            timeout=timeout,
            side_effects=side_effects,
            idempotent=idempotent,
            requires_approval=requires_approval,
            fallback=fallback,
            untrusted=untrusted,
            taint_safe=taint_safe,
        )

    if func is not None:
        return wrap(func)
    return wrap
