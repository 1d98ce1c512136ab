"""``keel runs``: list, show, resume, cancel, fork, prune and resolve durable runs, and record feedback on them."""

from __future__ import annotations

import asyncio
import dataclasses
import enum
import json
import re
import time
from typing import TYPE_CHECKING, Annotated, Any

import typer
from rich import box
from rich.markup import escape
from rich.table import Table

from .._runtime import Runtime
from ..approvals import is_due
from ..exceptions import UsageError
from ._approvals import approvals_view, decide_commands, print_decided, print_next_steps
from ._common import (
    LiveView,
    clip,
    console,
    db_flag,
    exits,
    fail_input,
    load_target,
    open_store,
    out,
    print_json,
    print_result,
    user_name,
    when,
)

if TYPE_CHECKING:
    from ..durable import RunRecord

__all__ = ["parse_duration", "runs_app"]

runs_app = typer.Typer(no_args_is_help=True, help="Durable runs: list, show, resume, cancel, fork, prune, resolve.")

DbOption = Annotated[str | None, typer.Option("--db", help="database URL (default KEEL_DATABASE_URL)")]
JsonOption = Annotated[bool, typer.Option("--json", help="print plain JSON on standard output")]
RunId = Annotated[str, typer.Argument(help="the run (see `keel runs list`)")]

STATUSES = ("queued", "running", "waiting", "needs_attention", "done", "failed", "cancelled")
STATUS_STYLE = {
    "done": "green",
    "failed": "red",
    "cancelled": "dim",
    "waiting": "yellow",
    "needs_attention": "yellow",
    "queued": "cyan",
    "running": "cyan",
}
DURATION = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*([smhd])\s*$")
UNIT_SECONDS = {"s": 1, "m": 60, "h": 3600, "d": 86400}


def _styled(status: str) -> str:
    style = STATUS_STYLE.get(status)
    return f"[{style}]{status}[/]" if style else status


def _record_dict(record: RunRecord, *, with_result: bool = True) -> dict[str, Any]:
    data = dataclasses.asdict(record)
    if not with_result:
        result = data.pop("result") or {}
        data["output"] = result.get("output")
    return data


def _usage(usage: dict[str, Any]) -> str:
    text = f"{usage.get('input_tokens', 0)}+{usage.get('output_tokens', 0)} tokens"
    text += f", {usage.get('requests', 0)} requests"
    cost = float(usage.get("cost_usd") or 0.0)
    return text + (f", ${cost:.4f}" if cost else "")


def parse_duration(text: str) -> float:
    """Seconds in a duration such as ``90s``, ``15m``, ``12h`` or ``30d``.

    Raises:
        UsageError: the text is not a number followed by s, m, h or d.
    """
    match = DURATION.match(text)
    if match is None:
        raise UsageError(
            f"--older-than {text!r} is not a duration; use a number and a unit (s, m, h or d), as in 90s, 15m, 12h, 30d"
        )
    return float(match.group(1)) * UNIT_SECONDS[match.group(2)]


@runs_app.command("list")
def list_runs(
    status: Annotated[
        str | None, typer.Option("--status", help=f"only runs in this state: {', '.join(STATUSES)}")
    ] = None,
    agent: Annotated[str | None, typer.Option("--agent", help="only runs of this agent")] = None,
    limit: Annotated[int, typer.Option("--limit", min=1, help="at most this many runs")] = 50,
    db: DbOption = None,
    as_json: JsonOption = False,
) -> None:
    """List runs, newest first."""
    if status is not None and status not in STATUSES:
        raise fail_input(f"--status {status!r} is not a run state; use one of: {', '.join(STATUSES)}")
    with exits():
        found = Runtime(db, create=False).runs(status=status, agent=agent, limit=limit)
    if as_json:
        print_json([_record_dict(r, with_result=False) for r in found])
        return
    if not found:
        out.print("no runs" + (" with these filters" if status or agent else ""))
        return
    table = Table(box=box.SIMPLE_HEAD, pad_edge=False)
    # Ids fold rather than truncate, so a narrow terminal still shows every character to copy.
    table.add_column("run", overflow="fold", min_width=10)
    table.add_column("status", no_wrap=True, min_width=6)
    table.add_column("agent", overflow="fold", min_width=6)
    table.add_column("steps", justify="right", min_width=5)
    table.add_column("tokens", justify="right", min_width=6)
    table.add_column("updated", min_width=10)
    table.add_column("task", overflow="ellipsis", no_wrap=True, max_width=60, min_width=8)
    for r in found:
        tokens = int(r.usage.get("input_tokens", 0)) + int(r.usage.get("output_tokens", 0))
        table.add_row(
            r.run_id, _styled(r.status), escape(r.agent), str(r.steps), str(tokens), when(r.updated_at), escape(r.task)
        )
    out.print(table)


