"""Forks and decisions killed with SIGKILL at named instants: no effect repeated, no run stranded, each run
released by decisions of its own, on SQLite and PostgreSQL.

The approving support agent of `worker_child.py` waits for a person's approval before each refund. The
test queues runs, lets them reach their approvals, and then works as a person would through `keel`
commands, each its own process, killed at the instant named by ``KEEL_KILL_POINT`` (see
`keel.durable._killpoints`):

* it forks every run: those waiting for their approval; one whose email was cut off when its worker died,
  once the run asked about it; one whose dead worker still holds it. Each fork is killed inside its
  transaction (``fork:indexed``), after it (``fork:committed``) or not at all; a fork that died before it
  was stored is made again.
* it approves each approval and resolves each interrupted email (``skip`` when the ledger shows the email
  went out, ``retry`` when not), each decision killed inside its transaction (``decide:recorded``), after
  it (``decide:claimed``) or not at all; a request that still waits after a kill is decided again.

Workers die too: each run named in CRASH_AFTER_EMAIL kills its worker right after its email lands.

At the end every run is done; per run the ledger holds exactly its own effects (a fork made at its
approval refunds and emails once, for itself; a fork made after the email has none); every run that
refunded was released by an approval of its own; nothing waits, nothing is queued, nothing is in flight.
"""

from __future__ import annotations

import itertools
import json
import os
import signal
import subprocess
import sys
import time
from collections import Counter
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
import sqlalchemy as sa

from keel import Runtime
from keel.durable import DurableEngine, make_engine
from keel.durable._engine import ORPHAN_AFTER_SECONDS

from .conftest import ChaosDatabases
from .test_worker_kills import Worker, load_child

RUNS = 6
CRASHING = ("run_fk_0", "run_fk_1")
"""Their email kills their worker: the first is forked once it asks about the email, the second before."""
WORKERS = {"sqlite": 1, "postgresql": 2}
BUDGET_SECONDS = 240.0  # the whole test, per backend
WAIT_SECONDS = 90.0  # for any one state to be reached
PERSON = "chaos-test"


