"""keel's framework overhead per agent step, on the peers' workload, and the time of ``import keel``.

    .venv/bin/python bench/overhead.py                        # N = 10 and 200, 7 timed runs each
    .venv/bin/python bench/overhead.py --steps 10,200,1000 --repeat 15 --json

Workload (bench/_workload.py, the contract of shared/bench-peers): a ScriptedModel that answers a
tool call to ``async def add(a: int, b: int) -> int`` for N-1 turns, then "done"; one step is one
model call. Rows: the in-memory runtime (``Runtime.in_memory()``) and the durable one
(``Runtime("sqlite:///<tmp>/keel.db")``), each with the model answering ``ToolCall``/``str`` (ScriptedModel
then builds the message and estimates the request's usage from the prompt) or a full ``ModelResponse``
carrying its usage, as a real provider does. The agent keeps its defaults (the ``LoopGuard`` policy).

Method, the same as the peers' harness: each row runs in a fresh child process, which builds the agent
and runtime, does ``--warmup`` untimed runs, then ``--repeat`` timed runs of N steps, each after
``gc.collect()`` and ``malloc_trim(0)``. A run is timed whole with ``time.process_time()`` (CPU) and
``time.perf_counter()`` (wall) and divided by N; the figure is the median over runs. Nothing is
subtracted: the scripted model and the tool are inside the figure (a bare Python loop doing the same
costs about 7 µs a step). ``import keel``: wall time of ``python -c "import keel"`` minus
``python -c pass``, medians of ``--import-repeat`` fresh interpreters.
"""

from __future__ import annotations

import argparse
import asyncio
import gc
import hashlib
import inspect
import json
import os
import platform
import re
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

BENCH_DIR = Path(__file__).resolve().parent
sys.path.insert(0, str(BENCH_DIR))

import _workload  # noqa: E402

DEFAULT_VARIANTS = "async,async_response,sqlite,sqlite_response"
RUNTIME_LABELS = {"async": "memory", "sync": "memory, run_sync", "sqlite": "sqlite (durable)"}
TARGET_CPU_US = 100.0  # in-memory: CPU per step, flat in N
TARGET_DURABLE_WALL_US = 1000.0  # SQLite: wall per step
TARGET_IMPORT_S = 0.3


def _trim() -> None:
    gc.collect()
    try:
        import ctypes

        ctypes.CDLL("libc.so.6").malloc_trim(0)
    except (OSError, AttributeError):
        pass


def child(variant: str, steps: int, repeat: int, warmup: int) -> dict:
    """One row, in this (fresh) process: time `repeat` complete runs of `steps` steps."""
    workdir = tempfile.mkdtemp(prefix="keel_overhead_") if variant.startswith("sqlite") else None
    loop = asyncio.new_event_loop()
    asyncio.set_event_loop(loop)
    try:
        run_one, close = _workload.setup(variant, steps, 0.0, workdir, None)
        is_async = inspect.iscoroutinefunction(run_one)
        walls, cpus = [], []
        for k in range(warmup + repeat):
            tools0 = _workload.COUNTERS["tool"]
            _trim()
            c0, t0 = time.process_time(), time.perf_counter()
            out = loop.run_until_complete(run_one(k)) if is_async else run_one(k)
            t1, c1 = time.perf_counter(), time.process_time()
            tools = _workload.COUNTERS["tool"] - tools0
            if tools != steps - 1 or out != "done":
                raise RuntimeError(f"bad run: {tools} tool calls (want {steps - 1}), output {out!r}")
            if k >= warmup:
                walls.append((t1 - t0) / steps * 1e6)
                cpus.append((c1 - c0) / steps * 1e6)
        if close is not None:
            close()
        db_bytes = sum(f.stat().st_size for f in Path(workdir).iterdir()) if workdir else None
    finally:
        loop.close()
        if workdir:
            shutil.rmtree(workdir, ignore_errors=True)
    return {
        "variant": variant,
        "steps": steps,
        "runs": repeat,
        "cpu_us_per_step": round(statistics.median(cpus), 1),
        "wall_us_per_step": round(statistics.median(walls), 1),
        "wall_us_per_step_min": round(min(walls), 1),
        "wall_us_per_step_max": round(max(walls), 1),
        **({"db_bytes_after": db_bytes} if db_bytes is not None else {}),
    }


