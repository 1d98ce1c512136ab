"""What durability costs in keel: step overhead, storage, 1,000 concurrent runs, and paused runs.

    .venv/bin/python bench/durable.py                         # SQLite, every phase, 3 runs each
    .venv/bin/python bench/durable.py --db postgresql         # the same on a fresh PostgreSQL database
    .venv/bin/python bench/durable.py --db sqlite,postgresql --runs 5
    .venv/bin/python bench/durable.py --phases concurrency --profile   # + cProfile of the 1,000-run case

Phases (each repetition in a fresh child process, on a fresh database; the figure is the median):

1. ``step``: one run of ``--turns`` turns (default 200) of a ``ScriptedModel`` whose function answers
   ``ToolCall("add", {"a": n, "b": 1})`` for request n <= turns (n from
   ``keel.models._base.request_number``), then ``"done"``; ``async def add``; ``policies=[]``. A turn
   is one model step and one tool step, both journaled (the run journals 2*turns+1 steps). Wall and
   CPU (whole process, and the main thread alone) per turn, durable vs ``Runtime("memory")``, after
   a 5-turn warm-up run that launches the engine.
2. ``storage``: database growth for one run of 50, 100 and 200 turns (SQLite: file + WAL after
   ``PRAGMA wal_checkpoint(TRUNCATE)``; PostgreSQL: ``pg_total_relation_size`` of keel's tables), and
   the bytes of that run's own rows (keel_steps + keel_runs + DBOS's workflow_status).
3. ``concurrency``: ``--concurrency`` runs (default 1,000) of ``--steps`` model calls each (default
   10: 9 tool turns then "done") with ``--latency`` (default 50 ms) of ``asyncio.sleep`` in the
   model, all started with one ``asyncio.gather(agent.run(...))`` in one process; durable vs memory.
4. ``paused``: ``--paused`` runs (default 200) whose one tool call needs approval
   (``RequireApproval(["add"])``); process RSS (VmRSS) before, after, and after ``gc.collect()`` +
   ``malloc_trim``; tasks alive vs before; keel run objects still alive. One run is then approved and
   resumed to show the paused runs are real.

``--profile`` adds one more child for the concurrency phase on each database: cProfile of the main
thread (the journal writer runs on its own thread, ``keel-journal``; its CPU is read from
/proc/self/task), with the writer's batch sizes.
"""

from __future__ import annotations

import argparse
import asyncio
import cProfile
import gc
import io
import json
import os
import pstats
import shutil
import statistics
import subprocess
import sys
import tempfile
import threading
import time
import uuid
from pathlib import Path
from typing import Any

BENCH_DIR = Path(__file__).resolve().parent
sys.path.insert(0, str(BENCH_DIR))

PG_ADMIN = "postgresql+psycopg://postgres@127.0.0.1:5432/test"
PG_URL = "postgresql://postgres@127.0.0.1:5432/{name}"
PHASES = ("step", "storage", "concurrency", "paused")
TARGET_TURN_MS = 1.0  # wall per agent step (turn), durable
TARGET_RUN_BYTES = 1_000_000  # one 200-turn run
TARGET_CONCURRENT_S = 6.0  # 1,000 runs x 10 steps x 50 ms
WARMUP_TURNS = 5


# -- helpers (child side) ------------------------------------------------------------------------
def _trim() -> None:
    gc.collect()
    try:
        import ctypes

        ctypes.CDLL("libc.so.6").malloc_trim(0)
    except (OSError, AttributeError):
        pass


def rss_kb() -> int:
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1])
    return 0


def thread_sched() -> dict[str, tuple[float, float]]:
    """(CPU seconds, seconds runnable but waiting for a CPU) of each Python thread alive, by name.

    The second figure is the kernel's run delay: time lost to other processes on a loaded machine.
    """
    out: dict[str, tuple[float, float]] = {}
    for t in threading.enumerate():
        try:
            with open(f"/proc/self/task/{t.native_id}/schedstat") as f:
                cpu_ns, delay_ns = (int(x) for x in f.read().split()[:2])
        except (OSError, TypeError, ValueError):
            continue
        cpu, delay = out.get(t.name, (0.0, 0.0))
        out[t.name] = (cpu + cpu_ns / 1e9, delay + delay_ns / 1e9)
    return out


