"""Prometheus metrics of runs, computed from the database at scrape time.

Why from the database: every worker process writes its runs' state, journal, approvals and feedback
into the one shared database, so a scrape of any process sees the runs of all of them, with no
per-process counters to merge (Prometheus's multiprocess mode only merges processes on one host and
cannot scope a scrape to one tenant). Counting is done where the events already persist: the run
index for runs, steps, tokens, cost and durations; the run's journal, read back by
`keel.storage.step_calls`, for tool calls and latencies; ``keel_approvals`` and ``keel_feedback`` for
approvals and satisfaction. Nothing is added to the loop.

Tool-call counts of finished runs never change, so they are cached per run; a scrape reads the journal
only of runs that finished since the last scrape, or are still moving.
"""

from __future__ import annotations

import json
import threading
import time
from collections import defaultdict
from collections.abc import Iterator
from typing import Any

import sqlalchemy as sa
from prometheus_client import CollectorRegistry, generate_latest
from prometheus_client.core import (
    CounterMetricFamily,
    GaugeMetricFamily,
    HistogramMetricFamily,
    Metric,
)
from prometheus_client.exposition import CONTENT_TYPE_LATEST

from ..durable._store import Store, approvals, feedback, runs
from ..storage import StepCall, step_calls

__all__ = ["CONTENT_TYPE", "RunMetricsCollector", "render", "timeseries"]

CONTENT_TYPE = CONTENT_TYPE_LATEST
FINISHED = ("done", "failed", "cancelled")
STEP_BUCKETS = (1, 2, 3, 5, 8, 13, 21, 34, 55)
SECONDS_BUCKETS = (0.01, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 300, 1800, 3600)
SATISFACTION_BUCKETS = (0.0, 0.25, 0.5, 0.75, 1.0)


def _histogram(
    name: str, doc: str, labels: list[str], groups: dict[tuple[str, ...], list[float]], bounds: tuple[float, ...]
) -> HistogramMetricFamily:
    family = HistogramMetricFamily(name, doc, labels=labels)
    for key, values in sorted(groups.items()):
        cumulative = [(str(float(b)), float(sum(1 for v in values if v <= b))) for b in bounds]
        cumulative.append(("+Inf", float(len(values))))
        family.add_metric(list(key), cumulative, float(sum(values)))
    return family


class _ToolCounts:
    """Per-run tool-call outcomes and step latencies from the journal, cached once a run has finished."""

    def __init__(self, limit: int = 200_000) -> None:
        self.limit = limit
        self._done: dict[str, list[StepCall]] = {}
        self._lock = threading.Lock()

    def of(self, store: Store, wanted: list[tuple[str, bool]]) -> dict[str, list[StepCall]]:
        """For each (run_id, finished): its finished model and tool calls."""
        with self._lock:
            found = {r: self._done[r] for r, _ in wanted if r in self._done}
        missing = [r for r, _ in wanted if r not in found]
        finished = {r for r, fin in wanted if fin}
        calls = step_calls(store, missing)
        found.update(calls)
        with self._lock:
            if len(self._done) > self.limit:
                self._done.clear()
            self._done.update((r, c) for r, c in calls.items() if r in finished)
        return found


_TOOLS = _ToolCounts()