def _print_message(message: dict[str, Any]) -> None:
    role, content = message.get("role"), message.get("content") or ""
    if role == "system":
        if content:
            out.print(f"[dim]system[/] [dim]{escape(clip(content, 200))}[/]", soft_wrap=True)
    elif role == "user":
        out.print(f"[bold cyan]user[/] {escape(content)}", soft_wrap=True)
    elif role == "assistant":
        if content:
            out.print(f"[bold green]assistant[/] {escape(content)}", soft_wrap=True)
        for call in message.get("tool_calls") or []:
            arguments = escape(json.dumps(call.get("arguments") or {}))
            out.print(f"[bold green]assistant[/] [yellow]→ {escape(call['name'])}[/]({arguments})", soft_wrap=True)
    elif role == "tool":
        style = "red" if message.get("is_error") else "blue"
        flags = [f for f in ("rejected", "truncated") if message.get(f)]
        suffix = f"  [dim]({', '.join(flags)})[/]" if flags else ""
        name = escape(str(message.get("name")))
        out.print(f"[bold {style}]tool[/] [{style}]← {name}[/] {escape(content)}{suffix}", soft_wrap=True)


@runs_app.command()
def show(run_id: RunId, db: DbOption = None, as_json: JsonOption = False) -> None:
    """Show a run: its state, usage, conversation and pending approvals."""
    with exits():
        runtime = Runtime(db, create=False)
        record = runtime.get(run_id)
        pending = runtime.approvals(run_id=run_id)
    if as_json:
        print_json({**_record_dict(record), "pending_approvals": [a.to_dict() for a in pending]})
        return
    result = record.result or {}
    grid = Table.grid(padding=(0, 2))
    grid.add_column(style="bold", no_wrap=True)
    grid.add_column(overflow="fold")
    grid.add_row("run", record.run_id)
    grid.add_row("status", _styled(record.status))
    grid.add_row("agent", escape(record.agent))
    grid.add_row("task", escape(record.task))
    grid.add_row("steps", str(record.steps))
    grid.add_row("usage", _usage(record.usage))
    if record.error:
        grid.add_row(
            "error", f"[red]{escape(record.error)}[/]" + (f" ({record.error_type})" if record.error_type else "")
        )
    if record.status == "done" and result.get("output") is not None:
        output = result["output"]
        grid.add_row("output", escape(output if isinstance(output, str) else json.dumps(output)))
    grid.add_row("created", when(record.created_at))
    grid.add_row("updated", when(record.updated_at))
    grid.add_row("parent", record.parent_run or "-")
    grid.add_row("worker", record.worker or "-")
    out.print(grid)
    if result.get("plan"):
        _print_plan(result["plan"])
    messages = result.get("messages") or []
    out.rule("conversation", align="left")
    if not messages:
        out.print("[dim](no conversation recorded yet: the run has not finished a segment)[/]")
    for message in messages:
        _print_message(message)
    if pending:
        out.print()
        out.print(approvals_view(pending, title="pending approvals"))
        for approval in pending:
            for command in decide_commands(approval, db):
                out.print(command, soft_wrap=True)


def _print_plan(plan: dict[str, Any]) -> None:
    """The run's plan (explicit planning): its goal, then each step with its status."""
    out.rule(f"plan (version {plan.get('version', 1)})", align="left")
    out.print(f"[bold]goal[/] {escape(str(plan.get('goal')))}")
    styles = {"done": "green", "failed": "red"}
    for number, step in enumerate(plan.get("steps") or [], 1):
        status = str(step.get("status", "pending"))
        hint = f" [dim]({escape(str(step['tool']))})[/]" if step.get("tool") else ""
        note = f" - {escape(str(step['note']))}" if step.get("note") else ""
        line = f"[{styles.get(status, 'yellow')}]{status:>7}[/] {number}. {escape(str(step.get('action')))}{hint}{note}"
        out.print(line, soft_wrap=True)


def _refuse_pending(runtime: Runtime, run_id: str, db: str | None) -> None:
    """A run whose request is still pending cannot move: say which request to decide first."""
    now = time.time()
    pending = [a for a in runtime.approvals(run_id=run_id) if not is_due(a, now)]
    if pending:
        commands = [command for a in pending for command in decide_commands(a, db)]
        raise UsageError(
            f"run {run_id!r} waits for a decision on {', '.join(a.id for a in pending)}; decide first: "
            + "; ".join(" ".join(c.split()) for c in commands)
        )