def sched_delta(before: dict[str, tuple[float, float]], after: dict[str, tuple[float, float]]) -> dict[str, Any]:
    """Per thread: CPU seconds and run-queue wait seconds between two `thread_sched` readings."""
    out = {}
    for name, (cpu, delay) in after.items():
        c0, d0 = before.get(name, (0.0, 0.0))
        if cpu - c0 > 0.0005 or delay - d0 > 0.0005:
            out[name] = {"cpu_s": round(cpu - c0, 3), "runq_wait_s": round(delay - d0, 3)}
    return out


def make_agent(turns: int, *, latency: float = 0.0, approval: bool = False, name: str = "bench_durable"):
    """An agent whose scripted model asks for `turns` add calls (by request number), then answers done."""
    from keel import Agent
    from keel.messages import ToolCall
    from keel.models import ScriptedModel
    from keel.models._base import request_number

    def answer(messages, tools):
        n = request_number.get()
        return ToolCall("add", {"a": n, "b": 1}) if n <= turns else "done"

    class SlowScripted(ScriptedModel):
        async def request(self, messages, tools, *, max_tokens=None):
            await asyncio.sleep(latency)
            return await super().request(messages, tools, max_tokens=max_tokens)

    async def add(a: int, b: int) -> int:
        """Add two integers."""
        return a + b

    model = SlowScripted(answer) if latency else ScriptedModel(answer)
    policies: list[Any] = []
    if approval:
        from keel.policies.approvals import RequireApproval

        policies = [RequireApproval(["add"])]
    return Agent(name, model, instructions="Use the add tool.", tools=[add], policies=policies, max_steps=turns + 5)


def make_runtime(url: str):
    from keel import Runtime

    return Runtime(url)


def close_engine() -> None:
    try:
        from keel.durable import DurableEngine

        DurableEngine.close()
    except Exception:
        pass


def engine():
    from keel.durable import DurableEngine

    return DurableEngine.current()


def check(result, turns: int, status: str = "done") -> None:
    if result.status != status or (status == "done" and result.steps != turns + 1):
        raise RuntimeError(f"run {result.run_id} ended {result.status} after {result.steps} steps: {result.error}")


# -- phase 1: per-turn overhead ------------------------------------------------------------------
async def phase_step(url: str, turns: int) -> dict[str, Any]:
    rt = make_runtime(url)
    agent = make_agent(turns)
    check(await make_agent(WARMUP_TURNS).run("go", runtime=rt), WARMUP_TURNS)  # launches the engine
    _trim()
    gc.disable()  # collections of other phases' garbage would land at random in the timing
    threads0 = thread_sched()
    c0, m0, t0 = time.process_time(), time.thread_time(), time.perf_counter()
    result = await agent.run("go", runtime=rt)
    t1, m1, c1 = time.perf_counter(), time.thread_time(), time.process_time()
    threads = sched_delta(threads0, thread_sched())
    gc.enable()
    check(result, turns)
    main = threads.get("MainThread", {"runq_wait_s": 0.0})
    return {
        "wall_ms_per_turn": (t1 - t0) / turns * 1000,
        "cpu_ms_per_turn": (c1 - c0) / turns * 1000,
        "main_cpu_ms_per_turn": (m1 - m0) / turns * 1000,
        "journaled_steps": 2 * turns + 1,
        "wall_us_per_journaled_step": (t1 - t0) / (2 * turns + 1) * 1e6,
        "main_runq_wait_ms_per_turn": main["runq_wait_s"] / turns * 1000,
        "threads": threads,
    }


# -- phase 2: storage ----------------------------------------------------------------------------
def _sqlite_path(url: str) -> Path:
    return Path(url.removeprefix("sqlite:///"))