class RunMetricsCollector:
    """A Prometheus collector over the runs of one tenant (or all, with tenant None)."""

    def __init__(self, store: Store, tenant: str | None) -> None:
        self.store = store
        self.tenant = tenant

    def _where(self, table: sa.Table) -> Any:
        return sa.true() if self.tenant is None else table.c.tenant == self.tenant

    def collect(self) -> Iterator[Metric]:
        """Yield every metric family."""
        store, now = self.store, time.time()
        with store.engine.connect() as conn:
            rows = conn.execute(
                sa.select(
                    runs.c.run_id,
                    runs.c.agent,
                    runs.c.status,
                    runs.c.steps,
                    runs.c.usage,
                    runs.c.created_at,
                    runs.c.updated_at,
                ).where(self._where(runs))
            ).all()
            pending = conn.execute(
                sa.select(approvals.c.tool, runs.c.agent, sa.func.count())
                .join(runs, runs.c.run_id == approvals.c.run_id)
                .where(approvals.c.status == "pending", self._where(runs))
                .group_by(approvals.c.tool, runs.c.agent)
            ).all()
            decided = conn.execute(
                sa.select(runs.c.agent, approvals.c.status, approvals.c.requested_at, approvals.c.decided_at)
                .join(runs, runs.c.run_id == approvals.c.run_id)
                .where(approvals.c.status != "pending", approvals.c.decided_at.is_not(None), self._where(runs))
            ).all()
            ratings = conn.execute(
                sa.select(feedback.c.agent, feedback.c.thumbs, feedback.c.satisfaction).where(self._where(feedback))
            ).all()

        by_status: dict[tuple[str, str], int] = defaultdict(int)
        started: dict[str, int] = defaultdict(int)
        finished: dict[str, dict[str, int]] = defaultdict(lambda: defaultdict(int))
        steps_of: dict[tuple[str, ...], list[float]] = defaultdict(list)
        seconds_of: dict[tuple[str, ...], list[float]] = defaultdict(list)
        tokens: dict[tuple[str, str], int] = defaultdict(int)
        cost: dict[str, float] = defaultdict(float)
        agent_of: dict[str, str] = {}
        for run_id, agent, status, n_steps, usage, created, updated in rows:
            agent_of[run_id] = agent
            by_status[(agent, status)] += 1
            started[agent] += 1
            use = json.loads(usage or "{}")
            tokens[(agent, "input")] += int(use.get("input_tokens") or 0)
            tokens[(agent, "output")] += int(use.get("output_tokens") or 0)
            cost[agent] += float(use.get("cost_usd") or 0.0)
            if status in FINISHED:
                finished[agent][status] += 1
                steps_of[(agent,)].append(float(n_steps or 0))
                seconds_of[(agent, status)].append(max(0.0, float(updated) - float(created)))

        family = GaugeMetricFamily("keel_runs", "Runs by agent and current status.", labels=["agent", "status"])
        for (agent, status), count in sorted(by_status.items()):
            family.add_metric([agent, status], count)
        yield family
        counter = CounterMetricFamily("keel_runs_started", "Runs started, by agent.", labels=["agent"])
        for agent, count in sorted(started.items()):
            counter.add_metric([agent], count)
        yield counter
        completion = GaugeMetricFamily(
            "keel_run_completion_ratio", "Finished runs that completed (done / finished).", labels=["agent"]
        )
        errors = GaugeMetricFamily(
            "keel_run_error_ratio", "Finished runs that failed (failed / finished).", labels=["agent"]
        )
        for agent, counts in sorted(finished.items()):
            total = sum(counts.values())
            completion.add_metric([agent], counts.get("done", 0) / total)
            errors.add_metric([agent], counts.get("failed", 0) / total)
        yield completion
        yield errors
        yield _histogram("keel_run_steps", "Model steps per finished run.", ["agent"], steps_of, STEP_BUCKETS)
        yield _histogram(
            "keel_run_duration_seconds",
            "Time from start to finish of finished runs (including waits for people).",
            ["agent", "status"],
            seconds_of,
            SECONDS_BUCKETS,
        )
        tok = CounterMetricFamily("keel_tokens", "Model tokens used.", labels=["agent", "direction"])
        for (agent, direction), count in sorted(tokens.items()):
            tok.add_metric([agent, direction], count)
        yield tok
        usd = CounterMetricFamily("keel_cost_usd", "Model cost in US dollars.", labels=["agent"])
        for agent, value in sorted(cost.items()):
            usd.add_metric([agent], value)
        yield usd

        calls = _TOOLS.of(store, [(run_id, status in FINISHED) for run_id, _, status, *_ in rows])
        outcomes: dict[tuple[str, str, str], int] = defaultdict(int)
        model_seconds: dict[tuple[str, ...], list[float]] = defaultdict(list)
        tool_seconds: dict[tuple[str, ...], list[float]] = defaultdict(list)
        for run_id, made in calls.items():
            agent = agent_of.get(run_id, "")
            for call in made:
                if call.kind == "model":
                    model_seconds[(agent,)].append(call.seconds)
                else:
                    outcomes[(agent, call.name, call.outcome)] += 1
                    tool_seconds[(agent, call.name)].append(call.seconds)
        tool_calls = CounterMetricFamily(
            "keel_tool_calls", "Tool calls run, by outcome (ok or error).", labels=["agent", "tool", "outcome"]
        )
        for key, count in sorted(outcomes.items()):
            tool_calls.add_metric(list(key), count)
        yield tool_calls
        yield _histogram(
            "keel_model_call_duration_seconds", "Model call latency.", ["agent"], model_seconds, SECONDS_BUCKETS
        )
        yield _histogram(
            "keel_tool_call_duration_seconds", "Tool call latency.", ["agent", "tool"], tool_seconds, SECONDS_BUCKETS
        )

        waiting = GaugeMetricFamily(
            "keel_approvals_pending", "Requests waiting for a person.", labels=["agent", "tool"]
        )
        for tool, agent, count in sorted(pending, key=lambda r: (r[1], r[0] or "")):
            waiting.add_metric([agent, tool or ""], count)
        yield waiting
        decision: dict[tuple[str, ...], list[float]] = defaultdict(list)
        for agent, status, requested, decided_at in decided:
            decision[(agent, status)].append(max(0.0, float(decided_at) - float(requested)))
        yield _histogram(
            "keel_approval_decision_seconds",
            "Time from a request to a person's decision, by outcome.",
            ["agent", "status"],
            decision,
            SECONDS_BUCKETS,
        )
        thumbs: dict[tuple[str, str], int] = defaultdict(int)
        scores: dict[tuple[str, ...], list[float]] = defaultdict(list)
        for agent, thumb, value in ratings:
            thumbs[(agent, thumb or "none")] += 1
            scores[(agent,)].append(float(value))
        fb = CounterMetricFamily(
            "keel_feedback", "Feedback given, by thumbs (up, down, none).", labels=["agent", "thumbs"]
        )
        for (agent, thumb), count in sorted(thumbs.items()):
            fb.add_metric([agent, thumb], count)
        yield fb
        yield _histogram(
            "keel_user_satisfaction", "Users' satisfaction with runs, 0 to 1.", ["agent"], scores, SATISFACTION_BUCKETS
        )
        yield GaugeMetricFamily("keel_metrics_scrape_timestamp_seconds", "When these metrics were computed.", value=now)


