"""Taint: content from outside cannot unlock an action on its own.

Detecting a prompt injection is a guess; this policy does not guess. It marks what came from outside
(the results of tools declared ``untrusted``: web pages, emails, documents, MCP servers, the knowledge
base and recalled memories, plus any result `ContentFilter` flagged) and, once such content is in the
conversation, holds each side-effecting call for a person (or denies it). Argument provenance refines
that: a call whose values all come from the person's own messages, the system prompt or trusted tool
results goes through, while one carrying a value that appears only in tainted content waits.

Everything is computed from the conversation and the tools' declarations, so a resumed run, which
replays its messages, decides exactly as before.

Example:
    >>> from keel import Agent, tool
    >>> @tool(untrusted=True)
    ... def fetch_page(url: str) -> str:
    ...     '''Fetch a web page.
    ...
    ...     Args:
    ...         url: the address.
    ...     '''
    ...     return "..."
    >>> policy = TaintPolicy()  # side-effecting calls after fetch_page wait, unless their values are the user's
"""

from __future__ import annotations

import re
import unicodedata
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from decimal import Decimal, InvalidOperation
from typing import Any, Literal

from ..exceptions import ConfigError
from ..messages import AssistantMessage, SystemMessage, ToolCall, ToolMessage, UserMessage
from ..tools import Tool
from ._base import ALLOW, Decision, Policy, PolicyContext
from .filters import UNTRUSTED

__all__ = ["Provenance", "TaintPolicy", "provenance"]

Mode = Literal["values", "strict", "off"]
_INVISIBLE = re.compile("[\u00ad\u180e\u200b-\u200f\u202a-\u202e\u2060-\u2064\u2066-\u206f\ufeff]")
_NUMBER = re.compile(r"\d+(?:[.,'\u00a0\u202f]\d+)*")
_SPACED_NUMBER = re.compile(r"(?<![\d.,])\d{1,3}(?: \d{3})+(?![\d.,])")
_ATOM = re.compile(r"[^\s,;()\[\]{}<>\"']*[\d@][^\s,;()\[\]{}<>\"']*")
_GLUE = re.compile(r"[\s\-./]")
_COMPACT_MIN = 8  # an id this long is also found written with other spacing (an IBAN in groups of four)
_LONG_TEXT_WORDS = 4  # a free-text value this long is compared whole; shorter phrases only by their ids and numbers


def _normal(text: str) -> str:
    """Text as compared: NFKC, invisible characters dropped, case folded, whitespace collapsed."""
    text = _INVISIBLE.sub("", unicodedata.normalize("NFKC", text))
    return " ".join(text.casefold().split())


def _canonical(number: Decimal) -> str:
    number = number.normalize()
    return format(number.quantize(Decimal(1)) if number == number.to_integral() else number, "f")


def _numbers(text: str) -> set[str]:
    """Every reading of every number in `text`: ``5.000,50`` is 5000.5, ``34.90`` is 34.9 (and 3490)."""
    out: set[str] = set()
    for token in [m.group() for m in _NUMBER.finditer(text)] + [m.group() for m in _SPACED_NUMBER.finditer(text)]:
        groups = re.split(r"[^\d]", token)
        readings = ["".join(groups), *groups]
        separators = re.findall(r"[.,]", token)
        if separators:
            head, _, tail = token.rpartition(separators[-1])
            readings.append(re.sub(r"\D", "", head) + "." + tail)
        for reading in readings:
            try:
                out.add(_canonical(Decimal(reading)))
            except InvalidOperation:
                continue
    return out


def _as_number(value: str) -> str | None:
    try:
        return _canonical(Decimal(value.replace(",", "").replace("_", "").strip()))
    except InvalidOperation:
        return None


@dataclass(frozen=True, slots=True)
class _Atom:
    """One value of a call to look for: a number (canonical), an id (digits or an address) or a text."""

    text: str
    kind: Literal["number", "id", "text"]
    shown: str

    @property
    def number(self) -> bool:
        return self.kind == "number"


def _string_atom(text: str, shown: str) -> _Atom:
    return _Atom(text, "id" if re.search(r"[\d@]|://", text) else "text", shown)


