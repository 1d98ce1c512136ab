"""Workers killed with SIGKILL at random points across hundreds of runs: no run lost, no effect repeated or missing.

The support-like agent of `worker_child.py`, driven by a scripted model, refunds an order (an idempotent
service keyed by the call's idempotency key), sometimes changes its address (idempotent too), and emails
the customer (not idempotent) before answering. Its tools write to a ledger table in a separate
database. The test queues the runs, starts worker processes (SQLite: one; PostgreSQL: two) and kills a
worker with SIGKILL at random points, restarting it under the same worker id or a new one. A run whose
email was in flight when its worker died needs attention; the test resolves it as a person would, from
the ledger: ``skip`` when the email went out, ``retry`` when it did not.

At the end every run is done; per run the ledger has exactly one row per intended effect; no run is
queued or running; no journal has a started-but-unfinished step; no request waits for a person; no
segment is left on the queue.

Kill points (seeded by ``KEEL_CHAOS_SEED``): after the journal grows by a random number of steps, kill
either at once, right after the next side effect lands in the ledger (before its step is journaled, if
the kill is quick enough), or while an email is in flight (journaled as started, maybe sent, not
finished).
"""

from __future__ import annotations

import importlib.util
import json
import os
import random
import signal
import subprocess
import sys
import threading
import time
from collections import Counter
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from types import ModuleType
from typing import Any

import pytest
import sqlalchemy as sa

from keel import Runtime
from keel.durable import DurableEngine, make_engine

from .conftest import ChaosDatabases

CHILD = Path(__file__).with_name("worker_child.py")
SEED = int(os.environ.get("KEEL_CHAOS_SEED", "1729"))
RUNS = int(os.environ.get("KEEL_CHAOS_RUNS", "200"))
WORKERS = {"sqlite": 1, "postgresql": 2}
KILLS = {"sqlite": 12, "postgresql": 16}
CONCURRENCY = 8
# Deadlines against a hang, not measurements: generous enough that only a lost or stuck run reaches them on a
# loaded machine (the sweeper alone takes a dead worker's runs back after its heartbeat timeout).
BUDGET_SECONDS = 600.0  # the whole test, per backend
STALL_SECONDS = 90.0  # no progress at all for this long: a run is lost
READY_SECONDS = 60.0
POLL_SECONDS = 0.003  # how often the database is polled for a kill point: kills land within a few ms
PERSON = "chaos-test"
RESOLUTION = ("request:interrupted", "decision:interrupted", "completion:interrupted")
EFFECTS_OF = {"refund,email": ("refund", "email"), "refund,address,email": ("refund", "address", "email")}


def load_child() -> ModuleType:
    spec = importlib.util.spec_from_file_location("keel_chaos_worker_child", CHILD)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


class Worker:
    """One worker process; `ready` is set when it prints READY (it listens on the queue)."""

    def __init__(self, slot: int, worker_id: str, env: dict[str, str], log: Path) -> None:
        self.slot, self.worker_id, self.log = slot, worker_id, log
        with log.open("w") as err:
            self.proc = subprocess.Popen(
                [sys.executable, str(CHILD)],
                env={**env, "WORKER_ID": worker_id},
                stdout=subprocess.PIPE,
                stderr=err,
                text=True,
            )
        self.ready = threading.Event()
        self._reader = threading.Thread(target=self._read, daemon=True)
        self._reader.start()

    def _read(self) -> None:
        assert self.proc.stdout is not None
        for line in self.proc.stdout:
            if line.startswith("READY"):
                self.ready.set()

    def wait_ready(self) -> None:
        if not self.ready.wait(READY_SECONDS):
            raise AssertionError(f"worker {self.worker_id} did not start: {self.log.read_text()[-3000:]}")

    def kill(self) -> None:
        self.proc.send_signal(signal.SIGKILL)
        self._reap()

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(timeout=30)
            except subprocess.TimeoutExpired:
                self.proc.kill()
        self._reap()

    def _reap(self) -> None:
        self.proc.wait(timeout=30)
        self._reader.join(timeout=10)
        assert self.proc.stdout is not None
        self.proc.stdout.close()


