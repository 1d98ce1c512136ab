"""``keel run``: run an agent on a task, showing each step live."""

from __future__ import annotations

import asyncio
from typing import Annotated

import typer

from .. import Agent, Runtime
from .._seam import RunResult
from ..models import resolve_model
from ._approvals import print_next_steps
from ._common import LiveView, console, exits, fail_input, load_target, print_result

__all__ = ["TARGET_FORMAT", "run", "run_task"]

TARGET_FORMAT = "path/to/file.py:agent or package.module:agent"


def run_task(agent: Agent, task: str, runtime: Runtime, view: LiveView | None) -> RunResult:
    """Run `agent` on `task` to its end, rendering each step with `view` when given."""
    return asyncio.run(agent.run(task, runtime=runtime, on_event=view))


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
        result = run_task(agent, task, runtime, None if as_json else LiveView(console))
        code = print_result(result, as_json)
        print_next_steps(runtime, result, target, db)
    raise typer.Exit(code)
