"""Reports for people: a Rich table for the terminal and a self-contained HTML page."""

from __future__ import annotations

import html
import json
from datetime import UTC, datetime
from typing import Any

from rich.console import Console
from rich.table import Table

from ._report import EvalReport

__all__ = ["print_report", "render_html"]


def _pct(value: float) -> str:
    return f"{value:.2f}"


def print_report(report: EvalReport, console: Console) -> None:
    """Print a table of the cases (pass@k, pass^k, steps, cost, latency), the failures and the totals."""
    k = report.trials
    comparison = {c.case_id: c for c in report.comparison.cases} if report.comparison else {}
    title = f"{report.evalset}: {report.agent} on {report.model}, {k} trial(s) per case"
    table = Table(title=title, title_justify="left")
    table.add_column("case", no_wrap=True)
    table.add_column("passed", justify="right")
    table.add_column(f"pass@{k}", justify="right")
    table.add_column(f"pass^{k}", justify="right")
    table.add_column("steps", justify="right")
    table.add_column("cost $", justify="right")
    table.add_column("time s", justify="right")
    if comparison:
        table.add_column("baseline", justify="right")
        table.add_column("p (Holm)", justify="right")
    for case in report.cases:
        s = case.summary()
        style = "green" if case.successes == case.n else ("red" if case.successes == 0 else "yellow")
        row = [
            case.case_id,
            f"[{style}]{case.successes}/{case.n}[/]",
            _pct(s["pass_at_k"]),
            _pct(s["pass_hat_k"]),
            f"{s['mean_steps']:.1f}",
            f"{s['cost_usd']:.4f}",
            f"{s['mean_latency_s']:.2f}",
        ]
        if comparison:
            c = comparison[case.case_id]
            base = f"{c.baseline[0]}/{c.baseline[1]}" if c.baseline else "new"
            p = "" if c.p_adjusted is None else f"{c.p_adjusted:.3f}"
            row += [base, f"[bold red]{p} regressed[/]" if c.regressed else p]
        table.add_row(*row)
    console.print(table)
    for case in report.cases:
        for trial in case.trials:
            for check in trial.failures:
                detail = f": {check.detail}" if check.detail else ""
                console.print(
                    f"FAIL {case.case_id} trial {trial.trial}: {check.name}{detail}",
                    soft_wrap=True,
                    markup=False,
                    highlight=False,
                )
    t = report.totals()
    console.print(
        f"cases {t['cases']}, trials {t['trials']}, passed {t['passed_trials']} ({t['pass_rate']:.1%}); "
        f"mean pass@{k} {t['pass_at_k']:.3f}, mean pass^{k} {t['pass_hat_k']:.3f}; "
        f"cost ${t['cost_usd']:.4f}, mean steps {t['mean_steps']:.2f}, mean latency {t['mean_latency_s']:.2f} s "
        f"(p95 {t['p95_latency_s']:.2f} s), wall time {t['duration_s']:.1f} s",
        highlight=False,
    )
    if report.agreement is not None:
        a = report.agreement
        kappa = "undefined" if a["kappa"] is None else f"{a['kappa']:.3f}"
        console.print(f"judge {report.judge}: agrees with human labels on {a['agree']}/{a['n']}, Cohen's kappa {kappa}")
    if report.pairwise is not None:
        pw = report.pairwise
        console.print(
            f"judge {report.judge}, answers now against the baseline's (both orders): {pw['better']} better, "
            f"{pw['worse']} worse, {pw['tie']} tied ({pw['inconsistent']} of them because the orders disagreed)"
        )
    if report.comparison is not None:
        whole = report.comparison
        verdict = "[bold red]REGRESSION[/]" if whole.regression else "[green]no regression[/]"
        console.print(
            f"baseline {whole.baseline_pass_rate:.1%} -> now {whole.current_pass_rate:.1%} on the shared cases; "
            f"stratified exact p = {whole.p_value:.4f} (alpha {whole.alpha}); "
            f"cases regressed: {', '.join(whole.regressed_cases) or 'none'}; {verdict}"
        )
        if whole.missing:
            console.print(f"in the baseline but not run now: {', '.join(whole.missing)}")


_CSS = """
body{font:14px/1.45 system-ui,sans-serif;margin:2em;color:#222}
table{border-collapse:collapse;margin:1em 0}td,th{border:1px solid #ccc;padding:.3em .6em;vertical-align:top}
th{background:#f3f3f3;text-align:left}.ok{color:#14733a}.bad{color:#b3261e;font-weight:600}.mid{color:#a15c00}
.num{text-align:right;font-variant-numeric:tabular-nums}details{margin:.2em 0}pre{white-space:pre-wrap;margin:.2em 0}
.small{color:#666;font-size:12px}
"""


