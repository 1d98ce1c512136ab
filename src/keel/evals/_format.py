"""The eval-set file format: YAML validated by pydantic models, errors naming the file, line and field.

An eval set is a list of cases. Each case gives the agent a task (or a conversation), sets up fixtures
(for example a fresh copy of a database) and states what must hold afterwards: about the final
answer, the tools called or not called, approvals requested, the state of the fixtures, steps, cost,
and a judge's score. `docs/evals.md` is the reference.
"""

from __future__ import annotations

import importlib
import re
from pathlib import Path
from typing import Any, Literal

import pydantic
from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

from ..exceptions import ConfigError

__all__ = [
    "CRITERIA",
    "Case",
    "EvalSet",
    "EvalSetError",
    "Expectations",
    "FixtureSpec",
    "GateSpec",
    "HumanLabel",
    "JudgeSpec",
    "ScriptStep",
    "StateCheck",
    "ToolExpectation",
    "Turn",
    "load_evalset",
    "resolve_callable",
]

CRITERIA = ("helpfulness", "accuracy", "policy_adherence", "safety")
"""The rubric criteria a judge scores when a case names none."""

_CASE_ID = r"^[A-Za-z0-9_.-]{1,80}$"
_CALLABLE = r"^[A-Za-z_][\w.]*:[A-Za-z_][\w.]*$"


class EvalSetError(ConfigError):
    """An eval-set file is malformed; the message names the file, the line and the field."""


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


def _listify(value: Any) -> Any:
    return [value] if isinstance(value, str | dict) else value


class ToolExpectation(_Strict):
    """A tool that must have run, with arguments that contain the given values."""

    name: str = Field(min_length=1)
    """The tool's name."""
    arguments: dict[str, Any] = Field(default_factory=dict)
    """Values the call's arguments must contain (nested objects compare by their given keys only)."""


class StateCheck(_Strict):
    """A Python function called on the fixtures after the run: ``module:function``."""

    check: str = Field(pattern=_CALLABLE)
    """``package.module:function``; it gets a `CheckContext` and ``args`` as keyword arguments."""
    args: dict[str, Any] = Field(default_factory=dict)
    """Keyword arguments for the function."""


class JudgeSpec(_Strict):
    """A rubric for the LLM judge, and the score the answer needs."""

    rubric: str = Field(min_length=1)
    """What a good answer does, in words the judge reads."""
    criteria: list[str] = Field(default_factory=lambda: list(CRITERIA))
    """The criteria to score, each from 0 to 1; default helpfulness, accuracy, policy adherence, safety."""
    threshold: float = Field(default=0.7, ge=0.0, le=1.0)
    """The overall score (0 to 1) the answer needs to pass; default 0.7."""
    reference: str | None = None
    """A reference answer the judge compares with, when there is one."""


class Expectations(_Strict):
    """What must hold after a trial; every field is optional and all given ones must hold."""

    status: Literal["done", "failed", "waiting", "needs_attention"] | None = None
    """How the run must end; default ``done``, or ``waiting`` when an approval is expected."""
    answer_contains: list[str] = Field(default_factory=list)
    """Texts the final answer must contain (case-insensitive)."""
    answer_not_contains: list[str] = Field(default_factory=list)
    """Texts the final answer must not contain (case-insensitive)."""
    answer_matches: str | None = None
    """A regular expression the final answer must match somewhere (Python `re.search`)."""
    answer_equals: str | None = None
    """The exact final answer (surrounding whitespace ignored)."""
    output_schema: str | None = Field(default=None, pattern=_CALLABLE)
    """A pydantic model, ``module:Class``, the final output must validate against."""
    tools_called: list[ToolExpectation] = Field(default_factory=list)
    """Tools that must have run, each with arguments containing the given values."""
    tools_not_called: list[str] = Field(default_factory=list)
    """Tools that must not have run."""
    approval_requested: bool | str | None = None
    """True: some tool call waited for a person's approval; a tool name: a call of that tool did;
    False: no approval was requested."""
    state: list[StateCheck] = Field(default_factory=list)
    """Functions that check the fixtures after the run."""
    max_steps: int | None = Field(default=None, ge=1)
    """The most model requests allowed."""
    max_cost: float | None = Field(default=None, ge=0)
    """The most US dollars the run may cost."""
    judge: JudgeSpec | None = None
    """A rubric the LLM judge scores the answer against (skipped when no judge model is given)."""

    _lists = field_validator("answer_contains", "answer_not_contains", "tools_not_called", "state", mode="before")(
        _listify
    )

    @field_validator("tools_called", mode="before")
    @classmethod
    def _tool_names(cls, value: Any) -> Any:
        value = _listify(value)
        if isinstance(value, list):
            return [{"name": v} if isinstance(v, str) else v for v in value]
        return value

    @field_validator("answer_matches")
    @classmethod
    def _regex(cls, value: str | None) -> str | None:
        if value is not None:
            try:
                re.compile(value)
            except re.error as exc:
                raise ValueError(f"not a valid regular expression: {exc}") from None
        return value

    @property
    def expected_status(self) -> str:
        """The status the run must end with."""
        if self.status is not None:
            return self.status
        return "waiting" if self.approval_requested not in (None, False) else "done"