def db_bytes(url: str) -> tuple[int, str]:
    """The database's size now: SQLite file + WAL after a TRUNCATE checkpoint; PostgreSQL keel tables."""
    import sqlalchemy as sa

    eng = engine().engine
    if url.startswith("sqlite"):
        with eng.connect() as conn:
            busy = conn.exec_driver_sql("PRAGMA wal_checkpoint(TRUNCATE)").first()
            conn.commit()
        path = _sqlite_path(url)
        size = sum(p.stat().st_size for p in (path, Path(f"{path}-wal")) if p.exists())
        return size, f"checkpoint busy={busy[0]}"
    with eng.connect() as conn:
        size = conn.execute(
            sa.text(
                "SELECT coalesce(sum(pg_total_relation_size(c.oid)), 0) FROM pg_class c "
                "JOIN pg_namespace n ON n.oid = c.relnamespace WHERE c.relkind = 'r' "
                "AND (c.relname LIKE 'keel_%' OR n.nspname = 'dbos')"
            )
        ).scalar()
    return int(size or 0), "keel_* + dbos.* tables, with indexes and TOAST"


def run_row_bytes(url: str, run_id: str) -> dict[str, int]:
    """The bytes of one run's own rows: keel_steps, keel_runs and DBOS's workflow_status."""
    import sqlalchemy as sa

    eng = engine().engine
    out: dict[str, int] = {}
    with eng.connect() as conn:
        if url.startswith("sqlite"):
            out["keel_steps"] = conn.execute(
                sa.text(
                    "SELECT coalesce(sum(length(run_id) + 4 + length(name) + length(status) "
                    "+ coalesce(length(output), 0)), 0) FROM keel_steps WHERE run_id = :r"
                ),
                {"r": run_id},
            ).scalar()
            out["keel_runs"] = conn.execute(
                sa.text(
                    "SELECT coalesce(sum(length(run_id) + length(agent) + length(task) + length(status) "
                    "+ length(metadata) + coalesce(length(result), 0) + coalesce(length(error), 0) "
                    "+ length(usage) + coalesce(length(worker), 0) + 40), 0) FROM keel_runs WHERE run_id = :r"
                ),
                {"r": run_id},
            ).scalar()
            wf = "workflow_status"
        else:
            out["keel_steps"] = conn.execute(
                sa.text("SELECT coalesce(sum(pg_column_size(s.*)), 0) FROM keel_steps s WHERE run_id = :r"),
                {"r": run_id},
            ).scalar()
            out["keel_runs"] = conn.execute(
                sa.text("SELECT coalesce(sum(pg_column_size(s.*)), 0) FROM keel_runs s WHERE run_id = :r"),
                {"r": run_id},
            ).scalar()
            wf = "dbos.workflow_status"
        try:
            with conn.begin_nested():
                out["dbos_rows"] = conn.execute(
                    sa.text(f"SELECT count(*) FROM {wf} WHERE workflow_uuid LIKE :r"), {"r": run_id + "%"}
                ).scalar()
        except sa.exc.SQLAlchemyError:
            out["dbos_rows"] = -1
    return {k: int(v or 0) for k, v in out.items()}


async def phase_storage(url: str, sizes: list[int]) -> dict[str, Any]:
    rt = make_runtime(url)
    check(await make_agent(WARMUP_TURNS).run("go", runtime=rt), WARMUP_TURNS)
    rows = []
    before, note = await asyncio.to_thread(db_bytes, url)
    for turns in sizes:
        result = await make_agent(turns).run("go", runtime=rt)
        check(result, turns)
        after, note = await asyncio.to_thread(db_bytes, url)
        own = await asyncio.to_thread(run_row_bytes, url, result.run_id)
        rows.append(
            {
                "turns": turns,
                "growth_bytes": after - before,
                "row_bytes": own["keel_steps"] + own["keel_runs"],
                "steps_bytes": own["keel_steps"],
                "run_bytes": own["keel_runs"],
                "dbos_rows": own["dbos_rows"],
            }
        )
        before = after
    return {"rows": rows, "note": note}