def render_html(report: EvalReport) -> str:
    """The report as one HTML page with no external resources: totals, the case table, every trial."""
    e = html.escape
    k = report.trials
    t = report.totals()
    when = datetime.fromtimestamp(report.started_at, UTC).strftime("%Y-%m-%d %H:%M:%S UTC")
    comparison = {c.case_id: c for c in report.comparison.cases} if report.comparison else {}
    out: list[str] = [
        "<!doctype html><html><head><meta charset='utf-8'>",
        f"<title>keel eval: {e(report.evalset)}</title><style>{_CSS}</style></head><body>",
        f"<h1>{e(report.evalset)}</h1>",
        f"<p>agent <b>{e(report.agent)}</b> on <b>{e(report.model)}</b> (version {e(report.agent_version)}, "
        f"config {e(report.config_hash)}, keel {e(report.keel_version)}), {k} trial(s) per case, "
        f"seed {report.seed}, {e(when)}" + (f", judge {e(report.judge)}" if report.judge else "") + "</p>",
        "<table>",
    ]
    for label, value in (
        ("cases", t["cases"]),
        ("trials passed", f"{t['passed_trials']} / {t['trials']} ({t['pass_rate']:.1%})"),
        (f"mean pass@{k}", f"{t['pass_at_k']:.3f}"),
        (f"mean pass^{k}", f"{t['pass_hat_k']:.3f}"),
        ("cost", f"${t['cost_usd']:.4f} ({t['tokens']} tokens)"),
        ("mean steps", f"{t['mean_steps']:.2f}"),
        ("latency", f"mean {t['mean_latency_s']:.2f} s, p95 {t['p95_latency_s']:.2f} s"),
        ("wall time", f"{t['duration_s']:.1f} s"),
    ):
        out.append(f"<tr><th>{e(label)}</th><td>{e(str(value))}</td></tr>")
    if report.comparison is not None:
        whole = report.comparison
        verdict = "<span class='bad'>REGRESSION</span>" if whole.regression else "<span class='ok'>no regression</span>"
        out.append(
            f"<tr><th>against baseline</th><td>{whole.baseline_pass_rate:.1%} → {whole.current_pass_rate:.1%}; "
            f"stratified exact p = {whole.p_value:.4f} (alpha {whole.alpha}); {verdict}</td></tr>"
        )
    if report.agreement is not None:
        a = report.agreement
        kappa = "undefined" if a["kappa"] is None else f"{a['kappa']:.3f}"
        out.append(f"<tr><th>judge vs people</th><td>{a['agree']}/{a['n']} agree, Cohen's kappa {kappa}</td></tr>")
    out.append("</table><h2>Cases</h2><table><tr><th>case</th><th>passed</th>")
    out.append(f"<th>pass@{k}</th><th>pass^{k}</th><th>steps</th><th>cost $</th><th>latency s</th>")
    if comparison:
        out.append("<th>baseline</th><th>p (Holm)</th>")
    out.append("<th>trials</th></tr>")
    for case in report.cases:
        s = case.summary()
        cls = "ok" if case.successes == case.n else ("bad" if case.successes == 0 else "mid")
        cells = [
            f"<td>{e(case.case_id)}<div class='small'>{e(', '.join(case.tags))}</div></td>",
            f"<td class='num {cls}'>{case.successes}/{case.n}</td>",
            f"<td class='num'>{s['pass_at_k']:.2f}</td><td class='num'>{s['pass_hat_k']:.2f}</td>",
            f"<td class='num'>{s['mean_steps']:.1f}</td><td class='num'>{s['cost_usd']:.4f}</td>",
            f"<td class='num'>{s['mean_latency_s']:.2f}</td>",
        ]
        if comparison:
            c = comparison[case.case_id]
            base = f"{c.baseline[0]}/{c.baseline[1]}" if c.baseline else "new"
            p = "" if c.p_adjusted is None else f"{c.p_adjusted:.3f}"
            cells.append(f"<td class='num'>{base}</td><td class='num {'bad' if c.regressed else ''}'>{p}</td>")
        trials = []
        for trial in case.trials:
            mark = "✓" if trial.passed else "✗"
            checks = "".join(
                f"<li class='{'small' if c.skipped else ('ok' if c.passed else 'bad')}'>{e(c.name)}"
                + (f": {e(c.detail)}" if c.detail else "")
                + "</li>"
                for c in trial.checks
            )
            trials.append(
                f"<details><summary>{mark} trial {trial.trial}: {e(trial.status)}, {trial.steps} steps, "
                f"tools {e(', '.join(trial.tools) or 'none')}</summary><ul>{checks}</ul>"
                f"<pre>{e(trial.answer)}</pre><div class='small'>run {e(trial.run_id)}</div></details>"
            )
        cells.append(f"<td>{''.join(trials)}</td>")
        out.append("<tr>" + "".join(cells) + "</tr>")
    out.append("</table>")
    data: dict[str, Any] = report.to_dict()
    blob = json.dumps(data, default=str).replace("</", "<\\/")
    out.append(f"<script type='application/json' id='keel-eval-data'>{blob}</script></body></html>")
    return "".join(out)