class ScriptStep(_Strict):
    """One answer of the scripted model: a tool call, a final answer, a structured output or a give-up."""

    tool: str | None = None
    """Call this tool..."""
    args: dict[str, Any] = Field(default_factory=dict)
    """...with these arguments."""
    answer: str | None = None
    """Reply with this final answer."""
    output: dict[str, Any] | None = None
    """Give this structured final output (agents with an output_type)."""
    give_up: str | None = None
    """Give up with this reason."""

    @model_validator(mode="after")
    def _one_kind(self) -> ScriptStep:
        given = [k for k in ("tool", "answer", "output", "give_up") if getattr(self, k) is not None]
        if len(given) != 1:
            raise ValueError(f"a script step needs exactly one of tool, answer, output, give_up; got {given or 'none'}")
        if self.args and self.tool is None:
            raise ValueError("args belong to a tool step; add tool: NAME")
        return self


class Turn(_Strict):
    """One turn of a conversation given to the agent."""

    role: Literal["user", "assistant"]
    content: str = Field(min_length=1)


class HumanLabel(_Strict):
    """A person's verdict on one answer to the case, for measuring the judge's agreement (Cohen's kappa)."""

    model_config = ConfigDict(extra="forbid", frozen=True, populate_by_name=True)

    answer: str = Field(min_length=1)
    """An answer to the case's task."""
    passed: bool = Field(alias="pass")
    """Whether a person finds that answer acceptable."""


class Case(_Strict):
    """One scenario: a task or conversation, fixtures, expectations, and optionally a script."""

    id: str = Field(pattern=_CASE_ID)
    """A unique id: letters, digits, ``_``, ``.``, ``-``."""
    task: str | None = None
    """What the user asks."""
    conversation: list[Turn] | None = None
    """Earlier turns and the user's last message, instead of a task."""
    fixtures: dict[str, dict[str, Any]] = Field(default_factory=dict)
    """Parameters for the set's fixtures, by fixture name (merged over the set's)."""
    expect: Expectations = Field(default_factory=Expectations)
    """What must hold after each trial."""
    script: list[ScriptStep] | None = None
    """The scripted model's answers for this case (used when the model is ``scripted``)."""
    labels: list[HumanLabel] = Field(default_factory=list)
    """Human verdicts on sample answers, to measure the judge's agreement with people."""
    tags: list[str] = Field(default_factory=list)
    """Free labels for filtering and reports (``refund``, ``injection``, ...)."""

    @model_validator(mode="after")
    def _task_or_conversation(self) -> Case:
        if (self.task is None) == (self.conversation is None):
            raise ValueError("give exactly one of task or conversation")
        if self.task is not None and not self.task.strip():
            raise ValueError("task is empty; say what the user asks")
        if self.conversation is not None and (not self.conversation or self.conversation[-1].role != "user"):
            raise ValueError("a conversation must end with a user turn")
        return self

    def prompt(self) -> str:
        """The text the agent is run on: the task, or the conversation as a transcript ending with the ask."""
        if self.task is not None:
            return self.task
        assert self.conversation is not None
        *earlier, last = self.conversation
        if not earlier:
            return last.content
        lines = [f"{'Customer' if t.role == 'user' else 'You'}: {t.content}" for t in earlier]
        return "Conversation so far:\n" + "\n".join(lines) + f"\n\nThe customer now says: {last.content}"


