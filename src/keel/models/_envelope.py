"""The JSON envelope: how a model without native tool calling calls tools.

The model answers with one JSON object, constrained by a JSON Schema (an `anyOf` with one branch per
tool): ``{"tool": NAME, "arguments": {...}}``. A `final_answer` pseudo-tool carries a text answer when
the agent has no structured output. The instructions are data, in ``keel/prompts/envelope.md``.

A reply that does not parse as an envelope (which the schema prevents, unless the reply was cut off
at the token limit) becomes a call whose arguments are ``{"__raw__": "<the text>"}``; the tool's
validation rejects it with a message naming the unexpected argument, and the loop re-asks. The raw
text goes back to the model unchanged in the history, so it sees what it wrote.
"""

from __future__ import annotations

import functools
import importlib.resources
import json
import re
import string
from collections.abc import Sequence
from typing import Any

from ..messages import AssistantMessage, Message, ToolCall, ToolMessage

__all__ = [
    "FINAL_ANSWER",
    "FINAL_RESULT",
    "RAW_ARGUMENTS",
    "arguments_text",
    "compact_json",
    "envelope_messages",
    "envelope_prompt",
    "envelope_schema",
    "offers_final_answer",
    "parse_envelope",
]

FINAL_ANSWER = "final_answer"
"""The envelope's pseudo-tool for a final text answer, offered when no `final_result` tool is."""
FINAL_RESULT = "final_result"
"""The loop's control tool for a structured output."""
RAW_ARGUMENTS = "__raw__"
"""The key that carries a model's unparseable arguments (see the module docstring)."""

_TOOL_NAME_IN_TEXT = re.compile(r'"tool"\s*:\s*"([A-Za-z0-9_-]{1,64})"')
_UNPARSED = "unparsed_reply"


@functools.cache
def _templates() -> dict[str, string.Template]:
    """The `## name` sections of prompts/envelope.md, as templates."""
    text = importlib.resources.files("keel").joinpath("prompts", "envelope.md").read_text("utf-8")
    sections: dict[str, list[str]] = {}
    current: list[str] | None = None
    for line in text.splitlines():
        if line.startswith("## "):
            current = sections.setdefault(line[3:].strip(), [])
        elif current is not None:
            current.append(line)
    return {name: string.Template("\n".join(lines).strip("\n")) for name, lines in sections.items()}


def offers_final_answer(tools: Sequence[dict[str, Any]]) -> bool:
    """Whether the envelope offers `final_answer`: only when no `final_result` (or own such) tool is."""
    names = {t["name"] for t in tools}
    return FINAL_RESULT not in names and FINAL_ANSWER not in names


def compact_json(value: Any) -> str:
    """JSON without spaces (fewer tokens)."""
    return json.dumps(value, ensure_ascii=False, separators=(",", ":"))


def type_hint(schema: dict[str, Any], defs: dict[str, Any], depth: int = 0) -> str:
    """A short TypeScript-like rendering of a JSON Schema (the grammar enforces the full schema)."""
    if "$ref" in schema:
        target = defs.get(str(schema["$ref"]).rsplit("/", 1)[-1], {})
        return type_hint(target, defs, depth)
    if "enum" in schema:
        return "|".join(json.dumps(v) for v in schema["enum"])
    if "const" in schema:
        return json.dumps(schema["const"])
    for key in ("anyOf", "oneOf"):
        if key in schema:
            options = [type_hint(o, defs, depth) for o in schema[key] if o.get("type") != "null"]
            return "|".join(dict.fromkeys(options)) or "null"
    kind = schema.get("type")
    if kind == "array":
        return type_hint(schema.get("items") or {}, defs, depth) + "[]"
    if kind == "object" or "properties" in schema:
        props = schema.get("properties") or {}
        if not props:
            return "object"
        if depth >= 2:
            return "{" + ", ".join(props) + "}"
        return "{" + signature(schema, defs, depth + 1) + "}"
    if kind == "string" and schema.get("format") in ("date-time", "date"):
        return f"string ({schema['format']})"
    return str(kind or "any")


