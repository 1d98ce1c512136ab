"""``keel approvals``: list the requests for a person's decision, and approve, reject or edit them."""

from __future__ import annotations

import json
from typing import TYPE_CHECKING, Annotated, Any

import typer
from rich import box
from rich.console import Group, RenderableType
from rich.markup import escape
from rich.table import Table

from .. import approvals as _approvals
from .._runtime import Runtime
from ._common import clip, console, db_flag, exits, fail_input, out, print_json, user_name, when

if TYPE_CHECKING:
    from .._seam import RunResult
    from ..durable import Approval

__all__ = ["approvals_app", "approvals_view", "decide_commands", "print_decided", "print_next_steps"]

approvals_app = typer.Typer(no_args_is_help=True, help="Requests for a person's decision: list, approve, reject, edit.")

DbOption = Annotated[str | None, typer.Option("--db", help="database URL (default KEEL_DATABASE_URL)")]
JsonOption = Annotated[bool, typer.Option("--json", help="print plain JSON on standard output")]
ByOption = Annotated[str | None, typer.Option("--by", help="who decides, as recorded (default: your OS user name)")]
NoteOption = Annotated[str | None, typer.Option("--note", help="a note recorded with the decision")]

STATUS_STYLE = {"pending": "yellow", "approved": "green", "rejected": "red", "expired": "dim", "decided": "cyan"}


def _expires(approval: Approval) -> str:
    if approval.expires_at is None:
        return "never"
    if _approvals.is_due(approval):
        return f"{when(approval.expires_at)} (overdue)"
    return when(approval.expires_at)


COLUMNS = ("id", "run", "tool", "arguments", "reason", "requested", "expires", "status")
WIDE = 110
"""Below this console width, requests print as blocks of fields instead of a table too narrow to read."""


def _cells(a: Approval) -> tuple[str, ...]:
    tool = a.tool or "-"
    if a.kind != "approval":
        tool = f"{tool} ({a.kind})" if a.tool else f"({a.kind})"
    arguments = "-" if a.arguments is None else clip(json.dumps(a.arguments), 80)
    style = STATUS_STYLE.get(a.status, "")
    status = f"[{style}]{a.status}[/]" if style else a.status
    reason = clip(a.reason, 120)
    return a.id, a.run_id, escape(tool), escape(arguments), escape(reason), when(a.requested_at), _expires(a), status


def approvals_view(approvals: list[Approval], *, title: str | None = None, width: int | None = None) -> RenderableType:
    """Requests as a table of id, run, tool, arguments, reason, requested, expires and status.

    Args:
        approvals: the requests.
        title: a heading.
        width: the console's width (default: standard output's); narrow consoles get one block per request.
    """
    if (width or out.width) < WIDE:
        blocks: list[RenderableType] = [f"[bold]{title}[/]"] if title else []
        for a in approvals:
            grid = Table.grid(padding=(0, 2))
            grid.add_column(style="bold", no_wrap=True)
            grid.add_column(overflow="fold")
            for name, cell in zip(COLUMNS, _cells(a), strict=True):
                grid.add_row(name, cell)
            blocks += [grid, ""]
        return Group(*blocks)
    table = Table(title=title, title_justify="left", box=box.SIMPLE_HEAD, pad_edge=False)
    for name in COLUMNS:
        # Ids fold rather than truncate, so every character stays there to copy.
        table.add_column(name, overflow="fold", no_wrap=name in ("requested", "expires", "status"))
    for a in approvals:
        table.add_row(*_cells(a))
    return table


def decide_commands(approval: Approval, db: str | None) -> list[str]:
    """The commands that decide a pending request."""
    flag = db_flag(db)
    if approval.kind == "approval":
        return [
            f"approve: keel approvals approve {approval.id}{flag}",
            f"reject:  keel approvals reject {approval.id} --reason TEXT{flag}",
        ]
    return [f"decide:  keel runs resolve {approval.id} retry|skip|fail|continue{flag}"]


def print_decided(approval: Approval, runtime: Runtime, db: str | None, as_json: bool) -> None:
    """Say what was decided and where the run goes next (or print the decided request as JSON)."""
    if as_json:
        print_json(approval.to_dict())
        return
    arguments = approval.arguments if approval.edited_arguments is None else approval.edited_arguments
    what = f"{approval.tool}({clip(json.dumps(arguments), 80)})" if arguments is not None else approval.kind
    if approval.edited_arguments is not None:
        what += " (edited)"
    verdict = approval.status
    if verdict == "decided":  # a run that needed attention: say which way
        verdict = f"decided {approval.decision.get('decision')}"
    out.print(f"{verdict} {approval.id}: {escape(what)} by {escape(approval.decided_by or '-')}", soft_wrap=True)
    status = runtime.get(approval.run_id).status
    if status == "queued":
        flag = db_flag(db)
        out.print(
            f"run {approval.run_id} is queued: a worker continues it (keel worker FILE.py:agent{flag}), "
            f"or continue it here: keel runs resume {approval.run_id} --target FILE.py:agent{flag}",
            soft_wrap=True,
        )
    else:
        out.print(f"run {approval.run_id} is {status}", soft_wrap=True)


