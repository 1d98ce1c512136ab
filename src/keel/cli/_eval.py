"""``keel eval``: run an eval set, print and save the report, and gate on regressions.

Exit codes: 0 the gate passed; 1 a regression against the baseline, or mean pass^k below the
threshold; 2 bad input (a malformed eval file, an unknown model, a missing baseline).
"""

from __future__ import annotations

import asyncio
import json
import sys
from pathlib import Path
from typing import Annotated

import typer
from rich.markup import escape

from ..exceptions import ConfigError
from ._common import RUNTIME_FAILURE, console, exits, fail_input, load_target, out

__all__ = ["eval_command"]


def _agent_target(spec: str, evalset_path: Path) -> str:
    """An agent target from the eval file, its file path taken relative to the eval file."""
    path, sep, attr = spec.rpartition(":")
    if sep and (path.endswith(".py") or "/" in path) and not Path(path).is_absolute():
        candidate = evalset_path.parent / path
        if candidate.is_file():
            return f"{candidate}:{attr}"
    return spec


def eval_command(
    evalset: Annotated[Path, typer.Argument(help="the eval-set YAML file", show_default=False)],
    trials: Annotated[int, typer.Option("--trials", "-k", help="trials per case (k of pass@k and pass^k)")] = 1,
    judge: Annotated[
        str | None, typer.Option(help="a judge model string for cases with a judge rubric (default: the set's)")
    ] = None,
    baseline: Annotated[
        Path | None, typer.Option(help="a JSON report (from --json) to compare with; a regression fails the gate")
    ] = None,
    model: Annotated[
        str | None, typer.Option(help="the model to run on ('scripted' plays each case's script); default the set's")
    ] = None,
    agent: Annotated[str | None, typer.Option(help="the agent, path/file.py:agent (default: the set's agent:)")] = None,
    json_path: Annotated[Path | None, typer.Option("--json", help="write the full report as JSON here")] = None,
    html_path: Annotated[Path | None, typer.Option("--html", help="write a self-contained HTML report here")] = None,
    concurrency: Annotated[int, typer.Option(help="trials running at once")] = 4,
    seed: Annotated[int, typer.Option(help="the eval's seed; the same seed gives the same trials")] = 0,
    db: Annotated[
        str | None, typer.Option(help="database URL for the runs and results (default KEEL_DATABASE_URL); 'memory'")
    ] = None,
    case: Annotated[list[str] | None, typer.Option("--case", help="run only this case id (repeatable)")] = None,
    pairwise: Annotated[
        bool, typer.Option(help="with --baseline and a judge: compare each judged case's answer with the baseline's")
    ] = False,
    fail_under: Annotated[
        float | None, typer.Option(help="fail when mean pass^k is below this (default: the set's gate)")
    ] = None,
) -> None:
    """Run an eval set: k trials per case, checks, judge; a report, and a gate for CI."""
    from .. import Runtime
    from ..evals import (
        EvalReport,
        Judge,
        ResultStore,
        compare,
        compare_answers,
        load_evalset,
        print_report,
        render_html,
        run_evalset,
    )
    from ..models import resolve_model

    if fail_under is not None and not 0.0 <= fail_under <= 1.0:
        raise fail_input(f"--fail-under must be between 0 and 1, got {fail_under}")
    with exits():
        root = str(Path.cwd())
        if root not in sys.path:  # fixtures and checks are `module:function` names, imported from here
            sys.path.insert(0, root)
        spec = load_evalset(evalset)
        target = agent or spec.agent
        if target is None:
            raise ConfigError(f"{evalset}: no agent to evaluate; add agent: path/to/file.py:agent or pass --agent")
        base = None
        if baseline is not None:
            try:
                base = EvalReport.from_dict(json.loads(baseline.read_text(encoding="utf-8")))
            except (OSError, ValueError, KeyError, TypeError) as exc:
                raise ConfigError(f"baseline {baseline}: cannot read it as a keel eval report ({exc})") from None
        the_agent = load_target(_agent_target(target, evalset))
        chosen = model or spec.model
        scripted = chosen == "scripted"
        if chosen is not None and not scripted:
            the_agent = the_agent.with_model(resolve_model(chosen))
        judge_model = judge or spec.judge
        the_judge = Judge(judge_model) if judge_model else None
        if pairwise and (base is None or the_judge is None):
            raise ConfigError("--pairwise compares with the baseline's answers: give --baseline FILE and --judge MODEL")
        runtime = Runtime(db)

        def progress(trial: object) -> None:
            from ..evals import TrialResult

            assert isinstance(trial, TrialResult)
            mark = "[green]pass[/]" if trial.passed else "[red]FAIL[/]"
            console.print(
                f"{mark} {escape(trial.case_id)} #{trial.trial} {trial.status} in {trial.latency_s:.1f} s",
                soft_wrap=True,
            )

        report = asyncio.run(
            run_evalset(
                spec,
                the_agent,
                trials=trials,
                runtime=runtime,
                judge=the_judge,
                concurrency=concurrency,
                seed=seed,
                scripted=True if scripted else None,
                cases=case,
                on_trial=progress,
            )
        )
        if fail_under is not None:
            report.min_pass_hat_k = fail_under
        if base is not None:
            report.comparison = compare(report, base)
        if pairwise and base is not None and the_judge is not None:
            report.pairwise = asyncio.run(compare_answers(the_judge, spec, report, base))
        print_report(report, out)
        if runtime.durable:
            store = ResultStore(runtime.database_url)
            try:
                eval_id = store.save(report)
            finally:
                store.close()
            console.print(f"results stored as {eval_id} in {runtime.database_url}")
        if json_path is not None:
            json_path.write_text(json.dumps(report.to_dict(), indent=1, default=str) + "\n", encoding="utf-8")
            console.print(f"JSON report: {json_path}")
        if html_path is not None:
            html_path.write_text(render_html(report), encoding="utf-8")
            console.print(f"HTML report: {html_path}")
    failed: list[str] = []
    if report.comparison is not None and report.comparison.regression:
        failed.append("a regression against the baseline")
    if report.below_threshold():
        failed.append(f"mean pass^{trials} {report.totals()['pass_hat_k']:.3f} is below {report.min_pass_hat_k}")
    if failed:
        console.print(f"[bold red]gate failed:[/] {escape('; '.join(failed))}", soft_wrap=True)
        raise typer.Exit(RUNTIME_FAILURE)
    console.print("[green]gate passed[/]")
