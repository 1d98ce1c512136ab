"""Load on the HTTP service: concurrent event-stream clients plus a steady rate of run submissions.

    .venv/bin/python bench/service_load.py                       # 200 SSE clients, 50 runs/s, 30 s
    .venv/bin/python bench/service_load.py --clients 200 --rate 50 --duration 30 --db postgresql://...

Starts ``keel serve`` (API + in-process worker) on a free loopback port with the scripted agent of
``bench/_service_agent.py`` (one tool call that takes --tool-seconds, as a real tool would, then the
answer), on a fresh SQLite database unless --db is given. Then, for --duration seconds:

- submissions: ``POST /v1/runs`` at --rate a second, open loop (each sent at its scheduled time,
  whether or not earlier ones have answered);
- --clients event-stream clients: each opens ``GET /v1/runs/{id}/events`` on one of the 50 newest
  runs, reads it to its ``end``, and starts over on another;
- reads: ``GET /v1/runs/{id}`` for every 5th submission, and ``GET /v1/runs?limit=20`` 5 times a second.

Latency of an API call is the time to its response's headers (for an event stream: until the stream
opens). Printed: per kind and overall, count, errors, p50, p95, p99, max; runs finished; the load
average before and after. The clients run in this process on the same machine, so they compete
with the service for the CPU: the figures are an upper bound on the service's own latency.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import os
import random
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import httpx

ROOT = Path(__file__).resolve().parents[1]
RECENT = 50
"""Each event-stream client follows one of the newest RECENT runs to its end, then picks another."""
AGENT = Path(__file__).with_name("_service_agent.py")


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def start(db: str, port: int, log: Path, tool_seconds: float, workers: int) -> subprocess.Popen[bytes]:
    command = [
        sys.executable, "-m", "keel.cli", "serve", f"{AGENT}:calc", "--db", db, "--port", str(port),
        "--rate", "1000000", "--burst", "1000000", "--anomaly-window", "0", *(["--no-worker"] if workers else []),
    ]  # fmt: skip
    with log.open("wb") as sink:
        env = {**os.environ, "BENCH_TOOL_SECONDS": str(tool_seconds)}
        process = subprocess.Popen(command, cwd=ROOT, stdout=sink, stderr=subprocess.STDOUT, env=env)
    url = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise SystemExit(f"keel serve exited:\n{log.read_text()[-2000:]}")
        try:
            if httpx.get(f"{url}/readyz", timeout=2).status_code == 200:
                return process
        except httpx.TransportError:
            pass
        with contextlib.suppress(subprocess.TimeoutExpired):
            process.wait(0.1)
    process.kill()
    raise SystemExit("keel serve did not become ready")


def cpu_and_wait(pid: int) -> tuple[float, float]:
    """The process's CPU seconds (all threads) and the seconds its threads waited for a CPU (run queue)."""
    ticks = os.sysconf("SC_CLK_TCK")
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    cpu = (int(fields[11]) + int(fields[12])) / ticks
    wait = 0.0
    for task in Path(f"/proc/{pid}/task").iterdir():
        with contextlib.suppress(OSError):
            wait += int((task / "schedstat").read_text().split()[1]) / 1e9
    return cpu, wait


def percentile(values: list[float], q: float) -> float:
    if not values:
        return float("nan")
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(round(q / 100 * (len(ordered) - 1))))]