@runs_app.command()
def resume(
    run_id: RunId,
    target: Annotated[
        str | None,
        typer.Option("--target", help="continue here with this agent (FILE.py:agent); without it, queue for a worker"),
    ] = None,
    db: DbOption = None,
    as_json: JsonOption = False,
) -> None:
    """Continue a run that waited, was interrupted or stopped: here (--target) or on any worker.

    Exit codes with --target: 0 done, 1 failed, 2 bad input, 3 waiting again.
    """
    with exits():
        agent = load_target(target) if target is not None else None
        runtime = Runtime(db, create=False)
        runtime.get(run_id)
        _refuse_pending(runtime, run_id, db)
        if agent is None:
            record = runtime.requeue(run_id)
            if as_json:
                print_json(_record_dict(record))
            else:
                out.print(
                    f"run {run_id} is queued: a worker with agent {record.agent!r} continues it "
                    f"(keel worker FILE.py:agent{db_flag(db)})",
                    soft_wrap=True,
                )
            return
        view = None if as_json else LiveView(console)
        result = asyncio.run(runtime.resume(agent, run_id, on_event=view))
        code = print_result(result, as_json)
        print_next_steps(runtime, result, target, db)
    raise typer.Exit(code)


@runs_app.command()
def cancel(run_id: RunId, db: DbOption = None, as_json: JsonOption = False) -> None:
    """Cancel a run that has not finished; pending approvals are rejected and its state is kept."""
    with exits():
        record = Runtime(db, create=False).cancel(run_id)
    if as_json:
        print_json(_record_dict(record))
    else:
        out.print(f"cancelled run {run_id} after {record.steps} steps")


@runs_app.command()
def fork(
    run_id: RunId,
    from_step: Annotated[
        int | None, typer.Option("--from-step", min=0, help="keep this many model steps of the run's history")
    ] = None,
    db: DbOption = None,
    as_json: JsonOption = False,
) -> None:
    """Start a new run from the first N steps of another; it is queued for a worker. Prints the new id."""
    if from_step is None:
        raise fail_input(
            f"--from-step is required: how many model steps to keep (keel runs fork {run_id} --from-step 1)"
        )
    with exits():
        record = Runtime(db, create=False).fork(run_id, from_step)
    if as_json:
        print_json(_record_dict(record))
        return
    out.print(record.run_id)
    console.print(
        f"forked from step {from_step} of {run_id}; queued for a worker (keel worker FILE.py:agent{db_flag(db)})",
        soft_wrap=True,
    )


@runs_app.command()
def prune(
    older_than: Annotated[
        str | None, typer.Option("--older-than", help="age since the last update: 90s, 15m, 12h, 30d")
    ] = None,
    db: DbOption = None,
    as_json: JsonOption = False,
) -> None:
    """Delete finished runs (done, failed, cancelled) not updated for a while, with their steps and approvals."""
    if older_than is None:
        raise fail_input("--older-than is required: how old a finished run must be to go, as in --older-than 30d")
    with exits():
        seconds = parse_duration(older_than)
        removed = Runtime(db, create=False).prune(seconds)
    if as_json:
        print_json({"pruned": removed, "older_than_seconds": seconds})
    else:
        out.print(f"pruned {len(removed)} finished run(s) not updated for {older_than.strip()}")


class Resolution(enum.StrEnum):
    """How a person resolves a run that needs attention (the argument of ``keel runs resolve``)."""

    retry = "retry"
    skip = "skip"
    fail = "fail"
    continue_ = "continue"


@runs_app.command()
def resolve(
    approval_id: Annotated[str, typer.Argument(help="the request (see `keel approvals list`)")],
    decision: Annotated[
        Resolution,
        typer.Argument(
            help="interrupted call: retry, skip (with --result) or fail; pause: continue (model sees --note) or fail"
        ),
    ],
    result: Annotated[str | None, typer.Option("--result", help="the result to record for a skipped call")] = None,
    note: Annotated[str | None, typer.Option("--note", help="a note; the model sees it when the run continues")] = None,
    by: Annotated[str | None, typer.Option("--by", help="who decides (default: your OS user name)")] = None,
    db: DbOption = None,
    as_json: JsonOption = False,
) -> None:
    """Decide a run that needs attention; it is queued for a worker."""
    with exits():
        runtime = Runtime(db, create=False)
        decided = runtime.resolve(approval_id, decision.value, by=by or user_name(), note=note, result=result)
        print_decided(decided, runtime, db, as_json)


@runs_app.command("feedback")
def runs_feedback(
    run_id: Annotated[str, typer.Argument(help="the run (see `keel runs list`)")],
    thumbs: Annotated[str | None, typer.Option("--thumbs", help="up or down")] = None,
    score: Annotated[int | None, typer.Option("--score", help="1 (worst) to 5 (best)")] = None,
    comment: Annotated[str | None, typer.Option("--comment", help="what the user said")] = None,
    db: DbOption = None,
    as_json: JsonOption = False,
) -> None:
    """Record a user's satisfaction with a run: thumbs, a score, or both, and a comment."""
    from ..observe.feedback import record_feedback

    with exits():
        item = record_feedback(open_store(db), run_id, thumbs=thumbs, score=score, comment=comment, by=user_name())
    if as_json:
        print_json(item.to_dict())
        return
    console.print(f"feedback {item.id} on run {run_id}: satisfaction {item.satisfaction:.2f}")