@dataclass
class Stats:
    runs: int = 0
    kills: Counter[str] = field(default_factory=Counter)
    restarts_same_id: int = 0
    restarts_new_id: int = 0
    sweeps: int = 0
    swept_runs: int = 0
    resolved: Counter[str] = field(default_factory=Counter)
    seconds: float = 0.0


class Chaos:
    """The test's view of the databases, its workers, and the person who resolves interrupted runs."""

    def __init__(self, dbs: ChaosDatabases, tmp: Path, rng: random.Random) -> None:
        self.dbs, self.tmp, self.rng = dbs, tmp, rng
        self.runtime = Runtime(dbs.keel_url)
        self.engine = DurableEngine.for_url(dbs.keel_url)
        self.keel = make_engine(dbs.keel_url)
        self.ledger = make_engine(dbs.ledger_url)
        self.dbos_status = "workflow_status" if dbs.backend == "sqlite" else "dbos.workflow_status"
        self.env = {
            **os.environ,
            "DB_URL": dbs.keel_url,
            "LEDGER_URL": dbs.ledger_url,
            "CONCURRENCY": str(CONCURRENCY),
        }
        self.workers: list[Worker] = []
        self.generation = 0
        self.stats = Stats()
        self.started = time.monotonic()
        self.progress: tuple[Any, ...] = ()
        self.progress_at = time.monotonic()
        self.events: list[str] = []

    # -- reading the databases ---------------------------------------------------------------
    def scalar(self, engine: sa.Engine, sql: str, **params: Any) -> Any:
        with engine.connect() as conn:
            return conn.execute(sa.text(sql), params).scalar()

    def rows(self, engine: sa.Engine, sql: str, **params: Any) -> list[sa.Row[Any]]:
        with engine.connect() as conn:
            return list(conn.execute(sa.text(sql), params).all())

    def journal_size(self) -> int:
        return int(self.scalar(self.keel, "SELECT count(*) FROM keel_steps"))

    def ledger_size(self) -> int:
        return int(self.scalar(self.ledger, "SELECT count(*) FROM ledger"))

    def statuses(self) -> Counter[str]:
        found = self.rows(self.keel, "SELECT status, count(*) FROM keel_runs GROUP BY status")
        return Counter({status: n for status, n in found})

    def in_flight(self) -> set[tuple[str, int]]:
        return {(r, s) for r, s in self.rows(self.keel, "SELECT run_id, seq FROM keel_steps WHERE status = 'started'")}

    def effects(self, run_id: str) -> Counter[str]:
        found = self.rows(self.ledger, "SELECT effect FROM ledger WHERE run_id = :r", r=run_id)
        return Counter(e for (e,) in found)

    def idle(self) -> bool:
        """No run is queued or running: only a person can move the remaining ones."""
        counts = self.statuses()
        return counts["queued"] + counts["running"] == 0

    def all_done(self) -> bool:
        return self.statuses() == Counter({"done": self.stats.runs})

    # -- time bounds ---------------------------------------------------------------------------
    def check_time(self) -> None:
        for worker in self.workers:
            if worker.proc.poll() is not None:
                raise AssertionError(f"worker {worker.worker_id} exited by itself:\n{worker.log.read_text()[-3000:]}")
        now = time.monotonic()
        if now - self.started > BUDGET_SECONDS:
            raise AssertionError(f"the chaos run exceeded {BUDGET_SECONDS} s\n{self.diagnose()}")
        if now - self.progress_at > 0.5:
            signature = (self.journal_size(), self.ledger_size(), tuple(sorted(self.statuses().items())))
            if signature != self.progress:
                self.progress, self.progress_at = signature, now
            elif now - self.progress_at > STALL_SECONDS:
                raise AssertionError(f"no progress for {STALL_SECONDS} s: runs are lost\n{self.diagnose()}")

    def wait_until(self, condition: Callable[[], bool]) -> bool:
        """Poll until `condition` holds (True) or no run can move without a person (False); bounded in time."""
        polls = 0
        while True:
            if condition():
                return True
            polls += 1
            if polls % 16 == 0:
                self.resolve_pending()
                if self.idle():
                    return condition()
                self.check_time()
            time.sleep(POLL_SECONDS)

    # -- workers -------------------------------------------------------------------------------
    def start_worker(self, slot: int, worker_id: str) -> Worker:
        self.generation += 1
        worker = Worker(slot, worker_id, self.env, self.tmp / f"worker-{self.generation:02d}-{worker_id}.log")
        if slot < len(self.workers):
            self.workers[slot] = worker
        else:
            self.workers.append(worker)
        return worker

    def worker_of_run(self, run_id: str) -> Worker | None:
        owner = self.scalar(self.keel, "SELECT worker FROM keel_runs WHERE run_id = :r", r=run_id)
        return next((w for w in self.workers if w.worker_id == owner), None)

    def kill_and_restart(self, victim: Worker, point: str) -> None:
        victim.kill()
        self.stats.kills[point] += 1
        self.log(f"killed {victim.worker_id} (pid {victim.proc.pid}) at {point}")
        if self.rng.random() < 0.5:  # else the worker's own recovery or a live worker's sweeper finds the runs
            self.stats.sweeps += 1
            swept = self.engine.sweep()
            self.stats.swept_runs += len(swept)
            self.log(f"swept: {sorted(swept)}")
        if self.rng.random() < 0.5:
            self.stats.restarts_same_id += 1
            worker_id = victim.worker_id
        else:
            self.stats.restarts_new_id += 1
            worker_id = f"chaos-w{victim.slot}-g{self.generation + 1}"
        # not waiting for it to be ready: the next kill may land while it starts up and recovers
        started = self.start_worker(victim.slot, worker_id)
        self.log(f"started {worker_id} (pid {started.proc.pid})")

    def next_kill(self, expected_steps: int, kills_left: int) -> None:
        """Let the journal grow by a random count, then kill a worker at a randomly chosen kind of point."""
        # spread the kills over the work left: on average a kill after each 1/(kills_left + 1) of it
        done = self.journal_size()
        target = done + self.rng.randint(1, max(1, 2 * (expected_steps - done) // (kills_left + 1)))
        if not self.wait_until(lambda: self.journal_size() >= target):
            return
        point = self.rng.choice(["now", "after-effect", "email-in-flight"])
        victim: Worker | None = self.rng.choice(self.workers)
        if point == "after-effect":
            before = self._newest_effect()
            if not self.wait_until(lambda: self._newest_effect() > before):
                return
            owner = self.scalar(self.ledger, "SELECT worker FROM ledger WHERE id = :i", i=self._newest_effect())
            victim = next((w for w in self.workers if w.worker_id == owner), victim)
        elif point == "email-in-flight":
            known = self.in_flight()
            fresh: list[tuple[str, int]] = []

            def started() -> bool:
                fresh[:] = sorted(self.in_flight() - known)
                return bool(fresh)

            if not self.wait_until(started):
                return
            victim = self.worker_of_run(fresh[0][0]) or victim
        assert victim is not None
        self.kill_and_restart(victim, point)

    def _newest_effect(self) -> int:
        return int(self.scalar(self.ledger, "SELECT coalesce(max(id), 0) FROM ledger"))

    # -- the person ----------------------------------------------------------------------------
    def resolve_pending(self) -> None:
        """Decide every interrupted call as a person would: skip it if the ledger shows the email went out."""
        for request in self.runtime.approvals(status="pending"):
            assert (request.kind, request.tool) == ("interrupted", "email_customer"), request
            if self.effects(request.run_id)["email"]:
                self.runtime.resolve(request.id, "skip", by=PERSON, result="emailed the customer (seen in the ledger)")
                self.stats.resolved["skip"] += 1
                self.log(f"skip {request.run_id} {request.id}")
            else:
                self.runtime.resolve(request.id, "retry", by=PERSON)
                self.stats.resolved["retry"] += 1
                self.log(f"retry {request.run_id} {request.id}")

    # -- reporting -----------------------------------------------------------------------------
    def close(self) -> None:
        for worker in self.workers:
            worker.stop()
        self.keel.dispose()
        self.ledger.dispose()

    def log(self, event: str) -> None:
        self.events.append(f"{time.monotonic() - self.started:8.3f} {event}")

    def explain(self, run_id: str) -> str:
        """Everything recorded about one run: index row, segments, journal, requests, ledger."""
        keel, ledger = self.keel, self.ledger
        record = self.rows(keel, "SELECT status, segment, worker, error FROM keel_runs WHERE run_id = :r", r=run_id)
        segments = self.rows(
            self.keel,
            f"SELECT workflow_uuid, status, executor_id, created_at, updated_at, substr(error, 1, 600) "
            f"FROM {self.dbos_status} WHERE workflow_uuid = :r OR workflow_uuid LIKE :p ORDER BY created_at",
            r=run_id,
            p=f"{run_id}~%",
        )
        journal = self.rows(keel, "SELECT seq, name, status FROM keel_steps WHERE run_id = :r ORDER BY seq", r=run_id)
        requests = [(a.id, a.kind, a.status, a.decision) for a in self.runtime.approvals(status=None, run_id=run_id)]
        effects = self.rows(ledger, "SELECT id, effect, worker, pid FROM ledger WHERE run_id = :r", r=run_id)
        return "\n".join(
            [
                f"  {run_id}: {[tuple(r) for r in record]}",
                f"    segments: {[tuple(r) for r in segments]}",
                f"    journal: {[tuple(r) for r in journal]}",
                f"    requests: {requests}",
                f"    ledger: {[tuple(r) for r in effects]}",
            ]
        )

    def diagnose(self, runs: list[str] | None = None) -> str:
        if runs is None:
            found = self.rows(self.keel, "SELECT run_id FROM keel_runs WHERE status != 'done' ORDER BY run_id LIMIT 10")
            runs = [r for (r,) in found]
        lines = [f"statuses: {dict(self.statuses())}", f"stats: {self.stats}"]
        lines.extend(self.explain(run_id) for run_id in runs[:10])
        left = self.rows(
            self.keel,
            f"SELECT workflow_uuid, status, executor_id, queue_name FROM {self.dbos_status} "
            "WHERE status IN ('ENQUEUED', 'PENDING') ORDER BY created_at LIMIT 20",
        )
        lines.append(f"segments left on the queue or pending: {[tuple(r) for r in left]}")
        lines.append("events:")
        lines.extend(self.events)
        for worker in self.workers:
            lines.append(f"--- {worker.log.name} (tail)\n{worker.log.read_text()[-1500:]}")
        return "\n".join(lines)


@pytest.fixture
def chaos(chaos_databases: ChaosDatabases, tmp_path: Path) -> Iterator[Chaos]:
    load_child().ledger_engine(chaos_databases.ledger_url).dispose()
    chaos = Chaos(chaos_databases, tmp_path, random.Random(f"{SEED}/{chaos_databases.backend}"))
    try:
        yield chaos
    finally:
        chaos.close()


def queue_runs(chaos: Chaos, agent: Any) -> dict[str, tuple[str, ...]]:
    """Queue the runs (no worker runs yet); return each run's intended effects."""
    intended: dict[str, tuple[str, ...]] = {}
    for i in range(RUNS):
        plan = "refund,address,email" if chaos.rng.random() < 0.5 else "refund,email"
        run_id = f"run_chaos_{i:04d}"
        amount = f"{chaos.rng.randint(5, 300)}.{chaos.rng.randint(0, 99):02d}"
        task = f"Customer: order A-{1000 + i} arrived broken, refund and email me. amount={amount} plan={plan}"
        chaos.runtime.start(agent, task, run_id=run_id)
        intended[run_id] = EFFECTS_OF[plan]
    chaos.stats.runs = RUNS
    return intended


def drive(chaos: Chaos, intended: dict[str, tuple[str, ...]]) -> None:
    """Start the workers, kill them at random points, resolve what needs a person, until every run is done."""
    expected_steps = sum(4 + len(effects) + 1 for effects in intended.values())  # model and tool steps
    for slot in range(WORKERS[chaos.dbs.backend]):
        chaos.start_worker(slot, f"chaos-w{slot}-g0")
    for worker in chaos.workers:
        worker.wait_ready()

    kills = KILLS[chaos.dbs.backend]
    while sum(chaos.stats.kills.values()) < kills and not chaos.idle():
        chaos.next_kill(expected_steps, kills - sum(chaos.stats.kills.values()))
    while not chaos.wait_until(chaos.all_done):
        if not chaos.runtime.approvals(status="pending") and not chaos.all_done():
            raise AssertionError(f"no run can move and none waits for a person\n{chaos.diagnose()}")

    # stale segments (of runs a later segment carried on) drain from the queue, and those a dead worker held
    # are cancelled by the sweep
    chaos.stats.swept_runs += len(chaos.engine.sweep())
    while chaos.scalar(chaos.keel, f"SELECT count(*) FROM {chaos.dbos_status} WHERE status IN ('ENQUEUED', 'PENDING')"):
        chaos.check_time()
        time.sleep(0.05)
    chaos.stats.seconds = round(time.monotonic() - chaos.started, 1)
    for worker in chaos.workers:
        worker.stop()


@pytest.mark.chaos
@pytest.mark.timeout(BUDGET_SECONDS + 60)
def test_sigkilled_workers_lose_no_run_and_repeat_no_side_effect(chaos: Chaos) -> None:
    intended = queue_runs(chaos, load_child().agent)
    drive(chaos, intended)

    # every run is done, with the scripted answer after four model requests
    records = {r.run_id: r for r in chaos.runtime.runs(limit=10_000)}
    assert set(records) == set(intended)
    bad = {r.run_id: r.status for r in records.values() if r.status != "done"}
    assert not bad, f"runs not done: {bad}\n{chaos.diagnose()}"
    for run_id, record in records.items():
        assert record.result is not None and record.steps == 4, (run_id, record.steps, record.result)
        assert record.result["output"].startswith("Refunded "), (run_id, record.result["output"])

    # per run, exactly one ledger row per intended effect: none repeated, none missing, none foreign
    ledger = chaos.rows(chaos.ledger, "SELECT run_id, effect FROM ledger ORDER BY id")
    found: dict[str, Counter[str]] = {}
    for run_id, effect in ledger:
        found.setdefault(run_id, Counter())[effect] += 1
    wrong = {r: dict(found.get(r, Counter())) for r, want in intended.items() if found.get(r) != Counter(want)}
    assert not wrong, f"the ledger is wrong for {len(wrong)} runs: {wrong}\n{chaos.diagnose(sorted(wrong))}"
    assert set(found) <= set(intended)

    # journals are complete and in the agent's order; no step was left started
    assert chaos.in_flight() == set()
    journal: dict[str, list[str]] = {}
    for run_id, name in chaos.rows(chaos.keel, "SELECT run_id, name FROM keel_steps ORDER BY run_id, seq"):
        journal.setdefault(run_id, []).append(name)
    for run_id, effects in intended.items():
        tools = ["tool:refund_order", *(["tool:update_shipping_address"] if "address" in effects else [])]
        want = ["model", "tool:lookup_order", "model", *tools, "model", "tool:email_customer", "model"]
        names = [n for n in journal[run_id] if n not in RESOLUTION]
        assert names == want, (run_id, journal[run_id])
        # each time the email was cut off (again): a request, a decision and the completion it began
        asked = Counter(n for n in journal[run_id] if n in RESOLUTION)
        requests, decisions = asked["request:interrupted"], asked["decision:interrupted"]
        assert requests == decisions == asked["completion:interrupted"], (run_id, journal[run_id])

    # no segment failed with an error that escaped keel
    errors = chaos.rows(chaos.keel, f"SELECT workflow_uuid, error FROM {chaos.dbos_status} WHERE status = 'ERROR'")
    assert not errors, errors[:5]

    # nobody is asked anything any more, and the person decided each request
    assert chaos.runtime.approvals(status="pending") == []
    decided = chaos.runtime.approvals(status=None)
    assert all((a.kind, a.status, a.decided_by) == ("interrupted", "decided", PERSON) for a in decided), decided
    assert len(decided) == sum(chaos.stats.resolved.values())

    summary = {
        "backend": chaos.dbs.backend,
        "seed": SEED,
        "workers": WORKERS[chaos.dbs.backend],
        "runs": RUNS,
        "kills": dict(chaos.stats.kills),
        "restarts_same_id": chaos.stats.restarts_same_id,
        "restarts_new_id": chaos.stats.restarts_new_id,
        "explicit_sweeps": chaos.stats.sweeps,
        "swept_runs": chaos.stats.swept_runs,
        "needs_attention_resolved": dict(chaos.stats.resolved),
        "ledger_rows": len(ledger),
        "seconds": chaos.stats.seconds,
    }
    print("CHAOS", json.dumps(summary))