class ForkChaos:
    """The databases, the workers (restarted when they die), and the person who forks and decides."""

    def __init__(self, dbs: ChaosDatabases, tmp: Path) -> None:
        self.dbs, self.tmp = dbs, tmp
        self.runtime = Runtime(dbs.keel_url)
        self.engine = DurableEngine.for_url(dbs.keel_url)
        self.keel = make_engine(dbs.keel_url)
        self.ledger = make_engine(dbs.ledger_url)
        self.dbos_status = "workflow_status" if dbs.backend == "sqlite" else "dbos.workflow_status"
        self.env = {
            **os.environ,
            "DB_URL": dbs.keel_url,
            "LEDGER_URL": dbs.ledger_url,
            "CONCURRENCY": "4",
            "CRASH_AFTER_EMAIL": ",".join(CRASHING),
        }
        self.workers: list[Worker] = []
        self.generation = 0
        self.hold_restarts = False
        self.started = time.monotonic()
        self.kills: Counter[str] = Counter()
        self.carried: dict[str, str] = {}  # fork -> original, for forks made after the original's email
        self.forks: dict[str, str] = {}  # fork -> original
        self.events: list[str] = []

    # -- reading the databases ---------------------------------------------------------------
    def rows(self, engine: sa.Engine, sql: str, **params: Any) -> list[sa.Row[Any]]:
        with engine.connect() as conn:
            return list(conn.execute(sa.text(sql), params).all())

    def status(self, run_id: str) -> str:
        return self.runtime.get(run_id).status

    def statuses(self) -> Counter[str]:
        found = self.rows(self.keel, "SELECT status, count(*) FROM keel_runs GROUP BY status")
        return Counter({status: n for status, n in found})

    def journal(self, run_id: str) -> list[tuple[str, str]]:
        sql = "SELECT name, status FROM keel_steps WHERE run_id = :r ORDER BY seq"
        return [(n, s) for n, s in self.rows(self.keel, sql, r=run_id)]

    def effects(self, run_id: str) -> Counter[str]:
        return Counter(e for (e,) in self.rows(self.ledger, "SELECT effect FROM ledger WHERE run_id = :r", r=run_id))

    # -- workers -------------------------------------------------------------------------------
    def start_worker(self, slot: int, worker_id: str) -> None:
        self.generation += 1
        worker = Worker(slot, worker_id, self.env, self.tmp / f"worker-{self.generation:02d}-{worker_id}.log")
        if slot < len(self.workers):
            self.workers[slot] = worker
        else:
            self.workers.append(worker)

    def restart_dead(self) -> None:
        """Start a worker again (alternately under its own id and a new one) where one died."""
        for worker in list(self.workers):
            if self.hold_restarts or worker.proc.poll() is None:
                continue
            assert worker.proc.returncode == -signal.SIGKILL, worker.log.read_text()[-3000:]
            worker.kill()  # reaps it
            self.kills["worker"] += 1
            same = self.kills["worker"] % 2 == 1
            worker_id = worker.worker_id if same else f"fk-w{worker.slot}-g{self.generation + 1}"
            self.log(f"worker {worker.worker_id} died; starting {worker_id}")
            self.start_worker(worker.slot, worker_id)

    def wait_for(self, condition: Callable[[], bool], what: str) -> None:
        """Poll until `condition` holds, restarting dead workers and sweeping as a live worker would."""
        deadline = time.monotonic() + WAIT_SECONDS
        last_sweep = 0.0
        while not condition():
            now = time.monotonic()
            if now > deadline or now - self.started > BUDGET_SECONDS:
                raise AssertionError(f"not reached: {what}\n{self.diagnose()}")
            self.restart_dead()
            if now - last_sweep > 0.5:
                # the sweep a live worker makes every few seconds, as it runs once runs have been idle long enough
                swept = self.engine.sweep(now=time.time() + ORPHAN_AFTER_SECONDS + 1)
                if swept:
                    self.log(f"swept {sorted(swept)}")
                last_sweep = now
            time.sleep(0.02)

    def moving(self) -> bool:
        """Some run is queued or running."""
        counts = self.statuses()
        return counts["queued"] + counts["running"] > 0

    # -- the person ----------------------------------------------------------------------------
    def keel_command(self, *args: str, kill_at: str | None) -> subprocess.CompletedProcess[str]:
        env = {k: v for k, v in os.environ.items() if not k.startswith("KEEL_")}
        if kill_at is not None:
            env["KEEL_KILL_POINT"] = kill_at
        argv = [sys.executable, "-m", "keel.cli", *args, "--db", self.dbs.keel_url]
        done = subprocess.run(argv, env=env, capture_output=True, text=True, timeout=120)
        killed = done.returncode == -signal.SIGKILL
        assert done.returncode == 0 or (killed and kill_at is not None), (args, kill_at, done.stderr[-3000:])
        if killed:
            self.kills[str(kill_at)] += 1
        self.log(f"keel {' '.join(args)} [{kill_at}] -> {done.returncode}")
        return done

    def fork(self, run_id: str, kill_at: str | None) -> str:
        """Fork a run at the end of its history; if the command died before the fork was stored, fork again."""
        history = [name for name, _ in self.journal(run_id)]
        model_steps = history.count("model")
        before = set(self.forks_of(run_id))
        self.keel_command("runs", "fork", run_id, "--from-step", str(model_steps), kill_at=kill_at)
        made = sorted(set(self.forks_of(run_id)) - before)
        assert len(made) <= 1, made
        if not made:  # killed inside the transaction: nothing was stored, so the person forks again
            assert kill_at == "fork:indexed", (run_id, kill_at)
            self.keel_command("runs", "fork", run_id, "--from-step", str(model_steps), kill_at=None)
            made = sorted(set(self.forks_of(run_id)) - before)
        [fork_id] = made
        # the fork holds the whole history it was made from (a worker may already carry it further)
        copied = [name for name, _ in self.journal(fork_id)]
        assert copied[: len(history)] == history, (run_id, history, fork_id, copied)
        self.forks[fork_id] = run_id
        return fork_id

    def forks_of(self, run_id: str) -> list[str]:
        return [r for (r,) in self.rows(self.keel, "SELECT run_id FROM keel_runs WHERE parent_run = :p", p=run_id)]

    def decide(self, request: Any, kill_at: str | None) -> None:
        """Decide one request as a person would; the command may be killed on the way."""
        if request.kind == "approval":
            args = ["approvals", "approve", request.id, "--by", PERSON]
        else:
            assert (request.kind, request.tool) == ("interrupted", "email_customer"), request
            origin = self.carried.get(request.run_id, request.run_id)  # a carried email went out in the original
            if self.effects(origin)["email"]:
                seen = "emailed (seen in the ledger)"
                args = ["runs", "resolve", request.id, "skip", "--result", seen, "--by", PERSON]
            else:
                args = ["runs", "resolve", request.id, "retry", "--by", PERSON]
        if kill_at is None:  # no kill: decided from Python, as an application would
            if request.kind == "approval":
                self.runtime.approve(request.id, by=PERSON)
            else:
                self.runtime.resolve(request.id, args[3], by=PERSON, result=args[5] if args[3] == "skip" else None)
            self.log(f"decided {request.run_id} {request.id} from Python")
            return
        self.keel_command(*args, kill_at=kill_at)

    # -- reporting -----------------------------------------------------------------------------
    def log(self, event: str) -> None:
        self.events.append(f"{time.monotonic() - self.started:8.3f} {event}")

    def diagnose(self) -> str:
        lines = [f"statuses: {dict(self.statuses())}", f"kills: {dict(self.kills)}"]
        for (run_id,) in self.rows(self.keel, "SELECT run_id FROM keel_runs WHERE status != 'done' ORDER BY run_id"):
            requests = [(a.id, a.kind, a.status) for a in self.runtime.approvals(status=None, run_id=run_id)]
            lines.append(f"  {run_id} {self.status(run_id)} journal={self.journal(run_id)} requests={requests}")
        lines.extend(["events:", *self.events])
        for worker in self.workers:
            lines.append(f"--- {worker.log.name} (tail)\n{worker.log.read_text()[-1500:]}")
        return "\n".join(lines)

    def close(self) -> None:
        for worker in self.workers:
            worker.stop()
        self.keel.dispose()
        self.ledger.dispose()


