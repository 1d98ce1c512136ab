"""The support agent's run_python tool: a calculation in a real sandbox, through the agent's loop."""

from __future__ import annotations

import importlib.util
import json
import sys
from pathlib import Path

import pytest

from keel import Runtime
from keel.models import ScriptedModel, ToolCall
from keel.sandbox import BubblewrapBackend

ROOT = Path(__file__).resolve().parents[2]
AGENT_FILE = ROOT / "examples" / "support" / "agent.py"


def test_the_support_agent_adds_up_prices_in_the_sandbox() -> None:
    reason = BubblewrapBackend().unavailable_reason()
    if reason is not None:
        pytest.skip(f"bubblewrap cannot run here: {reason}")
    spec = importlib.util.spec_from_file_location("_support_agent_sandbox", AGENT_FILE)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    sys.modules.pop("_support_agent_sandbox", None)
    assert any("run_python" in task for task in module.DEMO_TASKS)

    seen: list[str] = []

    def script(messages, tools):  # type: ignore[no-untyped-def]
        if len(messages) > 2:
            seen.append(messages[-1].content)
            return f"The total is {json.loads(seen[-1])['stdout'].strip()} euros."
        return ToolCall("run_python", {"code": "19.90 + 34.90 + 4.95"})

    agent = module.agent.with_model(ScriptedModel(script))
    result = agent.run_sync("Use run_python to add up 19.90, 34.90 and 4.95 for me.", runtime=Runtime.in_memory())
    assert result.status == "done", result.error
    assert json.loads(seen[0]) == {"exit_code": 0, "stdout": f"{19.90 + 34.90 + 4.95!r}\n"}
    assert result.output == f"The total is {19.90 + 34.90 + 4.95!r} euros."
