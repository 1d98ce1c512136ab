"""The ``keel`` command line: run agents and watch each step live.

Exit codes of ``keel run`` and ``keel demo``: 0 done, 1 failed, 2 bad input, 3 waiting for approval or
attention.
"""

from __future__ import annotations

import asyncio
import importlib
import importlib.util
import json
import sys
import time
from pathlib import Path
from typing import Annotated, Any

import typer
from rich.console import Console
from rich.markup import escape

from . import Agent, Runtime
from ._loop import RunResult
from .exceptions import ConfigError, KeelError, UsageError
from .messages import RunEvent
from .models import resolve_model

app = typer.Typer(add_completion=False, no_args_is_help=True, help="keel: run AI agents in production.")
console = Console(stderr=True, highlight=False)
out = Console(highlight=False)

EXIT_CODES = {"done": 0, "failed": 1, "waiting": 3, "needs_attention": 3}
BAD_INPUT = 2


def fail_input(message: str) -> typer.Exit:
    """Print a bad-input error and return the exit to raise (code 2)."""
    console.print(f"[bold red]error:[/] {escape(message)}")
    return typer.Exit(BAD_INPUT)


def load_target(target: str) -> Agent:
    """Load an agent from ``path/to/file.py:name`` or ``package.module:name``.

    Raises:
        ConfigError: the target cannot be found or is not an `Agent`.
    """
    spec, sep, attr = target.rpartition(":")
    if not sep or not spec or not attr:
        raise ConfigError(f"target {target!r} must look like path/to/file.py:agent or package.module:agent")
    if spec.endswith(".py") or "/" in spec:
        path = Path(spec)
        if not path.is_file():
            raise ConfigError(
                f"target file {spec!r} does not exist; give the path to the Python file defining the agent"
            )
        root = str(Path.cwd())
        if root not in sys.path:
            sys.path.insert(0, root)
        name = "_keel_target_" + path.stem
        mod_spec = importlib.util.spec_from_file_location(name, path)
        if mod_spec is None or mod_spec.loader is None:
            raise ConfigError(f"cannot load {spec!r} as a Python module")
        module = importlib.util.module_from_spec(mod_spec)
        sys.modules[name] = module
        mod_spec.loader.exec_module(module)
    else:
        try:
            module = importlib.import_module(spec)
        except ModuleNotFoundError as exc:
            raise ConfigError(
                f"cannot import module {spec!r} ({exc}); check the name and that it is installed"
            ) from exc
    agent = getattr(module, attr, None)
    if agent is None:
        raise ConfigError(f"{spec!r} has no attribute {attr!r}; name the Agent object defined there")
    if not isinstance(agent, Agent):
        raise ConfigError(f"{target!r} is a {type(agent).__name__}, not a keel Agent")
    return agent


class LiveView:
    """Prints each step of a run as it happens."""

    def __init__(self, console: Console) -> None:
        self.console = console
        self.started = time.perf_counter()

    def __call__(self, event: RunEvent) -> None:
        """Render one event."""
        c, d = self.console, event.data
        if event.kind == "run_started":
            c.print(f"[bold]run[/] {event.run_id}  agent [cyan]{d['agent']}[/]  model {d['model']}")
            c.print(f"[bold]task[/] {escape(d['task'])}")
        elif event.kind == "model_response":
            u = d["usage"]
            head = f"[dim]step {event.step}[/] model {d['duration_ms'] / 1000:.1f}s"
            head += f" tokens {u['input_tokens']}+{u['output_tokens']}"
            c.print(head)
            for call in d["tool_calls"]:
                c.print(f"  [yellow]→ {call['name']}[/]({escape(json.dumps(call['arguments']))})")
            if d["content"] and not d["tool_calls"]:
                c.print(f"  [green]answer[/] {escape(d['content'])}")
        elif event.kind == "tool_result":
            text = d["content"] if len(d["content"]) <= 300 else d["content"][:300] + "…"
            style = "red" if d["is_error"] else "blue"
            c.print(f"  [{style}]← {d['name']}[/] {escape(text)}  [dim]{d['duration_ms']:.0f} ms[/]")
        elif event.kind == "output_rejected":
            c.print(f"  [red]rejected[/] {escape('; '.join(d['problems']))} (attempt {d['attempt']})")
        elif event.kind == "policy_decision":
            c.print(f"  [magenta]{d['policy']}[/] {d['action']}: {escape(d['reason'])}")
        elif event.kind == "context_trimmed":
            c.print(f"  [dim]context trimmed to {d['tokens']}/{d['budget']} tokens[/]")
        elif event.kind == "run_finished":
            elapsed = time.perf_counter() - self.started
            style = {"done": "green", "failed": "red"}.get(d["status"], "yellow")
            c.print(
                f"[bold {style}]{d['status']}[/] in {elapsed:.1f}s" + (f": {escape(d['error'])}" if d["error"] else "")
            )


def _run(agent: Agent, task: str, runtime: Runtime, view: LiveView | None) -> RunResult:
    return asyncio.run(agent.run(task, runtime=runtime, on_event=view))


def _print_result(result: RunResult, as_json: bool) -> None:
    if as_json:
        data = result.to_dict()
        out.print_json(json.dumps(data, default=str))
    elif result.status == "done":
        output = result.output
        text = output.model_dump_json(indent=2) if hasattr(output, "model_dump_json") else str(output)
        out.print(escape(text))


@app.command()
def run(
    target: Annotated[str, typer.Argument(help="the agent: path/to/file.py:agent or package.module:agent")],
    task: Annotated[str, typer.Argument(help="what the agent should do")],
    model: Annotated[str | None, typer.Option(help="a model string overriding the agent's")] = None,
    db: Annotated[
        str | None, typer.Option(help="database URL (default KEEL_DATABASE_URL); 'memory' keeps none")
    ] = None,
    as_json: Annotated[bool, typer.Option("--json", help="print the result as JSON, without the live view")] = False,
) -> None:
    """Run an agent on a task, showing each step live."""
    try:
        agent = load_target(target)
        if model is not None:
            agent = agent.with_model(resolve_model(model))
        runtime = Runtime(db)
        result = _run(agent, task, runtime, None if as_json else LiveView(console))
    except (ConfigError, UsageError) as exc:
        raise fail_input(str(exc)) from None
    except KeelError as exc:
        console.print(f"[bold red]error:[/] {escape(str(exc))}")
        raise typer.Exit(1) from None
    _print_result(result, as_json)
    raise typer.Exit(EXIT_CODES[result.status])


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
            console.print(f"[bold red]error:[/] {escape(str(exc))}")
            raise typer.Exit(1) from None
        summary.append((task, result))
    console.rule("[bold]answers")
    for task, result in summary:
        answer: Any = result.output if result.status == "done" else f"({result.status}: {result.error})"
        out.print(f"[bold]Q:[/] {escape(task)}\n[bold]A:[/] {escape(str(answer))}\n")
    # The demo succeeds when it ran every task and at least one finished; each status is shown above.
    raise typer.Exit(0 if any(r.status == "done" for _, r in summary) else 1)


def main() -> None:
    """Entry point of the ``keel`` command."""
    app()


if __name__ == "__main__":
    main()
