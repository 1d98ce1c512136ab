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

import threading
import time
from collections import defaultdict
from collections.abc import Iterator
from typing import Any

from prometheus_client import CollectorRegistry, generate_latest
from prometheus_client.core import (
    CounterMetricFamily,
    GaugeMetricFamily,
    HistogramMetricFamily,
    Metric,
)
from prometheus_client.exposition import CONTENT_TYPE_LATEST

from ..storage import StepCall, Store, finished_runs, ratings, run_stats, step_calls

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

    def collect(self) -> Iterator[Metric]:
        """Yield every metric family."""
        store, now = self.store, time.time()
        stats = run_stats(store.engine, self.tenant)

        by_status: dict[tuple[str, str], int] = defaultdict(int)
        started: dict[str, int] = defaultdict(int)
        finished: dict[str, dict[str, int]] = defaultdict(lambda: defaultdict(int))
        steps_of: dict[tuple[str, ...], list[float]] = defaultdict(list)
        seconds_of: dict[tuple[str, ...], list[float]] = defaultdict(list)
        tokens: dict[tuple[str, str], int] = defaultdict(int)
        cost: dict[str, float] = defaultdict(float)
        agent_of: dict[str, str] = {}
        for run in stats.runs:
            agent, status = run.agent, run.status
            agent_of[run.run_id] = agent
            by_status[(agent, status)] += 1
            started[agent] += 1
            tokens[(agent, "input")] += run.input_tokens
            tokens[(agent, "output")] += run.output_tokens
            cost[agent] += run.cost_usd
            if status in FINISHED:
                finished[agent][status] += 1
                steps_of[(agent,)].append(float(run.steps))
                seconds_of[(agent, status)].append(max(0.0, run.updated_at - run.created_at))

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

        calls = _TOOLS.of(store, [(run.run_id, run.status in FINISHED) for run in stats.runs])
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
        for waits in sorted(stats.pending, key=lambda r: (r.agent, r.tool or "")):
            waiting.add_metric([waits.agent, waits.tool or ""], waits.count)
        yield waiting
        decision: dict[tuple[str, ...], list[float]] = defaultdict(list)
        for request in stats.decided:
            decision[(request.agent, request.status)].append(max(0.0, request.decided_at - request.requested_at))
        yield _histogram(
            "keel_approval_decision_seconds",
            "Time from a request to a person's decision, by outcome.",
            ["agent", "status"],
            decision,
            SECONDS_BUCKETS,
        )
        thumbs: dict[tuple[str, str], int] = defaultdict(int)
        scores: dict[tuple[str, ...], list[float]] = defaultdict(list)
        for rating in stats.ratings:
            thumbs[(rating.agent, rating.thumbs or "none")] += 1
            scores[(rating.agent,)].append(rating.satisfaction)
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
    finished = finished_runs(store.engine, start, tenant=tenant)
    rated = ratings(store.engine, tenant, start)
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
    for run in finished:
        cell = series[min(buckets - 1, int((run.updated_at - start) // width))]
        cell["runs"] += 1
        cell["done"] += run.status == "done"
        cell["failed"] += run.status == "failed"
        cell["steps"] += float(run.steps)
        cell["cost"] += run.cost_usd
    for rating in rated:
        series[min(buckets - 1, int((rating.created_at - start) // width))]["sat"].append(rating.satisfaction)
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