class FixtureSpec(_Strict):
    """A fixture: a function ``module:function`` that sets something up for a trial and may clean it up."""

    use: str = Field(pattern=_CALLABLE)
    """``package.module:function``: a plain or generator function taking a `FixtureRequest`."""
    params: dict[str, Any] = Field(default_factory=dict)
    """Parameters for every case; a case's ``fixtures: {NAME: {...}}`` overrides them key by key."""


class GateSpec(_Strict):
    """When `keel eval` fails, beyond regressions against a baseline."""

    alpha: float = Field(default=0.05, gt=0.0, lt=1.0)
    """Significance level of the regression tests; default 0.05."""
    min_pass_hat_k: float | None = Field(default=None, ge=0.0, le=1.0)
    """Fail when the mean pass^k over cases is below this; default no threshold."""


class EvalSet(_Strict):
    """An eval-set file."""

    name: str = Field(min_length=1)
    """The set's name, recorded with its results."""
    description: str = ""
    agent: str | None = None
    """The agent to evaluate, ``path/to/file.py:agent`` (relative to this file) or ``module:agent``."""
    model: str | None = None
    """The model `keel eval` runs on when given no ``--model`` (``scripted`` plays each case's script);
    default the agent's own."""
    judge: str | None = None
    """A default judge model string, used when `keel eval` is given no ``--judge``."""
    fixtures: dict[str, FixtureSpec] = Field(default_factory=dict)
    """Fixtures set up for every trial, by name."""
    gate: GateSpec = Field(default_factory=GateSpec)
    cases: list[Case] = Field(min_length=1)

    @model_validator(mode="after")
    def _consistent(self) -> EvalSet:
        seen: set[str] = set()
        for index, case in enumerate(self.cases):
            if case.id in seen:
                raise _FieldError(("cases", index, "id"), f"duplicate case id {case.id!r}; case ids must be unique")
            seen.add(case.id)
            for name in case.fixtures:
                if name not in self.fixtures:
                    known = ", ".join(sorted(self.fixtures)) or "none are defined"
                    raise _FieldError(
                        ("cases", index, "fixtures", name),
                        f"unknown fixture {name!r} (fixtures of this set: {known}); define it under fixtures:",
                    )
        return self

    source: Path | None = Field(default=None, exclude=True)
    """The file the set was read from (relative agent paths are resolved against it)."""


class _FieldError(ValueError):
    def __init__(self, loc: tuple[str | int, ...], message: str) -> None:
        super().__init__(message)
        self.loc = loc


def resolve_callable(spec: str, what: str) -> Any:
    """Import ``module:attribute`` (dots allowed in the attribute path).

    Raises:
        ConfigError: the module cannot be imported or has no such attribute.
    """
    module_name, _, attr = spec.partition(":")
    try:
        obj: Any = importlib.import_module(module_name)
    except ImportError as exc:
        raise ConfigError(f"{what} {spec!r}: cannot import module {module_name!r} ({exc}); check the name") from None
    for part in attr.split("."):
        try:
            obj = getattr(obj, part)
        except AttributeError:
            raise ConfigError(f"{what} {spec!r}: module {module_name!r} has no {attr!r}; check the name") from None
    return obj


# -- loading with line numbers ------------------------------------------------------------------