def signature(parameters: dict[str, Any], defs: dict[str, Any] | None = None, depth: int = 0) -> str:
    """Arguments as ``name: type`` pairs, optional ones marked ``?``."""
    defs = {**(defs or {}), **parameters.get("$defs", {})}
    required = set(parameters.get("required") or [])
    return ", ".join(
        f"{name}{'' if name in required else '?'}: {type_hint(prop, defs, depth)}"
        for name, prop in (parameters.get("properties") or {}).items()
    )


def envelope_prompt(tools: Sequence[dict[str, Any]]) -> str:
    """The instructions that explain the JSON envelope and list the tools.

    Args:
        tools: tool specs (`Tool.spec()`: name, description, parameters).
    """
    t = _templates()
    lines = [
        t["tool"].substitute(
            name=spec["name"],
            description=spec.get("description") or spec["name"],
            parameters=signature(spec.get("parameters") or {}),
        )
        for spec in tools
    ]
    if offers_final_answer(tools):
        lines.append(t["final_answer"].substitute())
    return t["instructions"].substitute(tools="\n".join(lines))


def _rename_refs(node: Any, renames: dict[str, str]) -> Any:
    if isinstance(node, dict):
        out = {}
        for key, value in node.items():
            if key == "$ref" and isinstance(value, str) and value in renames:
                out[key] = renames[value]
            else:
                out[key] = _rename_refs(value, renames)
        return out
    if isinstance(node, list):
        return [_rename_refs(v, renames) for v in node]
    return node


def _hoist_defs(tool_name: str, parameters: dict[str, Any]) -> tuple[dict[str, Any], dict[str, Any]]:
    """Move a tool's `$defs` to the envelope's root, prefixed with the tool's name.

    References are resolved from the root of the whole schema, so definitions nested in one branch
    would not be found; the prefix keeps two tools' definitions of the same name apart.
    """
    params = dict(parameters)
    defs: dict[str, Any] = {}
    renames: dict[str, str] = {}
    for key in ("$defs", "definitions"):
        for name, schema in (params.pop(key, None) or {}).items():
            new = f"{tool_name}__{name}"
            defs[new] = schema
            escaped = name.replace("~", "~0").replace("/", "~1")
            renames[f"#/{key}/{escaped}"] = f"#/$defs/{new}"
    if not renames:
        return params, {}
    return _rename_refs(params, renames), {k: _rename_refs(v, renames) for k, v in defs.items()}


def _branch(name: str, arguments: dict[str, Any]) -> dict[str, Any]:
    return {
        "type": "object",
        "properties": {"tool": {"const": name}, "arguments": arguments},
        "required": ["tool", "arguments"],
        "additionalProperties": False,
    }


def envelope_schema(tools: Sequence[dict[str, Any]]) -> dict[str, Any]:
    """The JSON Schema of one envelope reply: an `anyOf` with one branch per tool.

    A `final_answer` branch (`{"answer": string}`) is added when no `final_result` tool is offered.
    Each tool's `$defs` move to the root under the tool's name, so `$ref`s resolve.

    Args:
        tools: tool specs (`Tool.spec()`: name, description, parameters).
    """
    branches: list[dict[str, Any]] = []
    defs: dict[str, Any] = {}
    for spec in tools:
        params, tool_defs = _hoist_defs(spec["name"], spec.get("parameters") or {"type": "object"})
        defs.update(tool_defs)
        branches.append(_branch(spec["name"], params))
    if offers_final_answer(tools):
        answer = {
            "type": "object",
            "properties": {"answer": {"type": "string"}},
            "required": ["answer"],
            "additionalProperties": False,
        }
        branches.append(_branch(FINAL_ANSWER, answer))
    schema: dict[str, Any] = {"anyOf": branches}
    if defs:
        schema["$defs"] = defs
    return schema