def run_row(variant: str, steps: int, args: argparse.Namespace) -> dict:
    cmd = [
        sys.executable,
        __file__,
        "--child",
        variant,
        "--steps",
        str(steps),
        "--repeat",
        str(args.repeat),
        "--warmup",
        str(args.warmup),
    ]
    p = subprocess.run(cmd, capture_output=True, text=True)
    if p.returncode != 0:
        err = (p.stderr.strip().splitlines() or [f"exit code {p.returncode}"])[-1]
        return {"variant": variant, "steps": steps, "error": err}
    return json.loads(p.stdout.strip().splitlines()[-1])


def import_time(repeat: int) -> dict:
    """`python -c "import keel"` minus `python -c pass`, medians; plus -X importtime's biggest packages."""

    def wall(stmt: str) -> float:
        t0 = time.perf_counter()
        subprocess.run([sys.executable, "-c", stmt], check=True)
        return time.perf_counter() - t0

    wall("import keel")  # warm the .pyc files and the page cache
    base, full = [], []
    for _ in range(repeat):
        base.append(wall("pass"))
        full.append(wall("import keel"))
    p = subprocess.run(
        [sys.executable, "-X", "importtime", "-c", "import keel"], capture_output=True, text=True, check=True
    )
    self_us: dict[str, int] = {}
    for line in p.stderr.splitlines():
        m = re.match(r"import time:\s+(\d+) \|\s+\d+ \|\s*(\S+)", line)
        if m:
            top = m[2].split(".")[0]
            self_us[top] = self_us.get(top, 0) + int(m[1])
    biggest = sorted(self_us.items(), key=lambda kv: -kv[1])[:6]
    return {
        "python_startup_s": round(statistics.median(base), 3),
        "import_keel_s": round(statistics.median(full), 3),
        "net_s": round(statistics.median(full) - statistics.median(base), 3),
        "repeats": repeat,
        "self_ms_by_package": {k: round(v / 1000, 1) for k, v in biggest},
    }


def source_fingerprint() -> str:
    """A short hash of the keel package's .py files, naming the code state measured."""
    import keel

    root = Path(keel.__file__).resolve().parent
    digest = hashlib.sha1()
    for path in sorted(root.rglob("*.py")):
        digest.update(path.relative_to(root).as_posix().encode())
        digest.update(path.read_bytes())
    return digest.hexdigest()[:12]


def machine() -> str:
    cpu = platform.processor() or platform.machine()
    try:
        with open("/proc/cpuinfo") as f:
            names = [ln.split(":", 1)[1].strip() for ln in f if ln.startswith("model name")]
        cpu = names[0] if names else cpu
    except OSError:
        pass
    from importlib.metadata import version

    return (
        f"keel {version('keel')} (sources {source_fingerprint()}), Python {platform.python_version()}, "
        f"{os.cpu_count()} CPUs ({cpu}), {platform.system()} {platform.release()}"
    )


def verdict(ok: bool) -> str:
    return "met" if ok else "MISSED"