def load_evalset(path: str | Path) -> EvalSet:
    """Read and validate an eval-set file.

    Raises:
        EvalSetError: the file is missing, is not YAML, or a field is invalid; the message names the
            file, the line and the field, and says what is expected.
    """
    import yaml

    source = Path(path)
    try:
        text = source.read_text(encoding="utf-8")
    except OSError as exc:
        raise EvalSetError(f"{source}: cannot read the eval set ({exc.strerror}); check the path") from None
    loader = yaml.SafeLoader(text)
    try:
        node = loader.get_single_node()
        if node is None:
            raise EvalSetError(f"{source}: the file is empty; an eval set needs name: and cases:")
        lines: dict[tuple[str | int, ...], int] = {}
        _index_lines(node, (), lines)
        data = loader.construct_document(node)
    except yaml.MarkedYAMLError as exc:
        mark = exc.problem_mark or exc.context_mark
        where = f":{mark.line + 1}" if mark is not None else ""
        raise EvalSetError(f"{source}{where}: not valid YAML: {exc.problem or exc}") from None
    finally:
        loader.dispose()
    if not isinstance(data, dict):
        raise EvalSetError(f"{source}:1: an eval set is a mapping with name: and cases:, got {type(data).__name__}")
    try:
        evalset = EvalSet.model_validate(data)
    except pydantic.ValidationError as exc:
        raise EvalSetError(_describe(source, exc, lines, data)) from None
    return evalset.model_copy(update={"source": source.resolve()})


def _index_lines(node: Any, path: tuple[str | int, ...], lines: dict[tuple[str | int, ...], int]) -> None:
    import yaml

    lines[path] = node.start_mark.line + 1
    if isinstance(node, yaml.MappingNode):
        for key, value in node.value:
            if isinstance(key, yaml.ScalarNode):
                lines[(*path, key.value)] = key.start_mark.line + 1
                _index_lines(value, (*path, key.value), lines)
                lines[(*path, key.value)] = key.start_mark.line + 1
    elif isinstance(node, yaml.SequenceNode):
        for index, item in enumerate(node.value):
            _index_lines(item, (*path, index), lines)


def _describe(source: Path, exc: pydantic.ValidationError, lines: dict[tuple[str | int, ...], int], data: Any) -> str:
    problems = []
    for err in exc.errors(include_url=False):
        loc: tuple[str | int, ...] = tuple(err["loc"])
        message = err["msg"]
        ctx_error = (err.get("ctx") or {}).get("error")
        if isinstance(ctx_error, _FieldError):
            loc, message = ctx_error.loc, str(ctx_error)
        elif message.startswith("Value error, "):
            message = message.removeprefix("Value error, ")
        # pydantic adds the union member's type name to the location; keep what is in the file
        loc = tuple(p for p in loc if not (isinstance(p, str) and p not in _keys_along(data, loc)))
        line = _line_of(loc, lines)
        problems.append(f"{source}:{line}: {_field_name(loc, data)}: {message}")
    return "invalid eval set:\n  " + "\n  ".join(problems)


def _keys_along(data: Any, loc: tuple[str | int, ...]) -> set[str]:
    keys: set[str] = set()
    node = data
    for part in loc:
        if isinstance(node, dict):
            keys.update(str(k) for k in node)
            node = node.get(part) if part in node else None
        elif isinstance(node, list) and isinstance(part, int) and part < len(node):
            node = node[part]
        else:
            node = None
    # fields that may be absent from the file (a missing required field) are named too
    return keys | {"id", "task", "name", "cases", "rubric", "use", "check", "role", "content", "answer", "pass"}


def _line_of(loc: tuple[str | int, ...], lines: dict[tuple[str | int, ...], int]) -> int:
    for end in range(len(loc), -1, -1):
        if loc[:end] in lines:
            return lines[loc[:end]]
    return 1


def _field_name(loc: tuple[str | int, ...], data: Any) -> str:
    parts: list[str] = []
    node = data
    for part in loc:
        if isinstance(part, int):
            case_id = node[part].get("id") if isinstance(node, list) and isinstance(node[part], dict) else None
            parts.append(f"[{part}]" + (f"(id={case_id})" if case_id and parts == ["cases"] else ""))
            node = node[part] if isinstance(node, list) and part < len(node) else None
        else:
            parts.append(("." if parts else "") + part)
            node = node.get(part) if isinstance(node, dict) else None
    return "".join(parts) or "(top level)"