def render(store: Store, tenant: str | None) -> bytes:
    """The metrics of `tenant`'s runs (every tenant's with None) in Prometheus text format."""
    registry = CollectorRegistry(auto_describe=False)
    registry.register(RunMetricsCollector(store, tenant))
    return generate_latest(registry)


def timeseries(store: Store, tenant: str | None, *, hours: float = 24.0, buckets: int = 24) -> dict[str, Any]:
    """Points over the last `hours` for the console's charts.

    Each time bucket has the runs finished in it, completion and error rates, mean steps and cost, and
    mean satisfaction (None where a bucket has no data).
    """
    now = time.time()
    start = now - hours * 3600
    width = (now - start) / buckets
    where = [runs.c.updated_at >= start, runs.c.status.in_(FINISHED)]
    if tenant is not None:
        where.append(runs.c.tenant == tenant)
    fb_where = [feedback.c.created_at >= start]
    if tenant is not None:
        fb_where.append(feedback.c.tenant == tenant)
    with store.engine.connect() as conn:
        finished = conn.execute(
            sa.select(runs.c.status, runs.c.steps, runs.c.usage, runs.c.updated_at).where(*where)
        ).all()
        rated = conn.execute(sa.select(feedback.c.satisfaction, feedback.c.created_at).where(*fb_where)).all()
    series: list[dict[str, Any]] = [
        {
            "start": start + i * width,
            "runs": 0,
            "done": 0,
            "failed": 0,
            "steps": 0.0,
            "cost": 0.0,
            "sat": [],
        }
        for i in range(buckets)
    ]
    for status, n_steps, usage, updated in finished:
        cell = series[min(buckets - 1, int((float(updated) - start) // width))]
        cell["runs"] += 1
        cell["done"] += status == "done"
        cell["failed"] += status == "failed"
        cell["steps"] += float(n_steps or 0)
        cell["cost"] += float(json.loads(usage or "{}").get("cost_usd") or 0.0)
    for value, created in rated:
        series[min(buckets - 1, int((float(created) - start) // width))]["sat"].append(float(value))
    points = []
    for cell in series:
        n = cell["runs"]
        sat = cell["sat"]
        points.append(
            {
                "start": cell["start"],
                "runs": n,
                "completion_rate": cell["done"] / n if n else None,
                "error_rate": cell["failed"] / n if n else None,
                "steps_per_run": cell["steps"] / n if n else None,
                "cost_per_run": cell["cost"] / n if n else None,
                "satisfaction": sum(sat) / len(sat) if sat else None,
            }
        )
    return {"from": start, "to": now, "bucket_seconds": width, "points": points}
