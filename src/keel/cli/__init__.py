"""The ``keel`` command line: run agents and watch each step live, manage runs, approvals and workers.

Exit codes: 0 done or ok, 1 failed, 2 bad input (an unknown id, a run in the wrong state, a malformed
option), 3 waiting for approval or attention (commands that run or resume a run).

One module per command group: ``_run`` (``keel run``), ``_demo`` (``keel demo``), ``_runs`` (``keel runs``),
``_approvals`` (``keel approvals``), ``_mcp`` (``keel mcp``), ``_worker`` (``keel worker``), ``_serve``
(``keel serve``), ``_keys`` (``keel keys``) and ``_eval`` (``keel eval``); what they share is in ``_common``.
"""

from __future__ import annotations

import typer

from ._approvals import approvals_app
from ._common import BAD_INPUT, EXIT_CODES, LiveView, fail_input, load_target
from ._demo import demo
from ._eval import eval_command
from ._keys import keys_app
from ._mcp import mcp_app
from ._run import run
from ._runs import runs_app
from ._serve import serve
from ._worker import worker

__all__ = ["BAD_INPUT", "EXIT_CODES", "LiveView", "app", "fail_input", "load_target", "main"]

app = typer.Typer(add_completion=False, no_args_is_help=True, help="keel: run AI agents in production.")

# Registered in the order ``keel --help`` lists them.
app.command()(run)
app.command()(demo)
app.add_typer(runs_app, name="runs")
app.add_typer(approvals_app, name="approvals")
app.add_typer(mcp_app, name="mcp")
app.command()(worker)
app.command()(serve)
app.add_typer(keys_app, name="keys")
app.command(name="eval")(eval_command)


def main() -> None:
    """Entry point of the ``keel`` command."""
    app()