class Load:
    def __init__(self, client: httpx.AsyncClient, args: argparse.Namespace) -> None:
        self.client, self.args = client, args
        self.latency: dict[str, list[float]] = {"submit": [], "get": [], "list": [], "events": []}
        self.errors: dict[str, int] = {kind: 0 for kind in self.latency}
        self.why: dict[str, int] = {}
        self.runs: list[str] = []
        self.streams_done = 0
        self.first_run = asyncio.Event()

    async def timed(self, kind: str, method: str, path: str, **kwargs: Any) -> httpx.Response | None:
        started = time.perf_counter()
        try:
            response = await self.client.request(method, path, **kwargs)
        except httpx.HTTPError as exc:
            self.errors[kind] += 1
            self.why[type(exc).__name__] = self.why.get(type(exc).__name__, 0) + 1
            return None
        self.latency[kind].append(time.perf_counter() - started)
        if response.status_code >= 400:
            self.errors[kind] += 1
            self.why[f"HTTP {response.status_code}"] = self.why.get(f"HTTP {response.status_code}", 0) + 1
        return response

    async def submit(self, n: int) -> None:
        response = await self.timed("submit", "POST", "/v1/runs", json={"agent": "calc", "task": f"add 2 and 3 ({n})"})
        if response is not None and response.status_code == 202:
            run_id = response.json()["run_id"]
            self.runs.append(run_id)
            self.first_run.set()
            if n % 5 == 0:
                await self.timed("get", "GET", f"/v1/runs/{run_id}")

    async def submitter(self, until: float) -> None:
        period, n, tasks = 1 / self.args.rate, 0, []
        start = time.monotonic()
        while (due := start + n * period) < until:
            await asyncio.sleep(max(0.0, due - time.monotonic()))
            tasks.append(asyncio.create_task(self.submit(n)))
            n += 1
        await asyncio.gather(*tasks)

    async def lister(self, until: float) -> None:
        while time.monotonic() < until:
            await self.timed("list", "GET", "/v1/runs", params={"limit": 20})
            await asyncio.sleep(0.2)

    async def stream_client(self, until: float) -> None:
        await self.first_run.wait()
        rng = random.Random(len(self.latency["events"]))
        while time.monotonic() < until:
            run_id = rng.choice(self.runs[-RECENT:])  # a run still moving, spread over clients
            started = time.perf_counter()
            try:
                async with self.client.stream("GET", f"/v1/runs/{run_id}/events") as response:
                    self.latency["events"].append(time.perf_counter() - started)
                    if response.status_code != 200:
                        self.errors["events"] += 1
                        continue
                    async for line in response.aiter_lines():
                        if line == "event: end":
                            self.streams_done += 1
                            break
            except httpx.HTTPError:
                self.errors["events"] += 1


