"""The per-step cost of keel's guardrail policies, against the same agent with none.

    .venv/bin/python bench/guardrails.py                 # N = 50 steps, 5 timed runs per row
    .venv/bin/python bench/guardrails.py --steps 200 --repeat 3

Workload: the peers' (bench/_workload.py): a scripted model calling ``add`` N-1 times, then "done".
Each row is one policy configuration; the figure is CPU microseconds per step (median of the timed
runs, after one warm-up run), and the extra over the row without policies. Rows marked ``sqlite``
run on the durable runtime (their policies journal a step per request and share counters in the
same database); the others run in memory. The load average is printed: this machine is shared.
"""

from __future__ import annotations

import argparse
import asyncio
import gc
import os
import statistics
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

import _workload  # noqa: E402

from keel import Agent, Runtime, tool  # noqa: E402
from keel.models import ScriptedModel  # noqa: E402
from keel.policies import Policy  # noqa: E402
from keel.policies.budget import Budget  # noqa: E402
from keel.policies.filters import ContentFilter  # noqa: E402
from keel.policies.loops import LoopGuard  # noqa: E402
from keel.policies.progress import NoProgress  # noqa: E402
from keel.policies.ratelimit import RateLimit  # noqa: E402

PRICES = {"scripted": (1.0, 2.0)}


@tool
async def add(a: int, b: int) -> int:
    """Add two integers."""
    return a + b


def rows(db: str) -> list[tuple[str, bool, Callable[[], list[Policy]]]]:
    return [
        ("no policies", False, lambda: []),
        ("LoopGuard (the default)", False, lambda: [LoopGuard()]),
        ("NoProgress", False, lambda: [NoProgress(max_repeats=1000)]),
        ("ContentFilter", False, lambda: [ContentFilter()]),
        ("Budget(max_usd)", False, lambda: [Budget(max_usd=1e9, prices=PRICES)]),
        ("no policies, sqlite", True, lambda: []),
        ("Budget(max_usd), sqlite", True, lambda: [Budget(max_usd=1e9, prices=PRICES)]),
        (
            "Budget(agent_daily_usd), sqlite",
            True,
            lambda: [Budget(agent_daily_usd=1e9, prices=PRICES, database_url=db)],
        ),
        (
            "RateLimit(rpm, tpm), sqlite",
            True,
            lambda: [RateLimit(requests_per_minute=10**9, tokens_per_minute=10**12, database_url=db)],
        ),
    ]


async def measure(steps: int, repeat: int, durable: bool, policies: Callable[[], list[Policy]], db: str) -> float:
    runtime = Runtime(db) if durable else Runtime.in_memory()
    cpus = []
    for k in range(repeat + 1):
        agent = Agent(
            "bench",
            ScriptedModel(_workload.make_script(steps, False)),
            tools=[add],
            policies=policies(),
            max_steps=steps + 1,
        )
        gc.collect()
        c0 = time.process_time()
        result = await agent.run("go", runtime=runtime)
        c1 = time.process_time()
        if result.status != "done" or result.steps != steps:
            raise RuntimeError(f"bad run: {result.status} {result.error}")
        if k:
            cpus.append((c1 - c0) / steps * 1e6)
    return statistics.median(cpus)


def main() -> None:
    """Print the table."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--steps", type=int, default=50)
    parser.add_argument("--repeat", type=int, default=5)
    args = parser.parse_args()
    workdir = tempfile.mkdtemp(prefix="keel_guardrails_")
    db = f"sqlite:///{workdir}/keel.db"
    print(f"N = {args.steps} steps, {args.repeat} timed runs per row; load average {os.getloadavg()[0]:.2f}")
    print(f"{'policies':<36} {'CPU us/step':>12} {'extra':>8}")
    base: dict[bool, float] = {}
    for label, durable, policies in rows(db):
        us = asyncio.run(measure(args.steps, args.repeat, durable, policies, db))
        base.setdefault(durable, us)
        print(f"{label:<36} {us:>12.0f} {us - base[durable]:>+8.0f}")
    print(f"load average after: {os.getloadavg()[0]:.2f}")


if __name__ == "__main__":
    main()
