"""keel in the peers' harness (shared/bench-peers/_harness.py), beside LangGraph, PydanticAI and the
OpenAI Agents SDK: Agent(ScriptedModel) with an async tool ``add``, the workload of bench/_workload.py.

    python bench/bench_keel.py --steps 200 --concurrency 1000
    python bench/side_by_side.py --out r.jsonl --workdir "$(mktemp -d)"   # with the peers, run_all.py's plan

Variants:
  step:async            await agent.run(...) on Runtime.in_memory(); the model answers ToolCall / "done"
                        (ScriptedModel builds the message and estimates the request's usage)
  step:async_response   same, the model answers a full ModelResponse carrying its usage
  step:sync             agent.run_sync(...) on Runtime.in_memory() (asyncio.run per run)
  ckpt:sqlite           await agent.run(...) on Runtime("sqlite:///<workdir>/keel.db"): each model call
                        and tool call journaled (committed) before the run moves on
  ckpt:sqlite_response  same, with the ModelResponse answers
"""

from __future__ import annotations

import sys
from pathlib import Path

BENCH_DIR = Path(__file__).resolve().parent
PEERS_DIR = Path(__file__).resolve().parents[2] / "shared" / "bench-peers"
if not (PEERS_DIR / "_harness.py").is_file():
    raise SystemExit(
        f"bench_keel.py needs the peers' harness at {PEERS_DIR}/_harness.py (shared/bench-peers beside "
        "this repository), which is missing; bench/overhead.py measures keel without it"
    )
sys.path.insert(0, str(PEERS_DIR))
sys.path.insert(0, str(BENCH_DIR))

import _workload  # noqa: E402
from _harness import COUNTERS, main  # noqa: E402


def setup(variant, steps, latency, workdir, pause):
    return _workload.setup(variant, steps, latency, workdir, pause, counters=COUNTERS)


BENCH = {
    "name": "keel",
    "packages": ["keel", "dbos", "pydantic", "sqlalchemy"],
    "import_stmt": "import keel",
    "step_variants": ["async", "async_response", "sync"],
    "ckpt_variants": ["sqlite", "sqlite_response"],
    "ckpt_note": "durable runtime on a SQLite file (WAL, synchronous=NORMAL): each model call and tool "
    "call journaled (committed) before the run moves on (2 journal writes per agent step)",
    "notes": "the per-step phases call ScriptedModel directly; the concurrency and idle phases wrap it "
    "to await asyncio.sleep(latency) and the harness's pause",
    "setup": setup,
}

if __name__ == "__main__":
    main(BENCH)