@pytest.fixture
def fork_chaos(chaos_databases: ChaosDatabases, tmp_path: Path) -> Iterator[ForkChaos]:
    load_child().ledger_engine(chaos_databases.ledger_url).dispose()
    chaos = ForkChaos(chaos_databases, tmp_path)
    try:
        yield chaos
    finally:
        chaos.close()


@pytest.mark.chaos
@pytest.mark.timeout(BUDGET_SECONDS + 60)
def test_forks_and_decisions_killed_at_any_instant_repeat_no_effect_and_strand_no_run(fork_chaos: ForkChaos) -> None:
    chaos = fork_chaos
    agent = load_child().approving_agent
    originals = [f"run_fk_{i}" for i in range(RUNS)]
    for i, run_id in enumerate(originals):
        task = f"Customer: order A-{2000 + i} arrived broken, refund and email me. amount={10 + i}.50 plan=refund,email"
        chaos.runtime.start(agent, task, run_id=run_id)
    for slot in range(WORKERS[chaos.dbs.backend]):
        chaos.start_worker(slot, f"fk-w{slot}-g0")
    for worker in chaos.workers:
        worker.wait_ready()
    chaos.wait_for(lambda: all(chaos.status(r) == "waiting" for r in originals), "every run waits for its approval")
    decide_points = itertools.cycle(["decide:recorded", "decide:claimed", None])

    def approve_until_decided(run_id: str) -> None:
        while pending := chaos.runtime.approvals(run_id=run_id):
            chaos.decide(pending[0], next(decide_points))

    # the first crashing run: approved, its email kills its worker, the restarted worker asks about the email
    first, second = CRASHING
    approve_until_decided(first)
    chaos.wait_for(lambda: chaos.status(first) == "needs_attention", f"{first} asks about its email")
    chaos.carried[chaos.fork(first, "fork:committed")] = first

    # the second: forked while its dead worker still holds it (no worker is started again meanwhile)
    chaos.hold_restarts = True
    approve_until_decided(second)

    def cut_off() -> bool:
        started = ("tool:email_customer", "started") in chaos.journal(second)
        return started and any(w.proc.poll() is not None for w in chaos.workers)

    chaos.wait_for(cut_off, f"{second} is cut off by its worker's death")
    chaos.carried[chaos.fork(second, "fork:indexed")] = second
    chaos.hold_restarts = False

    # every other run is forked at its approval: the fork asks for an approval of its own
    fork_points = itertools.cycle(["fork:indexed", "fork:committed", None])
    for run_id in originals[2:]:
        chaos.fork(run_id, next(fork_points))

    # the person decides whatever is asked, until every run is done; no run may be left with nobody to move it
    runs = [*originals, *chaos.forks]

    def settled() -> bool:
        return not chaos.moving() and all(chaos.status(r) in ("done", "waiting", "needs_attention") for r in runs)

    while True:
        chaos.wait_for(settled, "every run is done or waits for a person")
        pending = chaos.runtime.approvals(status="pending")
        if not pending:
            break
        for request in pending:
            chaos.decide(request, next(decide_points))
    not_done = {r: chaos.status(r) for r in runs if chaos.status(r) != "done"}
    assert not not_done, f"stranded: {not_done}\n{chaos.diagnose()}"

    # the kills happened where they were meant to
    for point in ("fork:indexed", "fork:committed", "decide:recorded", "decide:claimed", "worker"):
        assert chaos.kills[point] >= 1, (point, dict(chaos.kills))

    # per run, exactly its own effects: none repeated, by the original, a fork or a restarted worker
    for run_id in runs:
        want = Counter() if run_id in chaos.carried else Counter({"refund": 1, "email": 1})
        assert chaos.effects(run_id) == want, (run_id, chaos.effects(run_id), chaos.diagnose())
    ledger_runs = {r for (r,) in chaos.rows(chaos.ledger, "SELECT DISTINCT run_id FROM ledger")}
    assert ledger_runs <= set(runs)

    # each run was released by its own decisions: a refund approved for this run, no id shared with another
    for run_id in runs:
        requests = chaos.runtime.approvals(status=None, run_id=run_id)
        if chaos.effects(run_id)["refund"]:
            assert [a.status for a in requests if a.kind == "approval"] == ["approved"], (run_id, requests)
    all_ids = [a.id for a in chaos.runtime.approvals(status=None)]
    assert len(all_ids) == len(set(all_ids))
    for fork_id, original in chaos.forks.items():
        mine = {a.id for a in chaos.runtime.approvals(status=None, run_id=fork_id)}
        theirs = {a.id for a in chaos.runtime.approvals(status=None, run_id=original)}
        assert mine and not mine & theirs, (fork_id, mine, theirs)

    # nothing waits, nothing is in flight, no segment failed, none is left on the queue
    assert chaos.runtime.approvals(status="pending") == []
    assert chaos.rows(chaos.keel, "SELECT run_id, seq FROM keel_steps WHERE status = 'started'") == []
    errors = chaos.rows(chaos.keel, f"SELECT workflow_uuid, error FROM {chaos.dbos_status} WHERE status = 'ERROR'")
    assert not errors, errors[:5]
    chaos.engine.sweep()
    left = f"SELECT count(*) FROM {chaos.dbos_status} WHERE status IN ('ENQUEUED', 'PENDING')"
    chaos.wait_for(lambda: chaos.rows(chaos.keel, left)[0][0] == 0, "the queue drains")
    summary = {
        "backend": chaos.dbs.backend,
        "runs": len(runs),
        "forks": len(chaos.forks),
        "kills": dict(chaos.kills),
        "seconds": round(time.monotonic() - chaos.started, 1),
    }
    print("FORK-CHAOS", json.dumps(summary))
