"""What the ``keel`` commands share: consoles, error handling, agent targets, the live step view."""

from __future__ import annotations

import contextlib
import datetime
import getpass
import importlib
import importlib.util
import json
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import TYPE_CHECKING, Any

import typer
from rich.console import Console
from rich.markup import escape

from ..agent import Agent
from ..events import RunEvent
from ..exceptions import ConfigError, KeelError, UsageError

if TYPE_CHECKING:
    from .._seam import RunResult

console = Console(stderr=True, highlight=False)
"""Progress, tables for people and errors: standard error."""
out = Console(highlight=False)
"""Results: standard output."""

EXIT_CODES = {"done": 0, "failed": 1, "waiting": 3, "needs_attention": 3}
"""Exit code of a command that ran or resumed a run, by the run's status."""
BAD_INPUT = 2
"""Exit code for bad input: an unknown id, a run in the wrong state, a malformed option."""
RUNTIME_FAILURE = 1
"""Exit code when keel failed at run time."""


def fail_input(message: str) -> typer.Exit:
    """Print a bad-input error and return the exit to raise (code 2)."""
    console.print(f"[bold red]error:[/] {escape(message)}", soft_wrap=True)
    return typer.Exit(BAD_INPUT)


@contextlib.contextmanager
def exits() -> Iterator[None]:
    """Turn keel's errors into ``error: <message>`` on stderr and the matching exit code.

    `ConfigError` and `UsageError` (the caller's mistakes) exit 2; any other `KeelError` exits 1.
    """
    try:
        yield
    except (ConfigError, UsageError) as exc:
        raise fail_input(str(exc)) from None
    except KeelError as exc:
        console.print(f"[bold red]error:[/] {escape(str(exc))}", soft_wrap=True)
        raise typer.Exit(RUNTIME_FAILURE) from None


def print_json(data: Any) -> None:
    """Print `data` as plain JSON on standard output."""
    sys.stdout.write(json.dumps(data, indent=2, default=str) + "\n")
    sys.stdout.flush()


def when(timestamp: float | None) -> str:
    """A timestamp (seconds since the epoch) as local ``YYYY-MM-DD HH:MM:SS``, or ``-``."""
    if timestamp is None:
        return "-"
    return datetime.datetime.fromtimestamp(timestamp).strftime("%Y-%m-%d %H:%M:%S")


def clip(text: str, limit: int) -> str:
    """`text` on one line, cut to `limit` characters with an ellipsis."""
    flat = " ".join(text.split())
    return flat if len(flat) <= limit else flat[: limit - 1] + "…"


def user_name() -> str:
    """The OS user name, recorded as who decided; ``unknown`` when the OS has none for this process."""
    try:
        return getpass.getuser()
    except (OSError, KeyError):  # no login name and no passwd entry (some containers)
        return "unknown"


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
        """Render one event; of a resumed run's replay, only the run's heading (the rest was shown before)."""
        c, d = self.console, event.data
        if event.replayed and event.kind != "run_started":
            return
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
        elif event.kind == "tools_withheld":
            c.print(f"  [magenta]{d['policy']}[/] withheld every tool: {escape(d['reason'])}")
        elif event.kind == "context_trimmed":
            c.print(f"  [dim]context trimmed to {d['tokens']}/{d['budget']} tokens[/]")
        elif event.kind in ("plan_created", "plan_updated"):
            why = f" (after: {escape(d['reason'])})" if event.kind == "plan_updated" else ""
            c.print(f"  [bold]plan v{d['version']}[/]{why}: {escape(d['plan']['goal'])}")
            for number, step in enumerate(d["plan"]["steps"], 1):
                hint = f" [dim]({step['tool']})[/]" if step.get("tool") else ""
                c.print(f"    {number}. {escape(step['action'])}{hint}")
        elif event.kind == "plan_rejected":
            c.print(f"  [red]plan rejected[/] {escape(d['problems'])} (attempt {d['attempt']})")
        elif event.kind == "plan_step_done":
            c.print(f"  [green]✓ plan step {d['plan_step']}[/] {escape(d['note'])}")
        elif event.kind == "plan_step_failed":
            c.print(f"  [red]✗ plan step {d['plan_step']}[/] {escape(d['reason'])}")
        elif event.kind in ("memory_recalled", "memory_written") and d["memories"]:
            verb = "recalled" if event.kind == "memory_recalled" else "remembered"
            for m in d["memories"]:
                score = f" ({m['score']:.2f})" if "score" in m else ""
                c.print(f"  [dim]{verb}{score}[/] {escape(m['text'][:120])}")
        elif event.kind == "run_finished":
            elapsed = time.perf_counter() - self.started
            style = {"done": "green", "failed": "red"}.get(d["status"], "yellow")
            c.print(
                f"[bold {style}]{d['status']}[/] in {elapsed:.1f}s" + (f": {escape(d['error'])}" if d["error"] else "")
            )


def print_result(result: RunResult, as_json: bool) -> int:
    """Print how a run ended (its output, or all of it as JSON) and return the command's exit code."""
    if as_json:
        print_json(result.to_dict())
    elif result.status == "done":
        output = result.output
        text = output.model_dump_json(indent=2) if hasattr(output, "model_dump_json") else str(output)
        out.print(escape(text), soft_wrap=True)
    return EXIT_CODES.get(result.status, RUNTIME_FAILURE)


def db_flag(db: str | None) -> str:
    """The ``--db`` option to repeat in a suggested command, or nothing for the default database."""
    return f" --db {db}" if db else ""


def database_url(db: str | None) -> str:
    """The database URL of a command that needs a real database (``--db`` or ``KEEL_DATABASE_URL``).

    Raises:
        UsageError: the URL is ``memory``.
    """
    from ..config import settings

    url = db or settings().database_url
    if url == "memory":
        raise UsageError(
            "API keys and feedback live in a database; give --db sqlite:///path/to/keel.db or postgresql://"
        )
    return url


def open_store(db: str | None, *, create: bool = False) -> Any:
    """Keel's tables on the database, migrated, without starting the durable engine.

    A missing database is created only with `create` (by the commands that write one).
    """
    import sqlalchemy as sa

    from .._runtime import check_database
    from ..storage import Store, make_engine

    check_database(database_url(db), create=create)
    store = Store(make_engine(database_url(db)))
    try:
        store.migrate()
    except sa.exc.SQLAlchemyError as exc:
        raise ConfigError(f"cannot open database {database_url(db)!r}: {type(exc).__name__}; check the URL") from exc
    return store