# -- phase 3: 1,000 concurrent runs --------------------------------------------------------------
class BatchStats:
    """Counts the journal writer's transactions and their sizes (installed only with --profile)."""

    def __init__(self) -> None:
        self.sizes: list[int] = []
        self.seconds = 0.0

    def install(self) -> None:
        from keel.durable._writer import LoopWriter, ThreadWriter

        stats = self
        loop_commit = LoopWriter._commit

        def commit_loop(writer, batch):
            t0 = time.perf_counter()
            try:
                loop_commit(writer, batch)
            finally:
                stats.seconds += time.perf_counter() - t0
                stats.sizes.append(len(batch))

        thread_commit = ThreadWriter._commit

        def commit_thread(conn, batch):
            t0 = time.perf_counter()
            try:
                thread_commit(conn, batch)
            finally:
                stats.seconds += time.perf_counter() - t0
                stats.sizes.append(len(batch))

        LoopWriter._commit = commit_loop
        ThreadWriter._commit = staticmethod(commit_thread)

    def summary(self) -> dict[str, Any]:
        s = sorted(self.sizes)
        if not s:
            return {}
        return {
            "transactions": len(s),
            "writes": sum(s),
            "batch_mean": round(sum(s) / len(s), 1),
            "batch_median": s[len(s) // 2],
            "batch_max": s[-1],
            "commit_seconds": round(self.seconds, 3),
        }


async def phase_concurrency(url: str, runs: int, steps: int, latency: float, profile: bool) -> dict[str, Any]:
    rt = make_runtime(url)
    turns = steps - 1
    agent = make_agent(turns, latency=latency)
    check(await make_agent(WARMUP_TURNS).run("go", runtime=rt), WARMUP_TURNS)
    stats = BatchStats()
    if profile and rt.durable:
        stats.install()
    _trim()
    threads0 = thread_sched()
    prof = cProfile.Profile() if profile else None
    c0, m0, t0 = time.process_time(), time.thread_time(), time.perf_counter()
    if prof:
        prof.enable()
    results = await asyncio.gather(*(agent.run(f"go {i}", runtime=rt) for i in range(runs)))
    if prof:
        prof.disable()
    t1, m1, c1 = time.perf_counter(), time.thread_time(), time.process_time()
    threads = sched_delta(threads0, thread_sched())
    for r in results:
        check(r, turns)
    out: dict[str, Any] = {
        "wall_s": t1 - t0,
        "cpu_s": c1 - c0,
        "main_cpu_s": m1 - m0,
        "ideal_s": steps * latency,
        "main_runq_wait_s": threads.get("MainThread", {}).get("runq_wait_s", 0.0),
        "threads": threads,
    }
    if prof:
        for key in ("tottime", "cumulative"):
            buf = io.StringIO()
            pstats.Stats(prof, stream=buf).strip_dirs().sort_stats(key).print_stats(25)
            out[f"profile_{key}"] = buf.getvalue()
        out["writer"] = stats.summary()
    return out


# -- phase 4: paused runs ------------------------------------------------------------------------
def live(type_names: tuple[str, ...]) -> dict[str, int]:
    counts = dict.fromkeys(type_names, 0)
    for obj in gc.get_objects():
        name = type(obj).__name__
        if name in counts:
            counts[name] += 1
    return counts


async def phase_paused(url: str, runs: int) -> dict[str, Any]:
    """Three rounds of `runs` paused runs: RSS in rounds 1 and 2, the Python heap (tracemalloc) in round 3."""
    import tracemalloc

    from keel.durable import _engine

    rt = make_runtime(url)
    agent = make_agent(1, approval=True, name="bench_paused")
    warm = await agent.run("warm-up", runtime=rt)  # launches the engine; this run pauses too
    check(warm, 1, status="waiting")
    kinds = ("_Run", "JournalSteps", "ShortTermMemory", "coroutine", "Task")

    def settle() -> None:
        agent.model._prefixes.clear()  # the scripted model's own token-count cache (a test double)
        _trim()

    settle()
    out: dict[str, Any] = {"runs": runs, "tasks_before": len(asyncio.all_tasks()), "live_before": live(kinds)}
    rounds = []
    for k in range(3):
        if k == 2:
            tracemalloc.start()
        rss0, heap0 = rss_kb(), tracemalloc.get_traced_memory()[0]
        results = await asyncio.gather(*(agent.run(f"pause {k}.{i}", runtime=rt) for i in range(runs)))
        rss1, tasks1 = rss_kb(), len(asyncio.all_tasks())
        for r in results:
            check(r, 1, status="waiting")
        del results, r
        settle()
        await asyncio.sleep(0.3)  # let the writer thread and DBOS's pollers settle
        settle()
        rss2, heap2 = rss_kb(), tracemalloc.get_traced_memory()[0]
        rounds.append(
            {
                "rss_kb_before": rss0,
                "rss_kb_after": rss1,
                "rss_kb_after_gc": rss2,
                "tasks_after": tasks1,
                "tasks_after_gc": len(asyncio.all_tasks()),
                **({"heap_bytes_held": heap2 - heap0} if k == 2 else {}),
            }
        )
        if k == 2:
            tracemalloc.stop()
    r1, r2, r3 = rounds
    out.update(
        rounds=rounds,
        rss_kb_before=r1["rss_kb_before"],
        rss_kb_after=r1["rss_kb_after"],
        rss_kb_after_gc=r1["rss_kb_after_gc"],
        rss_growth_bytes_per_run_first=max(0, r1["rss_kb_after_gc"] - r1["rss_kb_before"]) * 1024 / runs,
        rss_growth_bytes_per_run_second=max(0, r2["rss_kb_after_gc"] - r2["rss_kb_before"]) * 1024 / runs,
        heap_bytes_per_run=r3["heap_bytes_held"] / runs,
        tasks_after_gc=r3["tasks_after_gc"],
        live_after_gc=live(kinds),
        live_segments=len(_engine._LIVE),
    )
    pending = rt.approvals(status="pending")
    out["pending_approvals"] = len(pending)
    out["waiting_runs"] = len(rt.runs(status="waiting", limit=100_000))
    # the paused runs are real: approve one and resume it in this process
    approval = pending[-1]
    rt.approve(approval.id, by="bench", dispatch=False)
    out["resumed_status"] = (await rt.resume(agent, approval.run_id)).status
    return out


# -- child entry ---------------------------------------------------------------------------------
def child(args: argparse.Namespace) -> dict[str, Any]:
    phase, url = args.child, args.url
    if args.what_if == "no-cancel-check":
        import keel.durable._steps as steps_module

        steps_module.CANCEL_CHECK_SECONDS = float("inf")
    workdir = None
    if url == "sqlite":
        workdir = tempfile.mkdtemp(prefix="keel_durable_bench_")
        url = f"sqlite:///{workdir}/keel.db"
    loop = asyncio.new_event_loop()
    asyncio.set_event_loop(loop)
    try:
        if phase == "step":
            out = loop.run_until_complete(phase_step(url, args.turns))
        elif phase == "storage":
            out = loop.run_until_complete(phase_storage(url, [int(s) for s in args.sizes.split(",")]))
        elif phase == "concurrency":
            out = loop.run_until_complete(
                phase_concurrency(url, args.concurrency, args.steps, args.latency, args.profile)
            )
        elif phase == "paused":
            out = loop.run_until_complete(phase_paused(url, args.paused))
        else:
            raise SystemExit(f"unknown phase {phase!r}")
    finally:
        if url != "memory":
            close_engine()
        loop.close()
        if workdir:
            shutil.rmtree(workdir, ignore_errors=True)
    return out


# -- parent: databases, children, report ---------------------------------------------------------
class Database:
    """A fresh database for one child: a temp SQLite file (made by the child), or a new PostgreSQL one."""

    def __init__(self, kind: str) -> None:
        self.kind = kind
        self.name: str | None = None

    def __enter__(self) -> str:
        if self.kind in ("memory", "sqlite"):
            return self.kind
        import sqlalchemy as sa

        self.name = f"keel_bench_{uuid.uuid4().hex[:10]}"
        admin = sa.create_engine(PG_ADMIN, isolation_level="AUTOCOMMIT")
        with admin.connect() as conn:
            conn.execute(sa.text(f'CREATE DATABASE "{self.name}"'))
        admin.dispose()
        return PG_URL.format(name=self.name)

    def __exit__(self, *exc: Any) -> None:
        if self.name is None:
            return
        import sqlalchemy as sa

        admin = sa.create_engine(PG_ADMIN, isolation_level="AUTOCOMMIT")
        with admin.connect() as conn:
            conn.execute(sa.text(f'DROP DATABASE IF EXISTS "{self.name}" WITH (FORCE)'))
        admin.dispose()


def run_child(phase: str, db: str, args: argparse.Namespace, *, profile: bool = False) -> dict[str, Any]:
    with Database(db) as url:
        cmd = [sys.executable, __file__, "--child", phase, "--url", url]
        cmd += ["--turns", str(args.turns), "--sizes", args.sizes, "--concurrency", str(args.concurrency)]
        cmd += ["--steps", str(args.steps), "--latency", str(args.latency), "--paused", str(args.paused)]
        if profile:
            cmd.append("--profile")
        if args.what_if:
            cmd += ["--what-if", args.what_if]
        load = os.getloadavg()[0]
        p = subprocess.run(cmd, capture_output=True, text=True)
    if p.returncode != 0:
        tail = p.stderr.strip().splitlines()[-8:] or [f"exit code {p.returncode}"]
        return {"error": " | ".join(tail), "load1": load}
    out = json.loads(p.stdout.strip().splitlines()[-1])
    out["load1"] = load
    return out


def med(rows: list[dict[str, Any]], key: str) -> tuple[float, float, float]:
    vals = [r[key] for r in rows]
    return statistics.median(vals), min(vals), max(vals)


def threads_line(threads: dict[str, dict[str, float]]) -> str:
    """'MainThread 1.20 CPU + 0.80 run-queue wait; keel-journal ...', busiest first."""
    ordered = sorted(threads.items(), key=lambda kv: -kv[1]["cpu_s"])
    return "; ".join(f"{name} {t['cpu_s']:.3f} CPU + {t['runq_wait_s']:.3f} wait" for name, t in ordered[:4])


def verdict(ok: bool) -> str:
    return "met" if ok else "MISSED"


def fmt(m: tuple[float, float, float], spec: str = ".2f") -> str:
    return f"{m[0]:{spec}} ({m[1]:{spec}}..{m[2]:{spec}})"


def report(results: dict[str, Any], args: argparse.Namespace) -> None:
    print(f"keel durable runs -- {results['machine']}")
    print(f"uptime at start: {results['uptime']}")
    if args.what_if:
        print(f"WHAT-IF EXPERIMENT, not keel as shipped: {args.what_if}")
    print(f"{args.runs} runs per row, each in a fresh child process on a fresh database; median (min..max)")
    print()
    dbs = [d for d in args.db.split(",")]
    if "step" in results:
        print(f"1. Step overhead: one run of {args.turns} turns (turn = model step + tool step, both journaled)")
        hdr = f"   {'runtime':12} {'wall ms/turn':>22} {'CPU ms/turn':>22} {'main-thread CPU':>22} "
        hdr += f"{'main run-queue wait':>22}  target"
        print(hdr)
        mem = results["step"].get("memory")
        for db in ["memory", *dbs]:
            rows = results["step"].get(db)
            if not rows:
                continue
            ok = [r for r in rows if "error" not in r]
            if not ok:
                print(f"   {db:12} error: {rows[0]['error']}")
                continue
            keys = ("wall_ms_per_turn", "cpu_ms_per_turn", "main_cpu_ms_per_turn", "main_runq_wait_ms_per_turn")
            w, c, m, q = (med(ok, k) for k in keys)
            target = "" if db == "memory" else f"wall <= {TARGET_TURN_MS} ms: {verdict(w[0] <= TARGET_TURN_MS)}"
            print(
                f"   {db:12} {fmt(w, '.3f'):>22} {fmt(c, '.3f'):>22} {fmt(m, '.3f'):>22} {fmt(q, '.3f'):>22}  {target}"
            )
            if db != "memory" and mem:
                mw = statistics.median(r["wall_ms_per_turn"] for r in mem if "error" not in r)
                js = statistics.median(r["wall_us_per_journaled_step"] for r in ok)
                print(
                    f"   {'':12} durable - memory = {w[0] - mw:.3f} ms wall per turn; "
                    f"{js:.0f} µs wall per journaled step ({ok[0]['journaled_steps']} journaled)"
                )
                mid = sorted(ok, key=lambda r: r["wall_ms_per_turn"])[len(ok) // 2]
                print(f"   {'':12} threads, median run (s): {threads_line(mid['threads'])}")
        print()
    if "storage" in results:
        print("2. Storage: database growth for one run (median over runs)")
        for db in dbs:
            rows = results["storage"].get(db)
            if not rows:
                continue
            ok = [r for r in rows if "error" not in r]
            if not ok:
                print(f"   {db}: error: {rows[0]['error']}")
                continue
            print(f"   {db} ({ok[0]['note']})")
            print(
                f"   {'turns':>7} {'growth bytes':>14} {'bytes/turn':>11} {'own rows bytes':>15} "
                f"{'DBOS rows':>10}  target"
            )
            for i, size_row in enumerate(ok[0]["rows"]):
                turns = size_row["turns"]
                g = statistics.median(r["rows"][i]["growth_bytes"] for r in ok)
                rb = statistics.median(r["rows"][i]["row_bytes"] for r in ok)
                dbos = ok[0]["rows"][i]["dbos_rows"]
                target = f"<= 1 MB: {verdict(g <= TARGET_RUN_BYTES)}" if turns == 200 else ""
                print(f"   {turns:>7} {g:>14,.0f} {g / turns:>11,.0f} {rb:>15,.0f} {dbos:>10}  {target}")
        print()
    if "concurrency" in results:
        print(
            f"3. Concurrency: {args.concurrency} runs x {args.steps} model calls, {args.latency * 1000:.0f} ms "
            f"model latency, one asyncio.gather (ideal {args.steps * args.latency:.2f} s)"
        )
        print(
            f"   {'runtime':12} {'wall s':>22} {'CPU s':>22} {'main-thread CPU s':>22} "
            f"{'main run-queue wait s':>22}  target"
        )
        for db in ["memory", *dbs]:
            rows = results["concurrency"].get(db)
            if not rows:
                continue
            ok = [r for r in rows if "error" not in r]
            if not ok:
                print(f"   {db:12} error: {rows[0]['error']}")
                continue
            w, c, m, q = (med(ok, k) for k in ("wall_s", "cpu_s", "main_cpu_s", "main_runq_wait_s"))
            target = "" if db == "memory" else f"<= {TARGET_CONCURRENT_S} s: {verdict(w[0] <= TARGET_CONCURRENT_S)}"
            print(f"   {db:12} {fmt(w):>22} {fmt(c):>22} {fmt(m):>22} {fmt(q):>22}  {target}")
            if db != "memory":
                mid = sorted(ok, key=lambda r: r["wall_s"])[len(ok) // 2]
                print(f"   {'':12} threads, median run (s): {threads_line(mid['threads'])}")
        print()
    if "paused" in results:
        print(f"4. Paused runs: {args.paused} runs waiting for approval")
        for db in dbs:
            rows = results["paused"].get(db)
            if not rows:
                continue
            ok = [r for r in rows if "error" not in r]
            if not ok:
                print(f"   {db}: error: {rows[0]['error']}")
                continue
            b, a, g = (med(ok, k) for k in ("rss_kb_before", "rss_kb_after", "rss_kb_after_gc"))
            first, second = med(ok, "rss_growth_bytes_per_run_first"), med(ok, "rss_growth_bytes_per_run_second")
            heap = med(ok, "heap_bytes_per_run")
            r0 = ok[0]
            tasks_ok = all(r["tasks_after_gc"] == r["tasks_before"] for r in ok)
            objs_ok = all(r["live_after_gc"]["_Run"] == 0 and r["live_after_gc"]["JournalSteps"] == 0 for r in ok)
            pad = " " * len(db)
            print(
                f"   {db}: RSS {b[0] / 1024:.1f} MB before, {a[0] / 1024:.1f} MB with {args.paused} paused, "
                f"{g[0] / 1024:.1f} MB after gc: {first[0]:,.0f} B/run (first round; allocator high-water), "
                f"{second[0]:,.0f} B/run (second round)"
            )
            print(
                f"   {pad}  Python heap still allocated after a third round and gc (tracemalloc): "
                f"{heap[0]:,.0f} B/run ({heap[1]:,.0f}..{heap[2]:,.0f})"
            )
            print(
                f"   {pad}  tasks: {r0['tasks_before']} before, {r0['tasks_after_gc']} after; live after gc: "
                f"{r0['live_after_gc']} (before: {r0['live_before']}); in-process segments registered: "
                f"{r0['live_segments']}"
            )
            print(
                f"   {pad}  {r0['pending_approvals']} approvals pending, {r0['waiting_runs']} runs waiting in the "
                f"database; one approved and resumed -> {r0['resumed_status']}; "
                f"no task or run object held: {verdict(tasks_ok and objs_ok)}"
            )
        print()
    for db, prof in results.get("profile", {}).items():
        print(f"Profile of the concurrency phase on {db} (main thread, cProfile; one extra run)")
        if "error" in prof:
            print(f"   error: {prof['error']}")
            continue
        print(f"   wall {prof['wall_s']:.2f} s under the profiler; threads (s): {threads_line(prof['threads'])}")
        print(f"   journal writer: {prof.get('writer')}")
        print(prof["profile_tottime"])
        print(prof["profile_cumulative"])
    la0, la1 = results["load_start"], results["load_end"]
    print(
        "load average (1, 5, 15 min): "
        + f"{la0[0]:.2f} {la0[1]:.2f} {la0[2]:.2f} at start, {la1[0]:.2f} {la1[1]:.2f} {la1[2]:.2f} at end"
    )


def machine() -> str:
    try:
        from overhead import machine as overhead_machine  # the other benchmark's machine line

        return overhead_machine()
    except Exception:
        import platform

        return f"Python {platform.python_version()}, {os.cpu_count()} CPUs"


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--db", default="sqlite", help="sqlite, postgresql, or both comma-separated (default sqlite)")
    ap.add_argument("--runs", type=int, default=3, help="repetitions per row, each a fresh process (default 3)")
    ap.add_argument("--phases", default=",".join(PHASES), help=f"comma list of {', '.join(PHASES)}")
    ap.add_argument("--turns", type=int, default=200, help="turns of the step phase (default 200)")
    ap.add_argument("--sizes", default="50,100,200", help="turns per run of the storage phase (default 50,100,200)")
    ap.add_argument("--concurrency", type=int, default=1000, help="runs of the concurrency phase (default 1000)")
    ap.add_argument("--steps", type=int, default=10, help="model calls per concurrent run (default 10)")
    ap.add_argument("--latency", type=float, default=0.05, help="model latency in seconds (default 0.05)")
    ap.add_argument("--paused", type=int, default=200, help="runs of the paused phase (default 200)")
    ap.add_argument("--profile", action="store_true", help="add a cProfile'd concurrency run per database")
    ap.add_argument(
        "--what-if",
        choices=["no-cancel-check"],
        default=None,
        help="an experiment, not keel as shipped: no-cancel-check patches keel.durable._steps in the child "
        "so a step never reads the run's status (shows what the per-step cancel poll costs)",
    )
    ap.add_argument("--json", action="store_true", help="print the results as JSON")
    ap.add_argument("--child", default=None, help=argparse.SUPPRESS)
    ap.add_argument("--url", default=None, help=argparse.SUPPRESS)
    args = ap.parse_args()

    if args.child:
        print(json.dumps(child(args), default=str))
        return

    dbs = args.db.split(",")
    for db in dbs:
        if db not in ("sqlite", "postgresql"):
            ap.error(f"--db: unknown database {db!r}; use sqlite or postgresql")
    phases = args.phases.split(",")
    for ph in phases:
        if ph not in PHASES:
            ap.error(f"--phases: unknown phase {ph!r}; use {', '.join(PHASES)}")
    uptime = subprocess.run(["uptime"], capture_output=True, text=True).stdout.strip()
    results: dict[str, Any] = {"machine": machine(), "uptime": uptime, "load_start": os.getloadavg()}
    for phase in phases:
        with_memory = phase in ("step", "concurrency")
        results[phase] = {}
        for db in (["memory"] if with_memory else []) + dbs:
            rows = []
            for _ in range(args.runs):
                rows.append(run_child(phase, db, args))
                print(
                    f"  {phase} {db}: {json.dumps({k: v for k, v in rows[-1].items() if 'profile' not in k})[:300]}",
                    file=sys.stderr,
                )
            results[phase][db] = rows
    if args.profile:
        results["profile"] = {db: run_child("concurrency", db, args, profile=True) for db in dbs}
    results["load_end"] = os.getloadavg()
    if args.json:
        print(json.dumps(results, default=str))
    else:
        report(results, args)


if __name__ == "__main__":
    main()
