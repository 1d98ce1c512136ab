"""The ``keel`` command line: run agents and watch each step live, manage runs, approvals and workers.

Exit codes: 0 done or ok, 1 failed, 2 bad input (an unknown id, a run in the wrong state, a malformed
option), 3 waiting for approval or attention (commands that run or resume a run).

The commands live in ``_cli_runs`` (``keel runs``), ``_cli_approvals`` (``keel approvals``),
``_cli_worker`` (``keel worker``) and ``_cli_mcp`` (``keel mcp``); what they share is in ``_cli_common``.
"""

from __future__ import annotations

import asyncio
import sys
from pathlib import Path
from typing import Annotated, Any

import typer
from rich.markup import escape

from . import Agent, Runtime
from ._cli_approvals import approvals_app, print_next_steps
from ._cli_common import (
    BAD_INPUT,
    EXIT_CODES,
    LiveView,
    console,
    exits,
    fail_input,
    load_target,
    out,
    print_result,
)
from ._cli_eval import eval_command
from ._cli_mcp import mcp_app
from ._cli_runs import runs_app
from ._cli_serve import keys_app, runs_feedback, serve
from ._cli_worker import worker
from ._seam import RunResult
from .exceptions import ConfigError, KeelError, UsageError
from .models import resolve_model

__all__ = ["BAD_INPUT", "EXIT_CODES", "LiveView", "app", "fail_input", "load_target", "main"]

app = typer.Typer(add_completion=False, no_args_is_help=True, help="keel: run AI agents in production.")

TARGET_FORMAT = "path/to/file.py:agent or package.module:agent"


def _run(agent: Agent, task: str, runtime: Runtime, view: LiveView | None) -> RunResult:
    return asyncio.run(agent.run(task, runtime=runtime, on_event=view))


@app.command()
def run(
    target: Annotated[str | None, typer.Argument(help=f"the agent: {TARGET_FORMAT}", show_default=False)] = None,
    task: Annotated[str | None, typer.Argument(help="what the agent should do", show_default=False)] = None,
    model: Annotated[str | None, typer.Option(help="a model string overriding the agent's")] = None,
    db: Annotated[
        str | None, typer.Option(help="database URL (default KEEL_DATABASE_URL); 'memory' keeps none")
    ] = None,
    as_json: Annotated[bool, typer.Option("--json", help="print the result as JSON, without the live view")] = False,
) -> None:
    """Run an agent on a task, showing each step live."""
    # TARGET and TASK are checked here rather than by the parser, so the error can show the fix.
    if not target:
        raise fail_input(f'missing TARGET: name the agent, as in: keel run {TARGET_FORMAT.split()[0]} "the task"')
    if not task:
        raise fail_input(f'missing TASK: say what the agent should do, as in: keel run {target} "the task"')
    with exits():
        agent = load_target(target)
        if model is not None:
            agent = agent.with_model(resolve_model(model))
        runtime = Runtime(db)
        result = _run(agent, task, runtime, None if as_json else LiveView(console))
        code = print_result(result, as_json)
        print_next_steps(runtime, result, target, db)
    raise typer.Exit(code)


def _demo_target() -> Path:
    candidates = [
        Path.cwd() / "examples" / "support" / "agent.py",
        Path(__file__).resolve().parents[2] / "examples" / "support" / "agent.py",
    ]
    for path in candidates:
        if path.is_file():
            return path
    raise ConfigError("the support example was not found; run `keel demo` from a checkout of keel (examples/support/)")


@app.command()
def demo(
    model: Annotated[str | None, typer.Option(help="a model string (default: the embedded local model)")] = None,
    db: Annotated[str | None, typer.Option(help="database URL (default KEEL_DATABASE_URL)")] = None,
) -> None:
    """Run the flagship customer-support agent on a few tasks with the embedded model."""
    try:
        path = _demo_target()
        agent = load_target(f"{path}:agent")
        module = sys.modules["_keel_target_agent"]
        tasks: list[str] = list(getattr(module, "DEMO_TASKS", []))
        if model is not None:
            agent = agent.with_model(resolve_model(model))
        runtime = Runtime(db)
    except (ConfigError, UsageError) as exc:
        raise fail_input(str(exc)) from None
    summary: list[tuple[str, RunResult]] = []
    for task in tasks:
        console.rule(f"[bold]{escape(task)}")
        try:
            result = _run(agent, task, runtime, LiveView(console))
        except KeelError as exc:
            console.print(f"[bold red]error:[/] {escape(str(exc))}", soft_wrap=True)
            raise typer.Exit(1) from None
        summary.append((task, result))
    console.rule("[bold]answers")
    for task, result in summary:
        answer: Any = result.output if result.status == "done" else f"({result.status}: {result.error})"
        out.print(f"[bold]Q:[/] {escape(task)}\n[bold]A:[/] {escape(str(answer))}\n")
    # The demo succeeds when it ran every task and at least one finished; each status is shown above.
    raise typer.Exit(0 if any(r.status == "done" for _, r in summary) else 1)


app.add_typer(runs_app, name="runs")
app.add_typer(approvals_app, name="approvals")
app.add_typer(mcp_app, name="mcp")
app.command()(worker)
app.command()(serve)
app.add_typer(keys_app, name="keys")
runs_app.command("feedback")(runs_feedback)
app.command(name="eval")(eval_command)


def main() -> None:
    """Entry point of the ``keel`` command."""
    app()


if __name__ == "__main__":
    main()
