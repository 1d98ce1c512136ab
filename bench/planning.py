"""What explicit planning costs per run, beside the implicit loop, on the peers' workload.

    .venv/bin/python bench/planning.py                       # N = 10 and 50, 7 timed runs each
    .venv/bin/python bench/planning.py --steps 10,200 --repeat 15 --json

Workload (bench/_workload.py): a ScriptedModel answers a tool call to ``async def add(a, b)`` for N-1
turns, then "done", on ``Runtime.in_memory()``. Rows:

* ``implicit``: the agent as it is by default (``planning="implicit"``): N model requests.
* ``explicit``: the same agent with ``planning="explicit"``: first a planning request answered with a
  two-step plan (``submit_plan``), then the same N turns; the last ``add`` call goes with
  ``update_plan(step=1, status="done")``. N + 1 model requests.

Per run it prints the model requests, the prompt tokens the scripted model estimates for the whole run
(what a real provider would bill: the planning request, then the plan shown at the end of every action
request), and the CPU time (``time.process_time()``), median over ``--repeat`` runs, each after
``gc.collect()``; rows alternate run by run, in one process, so both see the same load.
"""

from __future__ import annotations

import argparse
import asyncio
import gc
import json
import os
import statistics
import sys
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))

import _workload  # noqa: E402

from keel import Agent, RunResult, Runtime  # noqa: E402
from keel.messages import Message, ToolCall  # noqa: E402
from keel.models import ScriptedModel  # noqa: E402
from keel.planning import PLAN_TOOL, PROGRESS_TOOL  # noqa: E402

PLAN = {
    "goal": "add the numbers, then say done",
    "steps": [
        {"action": "add each pair of numbers", "tool": "add"},
        {"action": "say done", "depends_on": [1]},
    ],
    "blockers": [],
    "success_criteria": ["every pair was added"],
}


def explicit_script(steps: int) -> Any:
    """The workload's answers, after a plan; the turn is counted here (the history also holds the plan)."""
    turn = 0

    def answer(messages: Sequence[Message], tools: Sequence[dict[str, Any]]) -> Any:
        nonlocal turn
        if len(tools) == 1 and tools[0]["name"] == PLAN_TOOL:
            turn = 0
            return ToolCall(PLAN_TOOL, PLAN)
        turn += 1
        if turn < steps - 1:
            return ToolCall("add", {"a": turn, "b": 1}, f"call_{turn}")
        if turn == steps - 1:
            return [ToolCall(PROGRESS_TOOL, {"step": 1, "status": "done"}), ToolCall("add", {"a": turn, "b": 1})]
        return "done"

    return answer


def agent_for(planning: str, steps: int) -> Agent:
    """The workload's agent, or the same with explicit planning and the scripted plan."""
    implicit = _workload.make_agent(steps, counters={"tool": 0, "model": 0})
    if planning == "implicit":
        return implicit
    model = ScriptedModel(explicit_script(steps))
    tools, instructions = implicit.tools, implicit.instructions
    return Agent("bench", model, instructions=instructions, tools=tools, max_steps=steps + 5, planning="explicit")


async def timed(agent: Agent, runtime: Runtime) -> tuple[float, RunResult]:
    gc.collect()
    started = time.process_time()
    result = await agent.run("add the numbers", runtime=runtime)
    return time.process_time() - started, result


async def measure(steps: int, repeat: int) -> dict[str, dict[str, Any]]:
    runtime = Runtime.in_memory()
    agents = {mode: agent_for(mode, steps) for mode in ("implicit", "explicit")}
    cpu: dict[str, list[float]] = {mode: [] for mode in agents}
    last: dict[str, RunResult] = {}
    for agent in agents.values():  # warm-up
        await timed(agent, runtime)
    for _ in range(repeat):
        for mode, agent in agents.items():
            seconds, result = await timed(agent, runtime)
            if result.status != "done":
                raise SystemExit(f"{mode} run at N={steps} ended {result.status}: {result.error}")
            cpu[mode].append(seconds)
            last[mode] = result
    return {
        mode: {
            "requests": last[mode].usage.requests,
            "input_tokens": last[mode].usage.input_tokens,
            "cpu_ms_per_run": round(statistics.median(cpu[mode]) * 1000, 3),
            "cpu_us_per_request": round(statistics.median(cpu[mode]) * 1e6 / last[mode].usage.requests, 1),
        }
        for mode in agents
    }


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--steps", default="10,50", help="comma list of N, model calls per run without planning")
    ap.add_argument("--repeat", type=int, default=7, help="timed runs per row (default 7)")
    ap.add_argument("--json", action="store_true", help="print the results as one JSON object")
    args = ap.parse_args()
    results = {int(n): asyncio.run(measure(int(n), args.repeat)) for n in args.steps.split(",")}
    load = os.getloadavg()
    if args.json:
        print(json.dumps({"load_average": load, "results": results}))
        return
    print(f"explicit planning vs implicit, in memory; load average {load[0]:.2f} {load[1]:.2f} {load[2]:.2f}")
    print(f"{'N':>5} {'planning':>9} {'requests':>9} {'prompt tokens':>14} {'CPU ms/run':>11} {'CPU µs/request':>15}")
    for n, rows in results.items():
        for mode, row in rows.items():
            print(
                f"{n:>5} {mode:>9} {row['requests']:>9} {row['input_tokens']:>14} "
                f"{row['cpu_ms_per_run']:>11.3f} {row['cpu_us_per_request']:>15.1f}"
            )
        extra = rows["explicit"]["cpu_ms_per_run"] - rows["implicit"]["cpu_ms_per_run"]
        tokens = rows["explicit"]["input_tokens"] - rows["implicit"]["input_tokens"]
        print(f"{n:>5} {'cost':>9} {'+1':>9} {tokens:>+14} {extra:>+11.3f}")


if __name__ == "__main__":
    main()
