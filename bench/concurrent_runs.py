"""N durable runs at once, as one whole process: for timing from outside against another tree.

    .venv/bin/python bench/concurrent_runs.py                 # 1,000 runs x 10 steps x 50 ms, this tree
    PYTHONPATH=<other tree>/src .venv/bin/python bench/concurrent_runs.py --tree <other tree>

The workload is phase 3 of ``bench/durable.py`` (``make_agent(9, latency=0.05)``, a fresh SQLite
database, a 5-turn warm-up run, then one ``asyncio.gather``), with the interpreter start, ``import keel``
and the engine's launch included. It prints the gathered runs' wall time.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import sys
import tempfile
import time
from pathlib import Path

ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
ap.add_argument("--runs", type=int, default=1000)
ap.add_argument("--tree", default=str(Path(__file__).resolve().parents[1]), help="whose bench/durable.py to use")
args = ap.parse_args()
sys.path.insert(0, str(Path(args.tree) / "bench"))

from durable import make_agent, make_runtime  # noqa: E402

runtime = make_runtime(f"sqlite:///{tempfile.mkdtemp()}/keel.db")
agent = make_agent(9, latency=0.05)


async def main() -> None:
    await make_agent(5).run("go", runtime=runtime)
    started = time.perf_counter()
    results = await asyncio.gather(*(agent.run("go", runtime=runtime) for _ in range(args.runs)))
    assert all(r.status == "done" for r in results)
    print(f"{args.runs} runs: {time.perf_counter() - started:.2f} s")


asyncio.run(main())
os._exit(0)  # skip the engine's shutdown: it is not part of the figure