def parse_envelope(text: str, *, final_answer: bool = True) -> AssistantMessage:
    """Turn an envelope reply into an assistant message.

    Args:
        text: the model's reply.
        final_answer: `final_answer` replies become text answers (else a call to a tool of that name).

    Returns:
        A text answer for `final_answer`, else one tool call. A reply that is not an envelope becomes
        a call whose arguments are `{"__raw__": text}`, which tool validation rejects.
    """
    try:
        data = json.loads(text)
    except ValueError:
        data = None
    if isinstance(data, dict) and isinstance(data.get("tool"), str):
        name, arguments = data["tool"], data.get("arguments")
        if name == FINAL_ANSWER and final_answer and isinstance(arguments, dict):
            answer = arguments.get("answer")
            if isinstance(answer, str) and set(arguments) == {"answer"}:
                return AssistantMessage(content=answer)
        if isinstance(arguments, dict) and set(data) <= {"tool", "arguments"}:
            return AssistantMessage(tool_calls=[ToolCall(name, arguments)])
        return AssistantMessage(tool_calls=[ToolCall(name, {RAW_ARGUMENTS: text})])
    found = _TOOL_NAME_IN_TEXT.search(text)
    return AssistantMessage(tool_calls=[ToolCall(found.group(1) if found else _UNPARSED, {RAW_ARGUMENTS: text})])


def arguments_text(call: ToolCall, *, compact: bool) -> str:
    """The arguments as the model wrote them: the raw text of a malformed call, else JSON."""
    if set(call.arguments) == {RAW_ARGUMENTS} and isinstance(call.arguments[RAW_ARGUMENTS], str):
        return str(call.arguments[RAW_ARGUMENTS])
    return compact_json(call.arguments) if compact else json.dumps(call.arguments, ensure_ascii=False)


def _envelope_text(message: AssistantMessage, final_answer: bool) -> str:
    if message.tool_calls:
        # Default separators reproduce the text llama.cpp generated, so its prompt cache can reuse it.
        return "\n".join(
            arguments_text(c, compact=False)
            if set(c.arguments) == {RAW_ARGUMENTS}
            else json.dumps({"tool": c.name, "arguments": c.arguments}, ensure_ascii=False)
            for c in message.tool_calls
        )
    text = message.content or ""
    if final_answer:
        return json.dumps({"tool": FINAL_ANSWER, "arguments": {"answer": text}}, ensure_ascii=False)
    return text


def _final_call(final: str) -> str:
    """The envelope that ends the run, spelled out: small models copy a JSON pattern they were just shown."""
    if final == FINAL_ANSWER:
        return json.dumps({"tool": FINAL_ANSWER, "arguments": {"answer": "..."}})
    return f'{{"tool": "{final}", "arguments": {{...}}}}'


def envelope_messages(messages: Sequence[Message], tools: Sequence[dict[str, Any]]) -> list[dict[str, Any]]:
    """Convert history for envelope mode.

    Tool calls become envelope JSON, tool results become user messages, and the instructions join the
    first system message. Adjacent user messages merge, for chat templates that need turns to alternate.
    """
    templates = _templates()
    final_answer = offers_final_answer(tools)
    final = FINAL_RESULT if any(t["name"] == FINAL_RESULT for t in tools) else FINAL_ANSWER
    final_call = _final_call(final)
    out: list[dict[str, Any]] = []
    for message in messages:
        if isinstance(message, AssistantMessage):
            item = {"role": "assistant", "content": _envelope_text(message, final_answer)}
        elif isinstance(message, ToolMessage):
            template = templates["error" if message.is_error else "result"]
            call_id = f" ({message.call_id})" if message.call_id else ""
            text = template.substitute(
                name=message.name, call_id=call_id, content=message.content, final=final, final_call=final_call
            )
            item = {"role": "user", "content": text}
        else:
            item = {"role": message.role, "content": message.content}
        if out and item["role"] == "user" and out[-1]["role"] == "user":
            out[-1] = {"role": "user", "content": f"{out[-1]['content']}\n\n{item['content']}"}
        else:
            out.append(item)
    instructions = envelope_prompt(tools)
    if out and out[0]["role"] == "system":
        out[0] = {"role": "system", "content": f"{out[0]['content']}\n\n{instructions}"}
    else:
        out.insert(0, {"role": "system", "content": instructions})
    return out