def report(rows: list[dict], imp: dict | None, args: argparse.Namespace) -> None:
    print(f"keel framework overhead per agent step -- {machine()}")
    print(
        f"{args.repeat} timed runs per row after {args.warmup} warm-up, each row in a fresh process; "
        "median per step = run time / N, nothing subtracted"
    )
    la = args.loadavg
    print(
        f"load average (1, 5, 15 min): {la[0]:.2f} {la[1]:.2f} {la[2]:.2f} at start, "
        f"{la[3]:.2f} {la[4]:.2f} {la[5]:.2f} at end"
    )
    print()
    header = f"{'runtime':18} {'model answers':14} {'N':>5} {'CPU µs/step':>12} {'wall µs/step':>13} "
    header += f"{'wall min..max':>15}  target"
    print(header)
    print("-" * len(header))
    for r in rows:
        runtime, full = _workload.parse_variant(r["variant"])
        answers = "ModelResponse" if full else "ToolCall/str"
        label = RUNTIME_LABELS[runtime]
        if "error" in r:
            print(f"{label:18} {answers:14} {r['steps']:>5}  error: {r['error']}")
            continue
        if runtime == "sqlite":
            target = f"wall ≤{TARGET_DURABLE_WALL_US:.0f}: {verdict(r['wall_us_per_step'] <= TARGET_DURABLE_WALL_US)}"
        else:
            target = f"CPU ≤{TARGET_CPU_US:.0f}: {verdict(r['cpu_us_per_step'] <= TARGET_CPU_US)}"
        spread = f"{r['wall_us_per_step_min']:.0f}..{r['wall_us_per_step_max']:.0f}"
        print(
            f"{label:18} {answers:14} {r['steps']:>5} {r['cpu_us_per_step']:>12.1f} "
            f"{r['wall_us_per_step']:>13.1f} {spread:>15}  {target}"
        )
    ok_rows = [r for r in rows if "error" not in r]
    for variant in dict.fromkeys(r["variant"] for r in ok_rows):
        per_n = sorted((r["steps"], r["cpu_us_per_step"]) for r in ok_rows if r["variant"] == variant)
        if len(per_n) > 1 and not variant.startswith("sqlite"):
            (n0, c0), (n1, c1) = per_n[0], per_n[-1]
            print(f"  flat in N? {variant}: CPU/step at N={n1} is {c1 / c0:.2f}x N={n0}")
    if imp:
        print()
        print(
            f'import keel: {imp["net_s"]:.3f} s  (python -c "import keel" {imp["import_keel_s"]:.3f} s minus '
            f"python -c pass {imp['python_startup_s']:.3f} s, medians of {imp['repeats']}); "
            f"target <{TARGET_IMPORT_S} s: {verdict(imp['net_s'] < TARGET_IMPORT_S)}"
        )
        parts = ", ".join(f"{k} {v:.0f}" for k, v in imp["self_ms_by_package"].items())
        print(f"  -X importtime self ms by top-level package: {parts}")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--steps", default="10,200", help="comma list of N, model calls per run (default 10,200)")
    ap.add_argument("--repeat", type=int, default=7, help="timed runs per row (default 7)")
    ap.add_argument("--warmup", type=int, default=1, help="untimed runs first (default 1)")
    ap.add_argument(
        "--variants",
        default=DEFAULT_VARIANTS,
        help=f"comma list of bench/_workload.py variants (default {DEFAULT_VARIANTS})",
    )
    ap.add_argument("--import-repeat", type=int, default=5, help="fresh interpreters per import timing; 0 skips")
    ap.add_argument("--json", action="store_true", help="print the results as one JSON object instead")
    ap.add_argument("--child", default=None, help=argparse.SUPPRESS)  # internal: one row, in this process
    args = ap.parse_args()
    if args.repeat < 1 or args.warmup < 0:
        ap.error("--repeat must be 1 or more and --warmup 0 or more")
    try:
        steps = [int(s) for s in args.steps.split(",")]
    except ValueError:
        ap.error(f"--steps must be a comma list of integers, got {args.steps!r}")
    if any(n < 1 for n in steps):
        ap.error("--steps: each N must be 1 or more")

    if args.child:
        print(json.dumps(child(args.child, steps[0], args.repeat, args.warmup)))
        return

    variants = args.variants.split(",")
    for v in variants:
        _workload.parse_variant(v)
    load0 = os.getloadavg()
    rows = [run_row(v, n, args) for v in variants for n in steps]
    imp = import_time(args.import_repeat) if args.import_repeat > 0 else None
    args.loadavg = [round(x, 2) for x in (*load0, *os.getloadavg())]
    if args.json:
        out = {"machine": machine(), "repeat": args.repeat, "warmup": args.warmup}
        out.update(loadavg_1_5_15_start_end=args.loadavg, rows=rows, **{"import": imp})
        print(json.dumps(out))
    else:
        report(rows, imp, args)


if __name__ == "__main__":
    main()