def _atoms(value: Any) -> Iterator[_Atom]:
    """The values of a call's arguments worth tracing: numbers, ids, addresses, long texts."""
    if isinstance(value, bool) or value is None:
        return
    if isinstance(value, dict):
        for item in value.values():
            yield from _atoms(item)
    elif isinstance(value, list | tuple):
        for item in value:
            yield from _atoms(item)
    elif isinstance(value, int | float | Decimal):
        try:
            yield _Atom(_canonical(Decimal(str(value))), "number", str(value))
        except InvalidOperation:
            return
    elif isinstance(value, str):
        text = _normal(value)
        if not text:
            return
        number = _as_number(text)
        words = text.split()
        if number is not None:
            yield _Atom(number, "number", value)
        elif len(words) > 1 and all(re.search(r"\d", w) for w in words):  # an id written in groups
            yield _Atom(text, "id", value)
            return
        elif " " not in text or len(text.split()) >= _LONG_TEXT_WORDS:
            yield _string_atom(text, value) if " " not in text else _Atom(text, "text", value)
        if " " in text:  # the ids, amounts and addresses inside a phrase
            for m in _ATOM.finditer(text):
                token = m.group().strip(".:!?")
                if not token:
                    continue
                number = _as_number(token)
                yield _Atom(number, "number", token) if number is not None else _string_atom(token, token)
    else:
        yield _string_atom(_normal(str(value)), str(value))


@dataclass(slots=True)
class _Corpus:
    """Normalised texts of one trust level, searched for values."""

    texts: list[str] = field(default_factory=list)
    _numbers: set[str] | None = None
    _compact: str | None = None

    def add(self, text: str) -> None:
        if text:
            self.texts.append(_normal(text))
            self._numbers = self._compact = None

    def has(self, atom: _Atom) -> bool:
        if atom.number:
            if self._numbers is None:
                self._numbers = set().union(*(_numbers(t) for t in self.texts)) if self.texts else set()
            return atom.text in self._numbers
        pattern = re.compile(r"(?<!\w)" + re.escape(atom.text) + r"(?!\w)")
        if any(pattern.search(t) for t in self.texts):
            return True
        compact = _GLUE.sub("", atom.text)
        if atom.kind != "id" or len(compact) < _COMPACT_MIN:
            return False
        if self._compact is None:
            self._compact = "\n".join(_GLUE.sub("", t) for t in self.texts)
        return compact in self._compact


@dataclass(frozen=True, slots=True)
class Provenance:
    """Where a conversation's content came from, as the policy sees it.

    Attributes:
        sources: the tools (and ``memory``) whose content is tainted, in order of arrival.
        tainted: the normalised tainted texts.
        trusted: the normalised texts of the person, the system prompt and trusted tools.
    """

    sources: tuple[str, ...]
    tainted: tuple[str, ...]
    trusted: tuple[str, ...]

    def from_tainted(self, arguments: dict[str, Any]) -> list[str]:
        """The argument values not accounted for by trusted content.

        Those are the values that appear in tainted content and nowhere trusted, and the numbers and
        ids (a value with digits, an email address, a URL) that appear nowhere trusted: an amount
        spelled out in an injection ("cinco mil") is written in digits by the model. Free text the
        model wrote itself (a reason, a summary) passes unless it is copied from tainted content.
        """
        return _carried(arguments, _Corpus(list(self.tainted)), _Corpus(list(self.trusted)))

    def untraced(self, arguments: dict[str, Any]) -> list[str]:
        """The argument values that appear nowhere trusted (tainted, or made up)."""
        trusted = _Corpus(list(self.trusted))
        return _unique(a.shown for a in _atoms(arguments) if not trusted.has(a))


def _unique(values: Iterator[str]) -> list[str]:
    return list(dict.fromkeys(values))


def _carried(arguments: dict[str, Any], tainted: _Corpus, trusted: _Corpus) -> list[str]:
    return _unique(a.shown for a in _atoms(arguments) if not trusted.has(a) and (a.kind != "text" or tainted.has(a)))


