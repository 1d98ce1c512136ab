"""Anomaly detection on agents' behaviour over rolling windows, with alerts to the log, a webhook and the console.

Per tenant and agent, each window (60 s by default) of finished runs gives five numbers: completion
rate, error rate, steps per run, cost per run and median latency. For each, the detector keeps the last
`DetectorConfig.history` window values and scores a new one with a robust z-score: its distance from
their median in units of their scaled median absolute deviation (MAD), which one wild window cannot
drag the way it drags a mean and standard deviation. The z-scores are smoothed by an EWMA, so one odd
window does not alert but a shift does, within a few windows (see `DetectorConfig`). Guards:

- a window with fewer than `min_runs` finished runs is not scored (a rate over three runs is noise);
- no scoring until `min_history` windows are known;
- the scale has a floor (absolute and relative to the median), so a metric that never varied does not
  alert on the first tiny wobble;
- de-duplication: while an alert on (tenant, agent, metric, direction) is active it is not raised
  again; it resolves when the smoothed score falls below half the threshold;
- cooldown: after an alert, the same metric of the same agent stays quiet for `cooldown` windows.

The window values include anomalous ones, so a lasting change becomes the new norm once it fills half
the history (the median's breakdown point), and its alert resolves.

Example:
    >>> detector = AnomalyDetector()
    >>> alerts = detector.observe(WindowStats("acme", "support", end=60.0, runs=40, error_rate=0.05))
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import logging
import queue
import statistics
import threading
import time
from collections import deque
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from typing import Any

__all__ = [
    "METRICS",
    "Alert",
    "AlertBoard",
    "AnomalyDetector",
    "DatabaseAlerts",
    "DetectorConfig",
    "LogSink",
    "WebhookSink",
    "WindowStats",
    "WindowWatcher",
    "default_sinks",
    "window_stats",
]

log = logging.getLogger("keel.alerts")

RATES = ("completion_rate", "error_rate")
METRICS = ("completion_rate", "error_rate", "steps_per_run", "cost_per_run", "latency_seconds")
FLOORS = {
    "completion_rate": 0.02,
    "error_rate": 0.02,
    "steps_per_run": 0.1,
    "cost_per_run": 1e-6,
    "latency_seconds": 0.01,
}
"""The smallest scale (robust standard deviation) used per metric: changes below these never alert."""


@dataclass(frozen=True, slots=True)
class WindowStats:
    """What one agent did in one window.

    Attributes:
        tenant: the tenant (None for runs without one).
        agent: the agent.
        end: the window's end (seconds since the epoch, or a window number in tests).
        runs: runs finished in the window.
        completion_rate: done / finished.
        error_rate: failed / finished.
        steps_per_run: mean model steps.
        cost_per_run: mean cost in US dollars.
        latency_seconds: median time from start to finish.
    """

    tenant: str | None
    agent: str
    end: float
    runs: int
    completion_rate: float | None = None
    error_rate: float | None = None
    steps_per_run: float | None = None
    cost_per_run: float | None = None
    latency_seconds: float | None = None


@dataclass(frozen=True, slots=True)
class Alert:
    """A metric of an agent that left its norm.

    Attributes:
        id: unique per alert (receivers de-duplicate retried deliveries by it).
        key: ``tenant/agent/metric/direction``: one active alert per key.
        tenant: the tenant.
        agent: the agent.
        metric: which metric.
        direction: ``high`` or ``low``.
        value: the window's value.
        baseline: the median of recent windows.
        score: the smoothed robust z-score.
        window_end: the end of the window that raised it.
        message: one line for people.
        raised_at: when it was raised.
    """

    id: str
    key: str
    tenant: str | None
    agent: str
    metric: str
    direction: str
    value: float
    baseline: float
    score: float
    window_end: float
    message: str
    raised_at: float = field(default_factory=time.time)

    def to_dict(self) -> dict[str, Any]:
        """Return a JSON-ready dict."""
        return dataclasses.asdict(self)


@dataclass(frozen=True, slots=True)
class DetectorConfig:
    """Tuning of the detector.

    With the defaults, a shift of 10 robust standard deviations alerts in the first window after it,
    one of 6 within 3 windows; 1,000 windows of stationary noise raise none (see the tests).

    Attributes:
        history: windows kept per metric for the baseline. Default 30.
        min_history: windows needed before scoring. Default 8.
        min_runs: finished runs a window needs to be scored. Default 5.
        threshold: smoothed robust z-score that alerts. Default 5.
        alpha: EWMA weight of the newest z-score. Default 0.5.
        cooldown: windows after an alert during which the same metric stays quiet. Default 10.
        relative_floor: the scale of steps, cost and latency is at least this share of the baseline (rates
            have only their absolute floor). Default 0.05.
    """

    history: int = 30
    min_history: int = 8
    min_runs: int = 5
    threshold: float = 5.0
    alpha: float = 0.5
    cooldown: int = 10
    relative_floor: float = 0.05


@dataclass
class _Series:
    values: deque[float]
    smoothed: float = 0.0
    seen: int = 0
    quiet_until: int = 0
    active: dict[str, Alert] = field(default_factory=dict)


class AnomalyDetector:
    """Scores windows of each agent's metrics and raises (and resolves) alerts.

    Args:
        config: tuning; the defaults suit one-minute windows.
        sinks: called with each new alert.
        on_resolve: called with the key of each alert that resolved.
    """

    def __init__(
        self,
        config: DetectorConfig | None = None,
        sinks: Iterable[Callable[[Alert], None]] = (),
        on_resolve: Callable[[str], None] | None = None,
    ) -> None:
        self.config = config or DetectorConfig()
        self.sinks = list(sinks)
        self.on_resolve = on_resolve
        self._series: dict[tuple[str | None, str, str], _Series] = {}

    def observe(self, stats: WindowStats) -> list[Alert]:
        """Score one window of one agent; return the alerts it raised."""
        cfg = self.config
        raised: list[Alert] = []
        if stats.runs < cfg.min_runs:
            return raised
        for metric in METRICS:
            value = getattr(stats, metric)
            if value is None:
                continue
            key = (stats.tenant, stats.agent, metric)
            series = self._series.setdefault(key, _Series(deque(maxlen=cfg.history)))
            series.seen += 1
            if len(series.values) >= cfg.min_history:
                baseline = statistics.median(series.values)
                mad = statistics.median(abs(v - baseline) for v in series.values)
                relative = 0.0 if metric in RATES else cfg.relative_floor * abs(baseline)
                scale = max(1.4826 * mad, FLOORS[metric], relative)
                z = (value - baseline) / scale
                series.smoothed = cfg.alpha * z + (1 - cfg.alpha) * series.smoothed
                alert = self._judge(stats, metric, series, value, baseline)
                if alert is not None:
                    raised.append(alert)
            series.values.append(value)
        for alert in raised:
            for sink in self.sinks:
                try:
                    sink(alert)
                except Exception:  # a sink must never stop detection
                    log.exception("alert sink %r failed", sink)
        return raised

    def history(self, tenant: str | None, agent: str, metric: str) -> list[float]:
        """The window values the detector holds for one metric of one agent, oldest first."""
        series = self._series.get((tenant, agent, metric))
        return [] if series is None else list(series.values)

    def _judge(self, stats: WindowStats, metric: str, series: _Series, value: float, baseline: float) -> Alert | None:
        cfg = self.config
        for direction, alert in list(series.active.items()):
            if abs(series.smoothed) < cfg.threshold / 2 or (direction == "high") != (series.smoothed > 0):
                del series.active[direction]
                if self.on_resolve is not None:
                    self.on_resolve(alert.key)
        if abs(series.smoothed) < cfg.threshold or series.seen < series.quiet_until:
            return None
        direction = "high" if series.smoothed > 0 else "low"
        if direction in series.active:
            return None
        key = f"{stats.tenant or '-'}/{stats.agent}/{metric}/{direction}"
        alert = Alert(
            id="alr_" + hashlib.sha256(f"{key}/{stats.end}".encode()).hexdigest()[:16],
            key=key,
            tenant=stats.tenant,
            agent=stats.agent,
            metric=metric,
            direction=direction,
            value=value,
            baseline=baseline,
            score=series.smoothed,
            window_end=stats.end,
            message=(
                f"{stats.agent}: {metric.replace('_', ' ')} is {direction} at {value:.4g} "
                f"(norm {baseline:.4g}, robust z {series.smoothed:+.1f}) over {stats.runs} runs"
            ),
        )
        series.active[direction] = alert
        series.quiet_until = series.seen + cfg.cooldown
        return alert


class AlertBoard:
    """The active alerts of this process, for the console: raised by the detector, removed when they resolve."""

    def __init__(self) -> None:
        self._alerts: dict[str, Alert] = {}
        self._lock = threading.Lock()

    def __call__(self, alert: Alert) -> None:
        """Show an alert."""
        with self._lock:
            self._alerts[alert.key] = alert

    def claim(self, alert: Alert) -> bool:
        """Show an alert unless one with its key is active; True if this call showed it."""
        with self._lock:
            if alert.key in self._alerts:
                return False
            self._alerts[alert.key] = alert
            return True

    def resolve(self, key: str) -> None:
        """Remove a resolved alert."""
        with self._lock:
            self._alerts.pop(key, None)

    def active(self, tenant: str | None) -> list[Alert]:
        """Active alerts of one tenant, newest first."""
        with self._lock:
            found = [a for a in self._alerts.values() if a.tenant == tenant]
        return sorted(found, key=lambda a: a.raised_at, reverse=True)


class DatabaseAlerts(AlertBoard):
    """The active alerts of every process, in ``keel_alerts``: one process raises each alert.

    Processes watching the same database score the same windows (aligned to the clock) and so raise
    the same alert, under the same id; the first insert wins and only its process sends the alert on.
    An alert whose key is still active in the table is not raised again, by any process.

    Args:
        store: keel's tables.
    """

    def __init__(self, store: Any) -> None:
        super().__init__()
        self.store = store

    def __call__(self, alert: Alert) -> None:
        """Record an alert (once)."""
        self.claim(alert)

    def claim(self, alert: Alert) -> bool:
        """Record the alert unless it, or an active one with its key, is recorded; True if this call did."""
        from ..storage import claim_alert

        return claim_alert(self.store.engine, alert.to_dict())

    def resolve(self, key: str) -> None:
        """Mark the active alert with this key resolved."""
        from ..storage import resolve_alert

        resolve_alert(self.store.engine, key, time.time())

    def active(self, tenant: str | None) -> list[Alert]:
        """Active alerts of one tenant, newest first."""
        from ..storage import active_alerts

        return [Alert(**row) for row in active_alerts(self.store.engine, tenant)]


class LogSink:
    """Writes alerts to the ``keel.alerts`` log at WARNING."""

    def __call__(self, alert: Alert) -> None:
        """Log an alert."""
        log.warning("anomaly %s: %s", alert.key, alert.message)


class WebhookSink:
    """POSTs alerts as JSON to a URL from a background thread, retrying with exponential backoff.

    Each delivery carries the header ``X-Keel-Alert-Id``; retries send the same id, so a receiver can
    drop repeats. A delivery is retried on a connection error or a 5xx/429 answer, up to `attempts`
    times, then dropped with an error in the log.

    Args:
        url: the receiver.
        attempts: tries per alert. Default 5.
        backoff: the first pause between tries, doubling each time. Default 0.5 s.
        timeout: per request. Default 5 s.
    """

    def __init__(self, url: str, *, attempts: int = 5, backoff: float = 0.5, timeout: float = 5.0) -> None:
        self.url = url
        self.attempts = attempts
        self.backoff = backoff
        self.timeout = timeout
        self.delivered = 0
        self.dropped = 0
        self._queue: queue.Queue[Alert | None] = queue.Queue()
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="keel-webhook", daemon=True)
        self._thread.start()

    def __call__(self, alert: Alert) -> None:
        """Queue an alert for delivery."""
        self._queue.put(alert)

    def flush(self, timeout: float | None = None) -> bool:
        """Wait until every queued alert was delivered or dropped; False if `timeout` passed first."""
        deadline = None if timeout is None else time.monotonic() + timeout
        with self._queue.all_tasks_done:
            while self._queue.unfinished_tasks:
                left = None if deadline is None else deadline - time.monotonic()
                if left is not None and left <= 0:
                    return False
                self._queue.all_tasks_done.wait(left)
        return True

    def close(self) -> None:
        """Stop the delivery thread after what is queued."""
        self._queue.put(None)
        self._thread.join(timeout=self.timeout * self.attempts + 5)

    def _run(self) -> None:
        import httpx

        with httpx.Client(timeout=self.timeout) as client:
            while True:
                alert = self._queue.get()
                try:
                    if alert is None:
                        return
                    self._deliver(client, alert)
                finally:
                    self._queue.task_done()

    def _deliver(self, client: Any, alert: Alert) -> None:
        import httpx

        body = json.dumps(alert.to_dict())
        headers = {"content-type": "application/json", "x-keel-alert-id": alert.id}
        pause = self.backoff
        for attempt in range(1, self.attempts + 1):
            try:
                answer = client.post(self.url, content=body, headers=headers)
                if answer.status_code < 500 and answer.status_code != 429:
                    self.delivered += 1
                    return
                reason = f"HTTP {answer.status_code}"
            except httpx.HTTPError as exc:
                reason = f"{type(exc).__name__}: {exc}"
            if attempt < self.attempts:
                log.info("alert %s to %s failed (%s); retrying in %.1f s", alert.id, self.url, reason, pause)
                if self._stop.wait(pause):
                    break
                pause *= 2
        self.dropped += 1
        log.error("alert %s could not be delivered to %s after %d tries", alert.id, self.url, self.attempts)


def default_sinks(webhook: str | None) -> list[Callable[[Alert], None]]:
    """The log, and the webhook when a URL is given."""
    sinks: list[Callable[[Alert], None]] = [LogSink()]
    if webhook:
        sinks.append(WebhookSink(webhook))
    return sinks


def window_stats(store: Any, start: float, end: float) -> list[WindowStats]:
    """Per tenant and agent: the runs that finished in [start, end) summed up as one window."""
    from ..storage import FinishedRun, finished_runs

    groups: dict[tuple[str | None, str], list[FinishedRun]] = {}
    for row in finished_runs(store.engine, start, end):
        groups.setdefault((row.tenant, row.agent), []).append(row)
    found = []
    for (tenant, agent), rows in sorted(groups.items(), key=lambda kv: (kv[0][0] or "", kv[0][1])):
        n = len(rows)
        found.append(
            WindowStats(
                tenant,
                agent,
                end,
                n,
                completion_rate=sum(r.status == "done" for r in rows) / n,
                error_rate=sum(r.status == "failed" for r in rows) / n,
                steps_per_run=sum(r.steps for r in rows) / n,
                cost_per_run=sum(r.cost_usd for r in rows) / n,
                latency_seconds=statistics.median(r.updated_at - r.created_at for r in rows),
            )
        )
    return found


class WindowWatcher:
    """Every `window` seconds, scores the window just ended for every agent on the database.

    Windows are aligned to the clock (they end at multiples of `window` seconds since the epoch), so
    every process watching the database scores the same windows. A new alert goes to `board` first
    and on to `sinks` only if the board claims it (`DatabaseAlerts`: once across all processes).

    Args:
        database_url: the database the workers write to.
        board: the active alerts (the console reads them).
        sinks: where new alerts go besides the board.
        window: seconds per window.
        config: the detector's tuning.
    """

    def __init__(
        self,
        database_url: str,
        board: AlertBoard,
        sinks: Iterable[Callable[[Alert], None]],
        *,
        window: float = 60.0,
        config: DetectorConfig | None = None,
    ) -> None:
        self.database_url = database_url
        self.window = window
        self.board = board
        self.sinks = list(sinks)
        self.detector = AnomalyDetector(config, on_resolve=board.resolve)
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="keel-anomaly", daemon=True)

    def start(self) -> None:
        """Start watching."""
        self._thread.start()

    def stop(self) -> None:
        """Stop watching."""
        self._stop.set()
        self._thread.join(timeout=5)

    def _run(self) -> None:
        from ..storage import Store, make_engine

        store = Store(make_engine(self.database_url))
        end = (time.time() // self.window + 1) * self.window
        while not self._stop.wait(max(0.0, end - time.time())):
            try:
                for stats in window_stats(store, end - self.window, end):
                    for alert in self.detector.observe(stats):
                        if self.board.claim(alert):
                            self._send(alert)
            except Exception:  # the database may be briefly unavailable; the next window goes on
                log.exception("anomaly window ending %s failed", end)
            end += self.window
        store.engine.dispose()

    def _send(self, alert: Alert) -> None:
        for sink in self.sinks:
            try:
                sink(alert)
            except Exception:  # a sink must never stop detection
                log.exception("alert sink %r failed", sink)