async def drive(url: str, key: str, args: argparse.Namespace) -> dict[str, Any]:
    limits = httpx.Limits(max_connections=args.clients + 200, max_keepalive_connections=args.clients + 200)
    headers = {"Authorization": f"Bearer {key}"}
    async with httpx.AsyncClient(base_url=url, headers=headers, limits=limits, timeout=60) as client:
        load = Load(client, args)
        until = time.monotonic() + args.duration
        await asyncio.gather(
            load.submitter(until), load.lister(until), *(load.stream_client(until) for _ in range(args.clients))
        )
        finished = 0
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:  # let the queue drain, then count
            listed = (await client.get("/v1/runs", params={"limit": 500, "status": "done"})).json()["runs"]
            finished = len(listed)
            queued = (await client.get("/v1/runs", params={"limit": 500, "status": "queued"})).json()["runs"]
            if not queued:
                break
            await asyncio.sleep(0.5)
    everything = [v for values in load.latency.values() for v in values]
    rows = {
        kind: {
            "count": len(values),
            "errors": load.errors.get(kind, sum(load.errors.values())),
            "p50_ms": percentile(values, 50) * 1000,
            "p95_ms": percentile(values, 95) * 1000,
            "p99_ms": percentile(values, 99) * 1000,
            "max_ms": max(values, default=float("nan")) * 1000,
        }
        for kind, values in [*load.latency.items(), ("all", everything)]
    }
    return {
        "latency": rows,
        "errors": load.why,
        "submitted": len(load.runs),
        "done_sampled": finished,
        "streams_read": load.streams_done,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--clients", type=int, default=200)
    parser.add_argument("--rate", type=float, default=50.0)
    parser.add_argument("--duration", type=float, default=30.0)
    parser.add_argument("--db", default=None, help="database URL (default: a fresh SQLite file)")
    parser.add_argument(
        "--workers", type=int, default=0, help="run the runs in this many `keel worker` processes (API-only service)"
    )
    parser.add_argument("--tool-seconds", type=float, default=3.0, help="how long the agent's tool call takes")
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        db = args.db or f"sqlite:///{Path(tmp) / 'keel.db'}"
        port = free_port()
        process = start(db, port, Path(tmp) / "serve.log", args.tool_seconds, args.workers)
        env = {**os.environ, "BENCH_TOOL_SECONDS": str(args.tool_seconds)}
        workers = [
            subprocess.Popen(
                [sys.executable, "-m", "keel.cli", "worker", f"{AGENT}:calc", "--db", db, "--id", f"bench-{i}"],
                cwd=ROOT,
                env=env,
                stdout=subprocess.DEVNULL,
                stderr=subprocess.DEVNULL,
            )  # fmt: skip
            for i in range(args.workers)
        ]
        try:
            made = subprocess.run(
                [sys.executable, "-m", "keel.cli", "keys", "create", "--tenant", "bench", "--db", db, "--json"],
                cwd=ROOT, capture_output=True, text=True, check=True,
            )  # fmt: skip
            key = json.loads(made.stdout)["key"]
            before = os.getloadavg()
            cpu0, wait0 = cpu_and_wait(process.pid)
            wcpu0 = sum(cpu_and_wait(w.pid)[0] for w in workers)
            started = time.monotonic()
            client_cpu = time.process_time()
            result = asyncio.run(drive(f"http://127.0.0.1:{port}", key, args))
            client_cpu = time.process_time() - client_cpu
            elapsed = time.monotonic() - started
            cpu1, wait1 = cpu_and_wait(process.pid)
            wcpu = sum(cpu_and_wait(w.pid)[0] for w in workers) - wcpu0
            after = os.getloadavg()
        finally:
            for child in [process, *workers]:
                child.terminate()
            for child in [process, *workers]:
                child.wait(30)
    result.update(
        clients=args.clients, rate=args.rate, duration=args.duration, db=db.split("://")[0],
        tool_seconds=args.tool_seconds, server_cpu_s=cpu1 - cpu0, server_runqueue_wait_s=wait1 - wait0,
        elapsed_s=elapsed, client_cpu_s=client_cpu, workers=args.workers, workers_cpu_s=wcpu,
        loadavg_before=before, loadavg_after=after, cpus=os.cpu_count(),
    )  # fmt: skip
    if args.json:
        print(json.dumps(result, indent=2))
        return
    where = f"{args.workers} worker processes" if args.workers else "the service's own worker"
    print(
        f"{args.clients} event-stream clients, {args.rate:g} runs/s for {args.duration:g} s on {result['db']}, {where}"
    )
    print(f"{'kind':8} {'count':>7} {'errors':>6} {'p50 ms':>8} {'p95 ms':>8} {'p99 ms':>8} {'max ms':>8}")
    for kind, row in result["latency"].items():
        print(
            f"{kind:8} {row['count']:7d} {row['errors']:6d} {row['p50_ms']:8.1f} {row['p95_ms']:8.1f} "
            f"{row['p99_ms']:8.1f} {row['max_ms']:8.1f}"
        )
    if result["errors"]:
        print(f"errors: {result['errors']}")
    print(f"runs submitted {result['submitted']}, event streams read to the end {result['streams_read']}")
    print(
        f"service process: {result['server_cpu_s']:.1f} CPU s over {elapsed:.1f} s "
        f"({result['server_cpu_s'] / max(1, result['submitted']) * 1000:.1f} ms CPU per run submitted, all work "
        f"included); its threads waited {result['server_runqueue_wait_s']:.1f} s for a CPU (other processes' load)"
    )
    if args.workers:
        print(f"{args.workers} worker processes: {wcpu:.1f} CPU s")
    print(f"the load's clients (this process): {client_cpu:.1f} CPU s")
    print(f"load average before {before[0]:.2f} after {after[0]:.2f} ({os.cpu_count()} CPUs)")


if __name__ == "__main__":
    main()
