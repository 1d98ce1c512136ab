"""``keel demo``: the flagship customer-support agent on a few tasks with the embedded model."""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Annotated, Any

import typer
from rich.markup import escape

from .. import Runtime
from .._seam import RunResult
from ..exceptions import ConfigError, KeelError, UsageError
from ..models import resolve_model
from ._common import LiveView, console, fail_input, load_target, out
from ._run import run_task

__all__ = ["demo"]


def _demo_target() -> Path:
    candidates = [
        Path.cwd() / "examples" / "support" / "agent.py",
        Path(__file__).resolve().parents[3] / "examples" / "support" / "agent.py",
    ]
    for path in candidates:
        if path.is_file():
            return path
    raise ConfigError("the support example was not found; run `keel demo` from a checkout of keel (examples/support/)")


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
            result = run_task(agent, task, runtime, LiveView(console))
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
