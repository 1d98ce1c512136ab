"""Bad agent configuration is a ConfigError that names the fix."""

from __future__ import annotations

import pydantic
import pytest

from keel import Agent, ConfigError, Runtime, UsageError, tool
from keel.models import ScriptedModel, resolve_model


@tool
def lookup(order_id: str) -> str:
    """Look up an order."""
    return order_id


def test_unknown_model_string_names_the_valid_forms() -> None:
    with pytest.raises(ConfigError, match=r"unknown model 'gpt-4o'.*'openai:<model>'"):
        Agent("a", "gpt-4o")


def test_scripted_string_points_to_the_class() -> None:
    with pytest.raises(ConfigError, match="ScriptedModel"):
        resolve_model("scripted")


def test_duplicate_tool_names() -> None:
    def find(order_id: str) -> str:
        """Find an order."""
        return order_id

    other = tool(name="lookup")(find)
    with pytest.raises(ConfigError, match="two tools are named 'lookup'.*rename one"):
        Agent("a", ScriptedModel([]), tools=[lookup, other])


def test_reserved_tool_name() -> None:
    @tool
    def give_up(reason: str) -> str:
        """Nope."""
        return reason

    with pytest.raises(ConfigError, match="reserved"):
        Agent("a", ScriptedModel([]), tools=[give_up])


@pytest.mark.parametrize("name", ["", "has space", "x" * 65, "émoji"])
def test_invalid_agent_name(name: str) -> None:
    with pytest.raises(ConfigError, match="agent name"):
        Agent(name, ScriptedModel([]))


@pytest.mark.parametrize(
    ("kwargs", "field"),
    [
        ({"max_steps": 0}, "max_steps"),
        ({"output_retries": -1}, "output_retries"),
        ({"context_budget": 0}, "context_budget"),
        ({"output_type": dict}, "output_type"),
        ({"policies": ["not a policy"]}, "policies"),
    ],
)
def test_invalid_settings_name_the_field(kwargs: dict[str, object], field: str) -> None:
    with pytest.raises(ConfigError, match=field):
        Agent("a", ScriptedModel([]), **kwargs)  # type: ignore[arg-type]


def test_plain_functions_become_tools() -> None:
    def double(x: int) -> int:
        """Double x."""
        return 2 * x

    agent = Agent("a", ScriptedModel([]), tools=[double])
    assert agent.tools_by_name["double"].parameters["required"] == ["x"]


def test_empty_task_is_a_usage_error() -> None:
    with pytest.raises(UsageError, match="non-empty"):
        Agent("a", ScriptedModel(["x"])).run_sync("  ", runtime=Runtime.in_memory())


def test_invalid_database_url() -> None:
    with pytest.raises(ConfigError, match="sqlite:///"):
        Runtime("mysql://nope")


def test_output_type_schema_offered_as_final_result() -> None:
    class Out(pydantic.BaseModel):
        answer: str

    agent = Agent("a", ScriptedModel([]), output_type=Out)
    spec = next(s for s in agent.tool_specs if s["name"] == "final_result")
    assert spec["parameters"]["required"] == ["answer"]