@approvals_app.command("list")
def list_approvals(
    show_all: Annotated[bool, typer.Option("--all", help="include decided and expired requests")] = False,
    run_id: Annotated[str | None, typer.Option("--run", help="only the requests of this run")] = None,
    db: DbOption = None,
    as_json: JsonOption = False,
) -> None:
    """List requests for a person's decision: pending ones, oldest first (--all for every one)."""
    with exits():
        runtime = Runtime(db, create=False)
        found = runtime.approvals(status=None if show_all else "pending", run_id=run_id)
    if as_json:
        print_json([a.to_dict() for a in found])
    elif not found:
        out.print("no approvals" if show_all else "no pending approvals")
    else:
        out.print(approvals_view(found))


@approvals_app.command()
def approve(
    approval_id: Annotated[str, typer.Argument(help="the approval (see `keel approvals list`)")],
    note: NoteOption = None,
    by: ByOption = None,
    arguments_hash: Annotated[
        str | None,
        typer.Option("--hash", help="the arguments hash you reviewed; refused if the request differs"),
    ] = None,
    db: DbOption = None,
    as_json: JsonOption = False,
) -> None:
    """Approve a pending tool call exactly as requested; the run is queued for a worker."""
    with exits():
        runtime = Runtime(db, create=False)
        decided = runtime.approve(approval_id, by=by or user_name(), note=note, arguments_hash=arguments_hash)
        print_decided(decided, runtime, db, as_json)


@approvals_app.command()
def reject(
    approval_id: Annotated[str, typer.Argument(help="the approval (see `keel approvals list`)")],
    reason: Annotated[str | None, typer.Option("--reason", help="why; the model is told it")] = None,
    by: ByOption = None,
    db: DbOption = None,
    as_json: JsonOption = False,
) -> None:
    """Reject a pending tool call; the model is told the reason and the run is queued for a worker."""
    if not reason or not reason.strip():
        raise fail_input(
            f"--reason is required: say why, the model is told it (keel approvals reject {approval_id} "
            "--reason 'refunds above 100 need a receipt')"
        )
    with exits():
        runtime = Runtime(db, create=False)
        decided = runtime.reject(approval_id, by=by or user_name(), reason=reason)
        print_decided(decided, runtime, db, as_json)


def parse_arguments(text: str) -> dict[str, Any]:
    """Parse ``--arguments``: a JSON object.

    Raises:
        typer.Exit: (code 2, after printing the problem) the text is not JSON or not an object.
    """
    example = """--arguments '{"order_id": "A-1004", "amount": "100.00"}'"""
    try:
        value = json.loads(text)
    except json.JSONDecodeError as exc:
        raise fail_input(
            f"--arguments is not valid JSON ({exc.msg} at line {exc.lineno} column {exc.colno}); "
            f"pass a JSON object in single quotes, as in {example}"
        ) from None
    if not isinstance(value, dict):
        raise fail_input(
            f"--arguments must be a JSON object of the tool's arguments, got a JSON {type(value).__name__}; "
            f"as in {example}"
        )
    return value


@approvals_app.command()
def edit(
    approval_id: Annotated[str, typer.Argument(help="the approval (see `keel approvals list`)")],
    arguments: Annotated[
        str | None, typer.Option("--arguments", help="the changed arguments, a JSON object", show_default=False)
    ] = None,
    note: NoteOption = None,
    by: ByOption = None,
    db: DbOption = None,
    as_json: JsonOption = False,
) -> None:
    """Approve a pending tool call with changed arguments; both versions are kept."""
    if arguments is None:
        raise fail_input(
            f"--arguments is required: the tool call's new arguments as a JSON object "
            f"""(keel approvals edit {approval_id} --arguments '{{"amount": "100.00"}}')"""
        )
    changed = parse_arguments(arguments)
    with exits():
        runtime = Runtime(db, create=False)
        decided = runtime.edit(approval_id, changed, by=by or user_name(), note=note)
        print_decided(decided, runtime, db, as_json)


def print_next_steps(runtime: Runtime, result: RunResult, target: str | None, db: str | None) -> None:
    """For a run that waits for a person, print (on stderr) the commands that decide and continue it."""
    if result.status not in ("waiting", "needs_attention") or not runtime.durable:
        return
    for request in runtime.approvals(run_id=result.run_id):
        what = request.reason
        if request.arguments is not None:
            what = f"{request.tool}({clip(json.dumps(request.arguments), 80)})"
        console.print(f"[yellow]{request.kind} {request.id}[/]: {escape(what)}", soft_wrap=True)
        for command in decide_commands(request, db):
            console.print(f"  {command}", soft_wrap=True)
    agent, flag = target or "FILE.py:agent", db_flag(db)
    console.print(f"then a worker continues the run (keel worker {agent}{flag})", soft_wrap=True)
    console.print(f"  or continue it here: keel runs resume {result.run_id} --target {agent}{flag}", soft_wrap=True)
