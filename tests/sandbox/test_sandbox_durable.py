"""run_python in a durable run on real SQLite: the sandbox result is journaled and never re-executed."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path

import pytest
import sqlalchemy as sa

from keel import Agent, Runtime
from keel.models import ScriptedModel, ToolCall
from keel.sandbox import BubblewrapBackend, ExecutionRequest, ExecutionResult, python_tool


class Counting:
    """The real bubblewrap backend, counting the executions it performs."""

    def __init__(self, inner: BubblewrapBackend) -> None:
        self.inner, self.name, self.runs = inner, inner.name, 0

    def unavailable_reason(self) -> str | None:
        return self.inner.unavailable_reason()

    def run(self, request: ExecutionRequest) -> ExecutionResult:
        self.runs += 1
        return self.inner.run(request)


@pytest.fixture
def db_url(tmp_path: Path) -> Iterator[str]:
    from keel.durable import DurableEngine

    yield f"sqlite:///{tmp_path / 'keel.db'}"
    DurableEngine.close()


def test_a_sandbox_run_is_journaled_and_replayed_not_re_executed(bubblewrap: BubblewrapBackend, db_url: str) -> None:
    backend = Counting(bubblewrap)
    tool = python_tool(backend)
    script = [ToolCall("run_python", {"code": "print(2 ** 10)"}), "1024"]
    first = Agent("coder", ScriptedModel(script), tools=[tool]).run_sync(
        "compute", runtime=Runtime(db_url), run_id="run_sandbox_1"
    )
    assert (first.status, first.output, backend.runs) == ("done", "1024", 1)

    engine = sa.create_engine(db_url)
    with engine.connect() as conn:
        rows = conn.execute(sa.text("SELECT name FROM keel_steps WHERE run_id = 'run_sandbox_1' ORDER BY seq")).all()
    engine.dispose()
    assert [r[0] for r in rows] == ["model", "tool:run_python", "model"]

    again = Agent("coder", ScriptedModel([]), tools=[tool]).run_sync(
        "compute", runtime=Runtime(db_url), run_id="run_sandbox_1"
    )
    assert again.to_dict() == first.to_dict() and backend.runs == 1
    tool_message = json.loads(next(m for m in first.to_dict()["messages"] if m.get("role") == "tool")["content"])
    assert tool_message == {"exit_code": 0, "stdout": "1024\n"}
