"""The ``keel`` command line, in process: `keel run`, input errors, and the run commands on a finished run."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path

import pytest
from typer.testing import CliRunner

from keel import Runtime
from keel.cli import app
from keel.cli._runs import parse_duration
from keel.exceptions import UsageError

AGENT_FILE = '''
import os
from decimal import Decimal
from pathlib import Path

from keel import Agent, tool
from keel.exceptions import Escalate
from keel.models import ScriptedModel, ToolCall
from keel.policies.approvals import RequireApproval


def add(a: int, b: int) -> int:
    """Add two numbers."""
    return a + b


agent = Agent("calc", ScriptedModel([ToolCall("add", {"a": 1, "b": 2}), "The sum is 3."]), tools=[add])
not_an_agent = 42


def check_order(order_id: str) -> str:
    """Check an order with a person."""
    raise Escalate("the customer disputes the charge")


escalating = Agent(
    "escalating", ScriptedModel([ToolCall("check_order", {"order_id": "A-1"}), "Handled."]), tools=[check_order]
)


@tool(side_effects=True)
def refund_order(order_id: str, amount: Decimal) -> str:
    """Refund an order."""
    with Path(os.environ["LEDGER"]).open("a") as f:
        f.write(f"refund {order_id} {amount}\\n")
    return f"refunded {amount} on {order_id}"


refunds = Agent(
    "refunds",
    ScriptedModel([ToolCall("refund_order", {"order_id": "A-1004", "amount": "249.00"}), "Done."]),
    tools=[refund_order],
    policies=[RequireApproval(["refund_order"])],
)
'''

runner = CliRunner()


@pytest.fixture
def agent_file(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> str:
    monkeypatch.chdir(tmp_path)  # no keel.toml of the checkout applies, and .keel/ stays in tmp
    path = tmp_path / "calc_agent.py"
    path.write_text(AGENT_FILE)
    return str(path)


@pytest.fixture
def db(tmp_path: Path) -> Iterator[str]:
    from keel.durable import DurableEngine

    url = f"sqlite:///{tmp_path / 'keel.db'}"
    # Launch the engine here, not inside CliRunner: DBOS binds its log handler to the stderr of the moment,
    # and CliRunner's stderr is closed after each command.
    Runtime(url).runs()
    yield url
    DurableEngine.close()


def keel(*args: str) -> tuple[int, str, str]:
    result = runner.invoke(app, list(args))
    if result.exception is not None and not isinstance(result.exception, SystemExit):
        raise result.exception
    return result.exit_code, result.stdout, result.stderr


def test_run_prints_the_result_as_json_and_the_run_commands_read_it_back(agent_file: str, db: str) -> None:
    code, out, err = keel("run", f"{agent_file}:agent", "add 1 and 2", "--db", db, "--json")
    assert code == 0, err
    data = json.loads(out)
    assert (data["status"], data["output"], data["steps"]) == ("done", "The sum is 3.", 2)
    run_id = data["run_id"]

    code, out, err = keel("runs", "list", "--db", db, "--json")
    assert code == 0, err
    [listed] = json.loads(out)
    assert (listed["run_id"], listed["status"], listed["output"]) == (run_id, "done", "The sum is 3.")
    assert "result" not in listed  # the conversation is for `runs show`

    code, out, err = keel("runs", "show", run_id, "--db", db)
    assert code == 0, err
    for expected in (run_id, "done", "calc", "add 1 and 2", "conversation", '→ add({"a": 1, "b": 2})', "← add 3"):
        assert expected in out
    assert "The sum is 3." in out

    code, out, err = keel("runs", "cancel", run_id, "--db", db)
    assert code == 2
    assert "already finished (done)" in err

    code, out, err = keel("runs", "resume", run_id, "--db", db)
    assert code == 2
    assert "already finished" in err and "keel runs fork" in err

    code, out, err = keel("runs", "show", "run_nope", "--db", db)
    assert code == 2
    assert err.startswith("error: run 'run_nope' does not exist") and "keel runs list" in err

    code, out, err = keel("approvals", "approve", "apv_nope", "--db", db)
    assert code == 2
    assert "does not exist" in err and "keel approvals list" in err

    code, out, err = keel("approvals", "list", "--db", db, "--json")
    assert (code, json.loads(out)) == (0, [])


def test_a_paused_run_is_resolved_and_resumed_here(agent_file: str, db: str) -> None:
    target = f"{agent_file}:escalating"
    code, out, err = keel("run", target, "check order A-1", "--db", db, "--json")
    assert code == 3, err
    run_id = json.loads(out)["run_id"]
    assert json.loads(out)["status"] == "needs_attention"
    [request] = json.loads(keel("approvals", "list", "--db", db, "--json")[1])
    assert (request["kind"], request["run_id"]) == ("pause", run_id)

    code, _, err = keel("approvals", "approve", request["id"], "--db", db)
    assert code == 2 and "is a pause request, not an approval; decide it with `keel runs resolve`" in err
    code, _, err = keel("runs", "resolve", request["id"], "retry", "--db", db)
    assert code == 2 and "does not fit a pause request; use one of: continue, fail" in err

    decision = ["continue", "--note", "refund it", "--by", "alice", "--db", db, "--json"]
    code, out, err = keel("runs", "resolve", request["id"], *decision)
    assert code == 0, err
    assert (json.loads(out)["status"], json.loads(out)["decided_by"]) == ("decided", "alice")

    code, out, err = keel("runs", "resume", run_id, "--target", target, "--db", db)
    assert (code, out.strip()) == (0, "Handled."), err
    [decided] = json.loads(keel("approvals", "list", "--all", "--run", run_id, "--db", db, "--json")[1])
    assert (decided["status"], decided["decided_by"], decided["note"]) == ("decided", "alice", "refund it")
    assert decided["decision"]["decision"] == "continue"


def test_an_edited_call_runs_with_the_new_arguments_and_a_rejected_one_not_at_all(
    agent_file: str, db: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    ledger = tmp_path / "ledger"
    monkeypatch.setenv("LEDGER", str(ledger))
    target = f"{agent_file}:refunds"
    first = json.loads(keel("run", target, "refund A-1004", "--db", db, "--json")[1])["run_id"]
    second = json.loads(keel("run", target, "refund A-1004 again", "--db", db, "--json")[1])["run_id"]
    pending = json.loads(keel("approvals", "list", "--db", db, "--json")[1])
    by_run = {a["run_id"]: a["id"] for a in pending}

    code, _, err = keel("approvals", "approve", by_run[first], "--hash", "0" * 64, "--db", db)
    assert code == 2 and "is for other arguments than the ones given" in err and "review the request again" in err

    edited = '{"order_id": "A-1004", "amount": "100.00"}'
    code, out, err = keel("approvals", "edit", by_run[first], "--arguments", edited, "--note", "partial", "--db", db)
    assert code == 0, err
    assert 'refund_order({"order_id": "A-1004", "amount": "100.00"}) (edited)' in out
    code, out, err = keel(
        "approvals", "reject", by_run[second], "--reason", "needs a receipt", "--by", "bo", "--db", db
    )
    assert code == 0, err
    assert f"rejected {by_run[second]}" in out

    for run_id in (first, second):
        code, out, err = keel("runs", "resume", run_id, "--target", target, "--db", db)
        assert (code, out.strip()) == (0, "Done."), err
    assert ledger.read_text().splitlines() == ["refund A-1004 100.00"]
    messages = json.loads(keel("runs", "show", second, "--db", db, "--json")[1])["result"]["messages"]
    tool_messages = [m for m in messages if m["role"] == "tool"]
    assert tool_messages[0]["content"] == "rejected by bo: needs a receipt"

    code, out, _ = keel("approvals", "list", "--all", "--db", db)
    assert code == 0 and "approved" in out and "rejected" in out


def test_run_shows_each_step_live_and_prints_the_answer(agent_file: str) -> None:
    code, out, err = keel("run", f"{agent_file}:agent", "add 1 and 2", "--db", "memory")
    assert code == 0, err
    assert out.strip() == "The sum is 3."
    assert "→ add" in err and "done in" in err


@pytest.mark.parametrize(
    ("args", "problem", "fix"),
    [
        ((), "missing TARGET", "path/to/file.py:agent"),
        (("{file}:agent",), "missing TASK", "say what the agent should do"),
        (("no-colon", "task"), "must look like", "path/to/file.py:agent or package.module:agent"),
        (("missing.py:agent", "task"), "does not exist", "give the path to the Python file"),
        (("{file}:nobody", "task"), "has no attribute 'nobody'", "name the Agent object"),
        (("{file}:not_an_agent", "task"), "is a int, not a keel Agent", "not a keel Agent"),
        (("no_such_module_xyz:agent", "task"), "cannot import module", "check the name"),
    ],
)
def test_a_missing_or_bad_target_exits_2_naming_the_fix(
    agent_file: str, args: tuple[str, ...], problem: str, fix: str
) -> None:
    code, out, err = keel("run", *(a.format(file=agent_file) for a in args), "--db", "memory")
    assert code == 2
    assert err.startswith("error: ")
    assert problem in err and fix in err
    assert out == ""


def test_an_unknown_model_exits_2(agent_file: str) -> None:
    code, _, err = keel("run", f"{agent_file}:agent", "add", "--model", "nosuch:model", "--db", "memory")
    assert code == 2
    assert "unknown model 'nosuch:model'" in err and "openai:<model>" in err


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (("runs", "prune", "--older-than", "3 weeks"), "use a number and a unit (s, m, h or d), as in 90s"),
        (("runs", "prune"), "--older-than is required"),
        (("runs", "list", "--status", "finished"), "use one of: queued, running"),
        (("runs", "fork", "run_x"), "--from-step is required"),
        (("approvals", "edit", "apv_x", "--arguments", "{amount: 5}"), "--arguments is not valid JSON (Expecting"),
        (("approvals", "edit", "apv_x", "--arguments", "[1, 2]"), "must be a JSON object"),
        (("approvals", "edit", "apv_x"), "--arguments is required"),
        (("approvals", "reject", "apv_x"), "--reason is required"),
        (("worker",), "missing TARGET"),
        (("runs", "list", "--db", "memory"), "in-memory runtime keeps no runs"),
        (("runs", "list", "--db", "mysql://x"), "is not supported; use sqlite:///"),
    ],
)
def test_malformed_options_exit_2_naming_the_problem(args: tuple[str, ...], message: str) -> None:
    code, out, err = keel(*args)
    assert code == 2
    assert err.startswith("error: ") and message in err
    assert out == ""


def test_resolve_takes_only_known_decisions() -> None:
    code, _, err = keel("runs", "resolve", "apv_x", "approve")
    assert code == 2
    assert "retry" in err and "continue" in err


def test_durations() -> None:
    assert [parse_duration(t) for t in ("90s", "15m", "12h", "30d", "0s", "1.5h")] == [
        90,
        900,
        43_200,
        2_592_000,
        0,
        5400,
    ]
    for bad in ("", "30", "d", "-1d", "1w", "1 d x"):
        with pytest.raises(UsageError, match="90s, 15m, 12h, 30d"):
            parse_duration(bad)


def test_each_command_group_lives_in_its_own_module() -> None:
    import typer.main

    command = typer.main.get_command(app)
    assert isinstance(command, typer.main.TyperGroup)
    homes: dict[str, set[str]] = {}
    for name, sub in command.commands.items():
        callbacks = [sub.callback] if not isinstance(sub, typer.main.TyperGroup) else []
        if isinstance(sub, typer.main.TyperGroup):
            callbacks = [c.callback for c in sub.commands.values()]
        homes[name] = {c.__module__ for c in callbacks if c is not None}
    expected = {
        "run": "_run", "demo": "_demo", "runs": "_runs", "approvals": "_approvals", "mcp": "_mcp",
        "worker": "_worker", "serve": "_serve", "keys": "_keys", "eval": "_eval",
    }  # fmt: skip
    assert homes == {name: {f"keel.cli.{module}"} for name, module in expected.items()}


def test_the_attention_choice_is_a_resolution_not_a_second_decision() -> None:
    from keel.cli import _runs

    assert not hasattr(_runs, "Decision")  # keel.policies.Decision is the only Decision
    assert [r.value for r in _runs.Resolution] == ["retry", "skip", "fail", "continue"]