def provenance(ctx: PolicyContext, untrusted: Sequence[str] = (), *, memories: bool = True) -> Provenance:
    """Split the conversation in `ctx` into tainted and trusted content.

    Tainted: results of tools declared ``untrusted`` or named in `untrusted`, results `ContentFilter`
    marked as a possible injection, (when `memories`) recalled memories in the system message, and
    the result of any call made with values only tainted content gave (a trusted tool that echoes
    its arguments does not launder them). Trusted: the system prompt, the person's messages and
    every other tool's results. A result that never ran (a refusal) is keel's own text and trusted.
    """
    from ..memory._agent import split_recalled

    names = set(untrusted)
    sources: list[str] = []
    tainted, trusted = _Corpus(), _Corpus()
    calls: dict[str, ToolCall] = {}
    for message in ctx.messages:
        if isinstance(message, AssistantMessage):
            calls.update((c.id, c) for c in message.tool_calls)
        if isinstance(message, SystemMessage):
            own, recalled = split_recalled(message.content or "")
            trusted.add(own)
            if recalled and memories:
                tainted.add(recalled)
                sources.append("memory")
            else:
                trusted.add(recalled)
        elif isinstance(message, UserMessage):
            trusted.add(message.content)
        elif isinstance(message, ToolMessage) and not message.rejected:
            tool = ctx.tools.get(message.name)
            outside = message.name in names or (tool is not None and getattr(tool, "untrusted", False))
            call = calls.get(message.call_id)
            fed = bool(sources) and call is not None and bool(_carried(call.arguments, tainted, trusted))
            if outside or fed or message.content.startswith(UNTRUSTED):
                tainted.add(message.content)
                sources.append(message.name)
            else:
                trusted.add(message.content)
    return Provenance(tuple(_unique(iter(sources))), tuple(tainted.texts), tuple(trusted.texts))


class TaintPolicy(Policy):
    """After content from outside entered the conversation, a side-effecting call waits for a person.

    Args:
        on_taint: ``pause`` (the call waits for approval; default) or ``deny`` (the model is told why).
        provenance: ``values`` (default): a call waits when one of its argument values appears in
            tainted content and nowhere trusted, or is a number or id (digits, an email address, a URL)
            that appears nowhere trusted; free text the model wrote itself passes; ``strict``: a call
            goes through only when every value appears in trusted content; ``off``: every guarded call
            after tainted content waits.
        tools: the guarded tools; default every tool declared ``side_effects`` and not ``taint_safe``.
        untrusted: more tools whose results are tainted, besides those declared ``untrusted``.
        memories: recalled long-term memories are tainted; default True.

    Raises:
        ConfigError: an unknown `on_taint` or `provenance`, or a tool list given as one string.
    """

    def __init__(
        self,
        *,
        on_taint: Literal["pause", "deny"] = "pause",
        provenance: Mode = "values",
        tools: Sequence[str] | None = None,
        untrusted: Sequence[str] = (),
        memories: bool = True,
    ) -> None:
        if on_taint not in ("pause", "deny"):
            raise ConfigError(f"TaintPolicy: on_taint must be 'pause' or 'deny', got {on_taint!r}")
        if provenance not in ("values", "strict", "off"):
            raise ConfigError(f"TaintPolicy: provenance must be 'values', 'strict' or 'off', got {provenance!r}")
        for option, value in (("tools", tools), ("untrusted", untrusted)):
            if isinstance(value, str):
                raise ConfigError(f"TaintPolicy: {option} must be a list of tool names, got the string {value!r}")
        self.on_taint = on_taint
        self.provenance: Mode = provenance
        self.tools = None if tools is None else frozenset(tools)
        self.untrusted = tuple(untrusted)
        self.memories = memories

    def guards(self, tool: Tool) -> bool:
        """Whether calls to `tool` are held after tainted content."""
        if self.tools is not None:
            return tool.name in self.tools
        return tool.side_effects and not getattr(tool, "taint_safe", False)

    async def before_tool(self, ctx: PolicyContext, call: ToolCall, tool: Tool) -> Decision:
        """Hold a guarded call made after tainted content, unless its values are all accounted for."""
        if not self.guards(tool):
            return ALLOW
        seen = provenance(ctx, self.untrusted, memories=self.memories)
        if not seen.sources:
            return ALLOW
        origin = ", ".join(seen.sources)
        if self.provenance == "off":
            why = f"{call.name} would run after content from outside ({origin}) entered the conversation"
        elif self.provenance == "strict":
            values = seen.untraced(call.arguments)
            if not values:
                return ALLOW
            why = (
                f"{call.name} would run after content from outside ({origin}) with values found in no message "
                f"of the person and no trusted result: {_show(values)}"
            )
        else:
            values = seen.from_tainted(call.arguments)
            if not values:
                return ALLOW
            why = (
                f"{call.name} would run after content from outside ({origin}) with values that no message of "
                f"the person and no trusted result gave: {_show(values)}"
            )
        if self.on_taint == "deny":
            return Decision.deny(f"{why}; it was not run: ask the person to confirm these values in their own words")
        return Decision.pause(f"{why}; check that the person, not that content, wants it")


def _show(values: list[str], limit: int = 5) -> str:
    shown = ", ".join(repr(v[:60]) for v in values[:limit])
    return shown + (f" and {len(values) - limit} more" if len(values) > limit else "")
