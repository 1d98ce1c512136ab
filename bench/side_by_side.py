"""keel beside the peers in one interleaved run: shared/bench-peers/run_all.py's plan with bench_keel.py added.

run_all.py runs the scripts of its own folder only; this runs its ``main`` with the four peer scripts
and bench/bench_keel.py, by absolute path. Same options as run_all.py (``--only`` takes script names,
bench_keel.py included). Run it with an interpreter that has keel and the peer frameworks installed:

    python -m venv /tmp/peers-venv
    /tmp/peers-venv/bin/pip install langgraph langgraph-checkpoint-sqlite pydantic-ai-slim openai-agents
    /tmp/peers-venv/bin/pip install -e .
    /tmp/peers-venv/bin/python bench/side_by_side.py --out r.jsonl --workdir "$(mktemp -d)"
    /tmp/peers-venv/bin/python ../shared/bench-peers/aggregate.py r.jsonl
"""

from __future__ import annotations

import importlib.util
import os
import sys
from pathlib import Path

BENCH_DIR = Path(__file__).resolve().parent
PEERS_DIR = Path(__file__).resolve().parents[2] / "shared" / "bench-peers"
if not (PEERS_DIR / "run_all.py").is_file():
    raise SystemExit(f"side_by_side.py needs the peers' scripts at {PEERS_DIR} (shared/bench-peers), which is missing")

spec = importlib.util.spec_from_file_location("run_all", PEERS_DIR / "run_all.py")
assert spec is not None and spec.loader is not None
run_all = importlib.util.module_from_spec(spec)
spec.loader.exec_module(run_all)

SCRIPTS = {name: str(PEERS_DIR / name) for name in run_all.SCRIPTS}
SCRIPTS["bench_keel.py"] = str(BENCH_DIR / "bench_keel.py")
_phases_for = run_all.phases_for


def phases_for(script: str, kind: str) -> list[str]:
    """run_all's phases_for imports a script by name from its folder; put that folder on the path first."""
    folder, name = os.path.split(script)
    if folder not in sys.path:
        sys.path.insert(0, folder)
    return _phases_for(name, kind)


def main() -> None:
    argv = sys.argv[1:]
    for i, arg in enumerate(argv):  # --only names -> absolute paths (run_all joins them to its folder)
        if arg == "--only" and i + 1 < len(argv):
            unknown = [n for n in argv[i + 1].split(",") if n not in SCRIPTS]
            if unknown:
                raise SystemExit(f"--only: unknown script(s) {', '.join(unknown)}; choose from {', '.join(SCRIPTS)}")
            argv[i + 1] = ",".join(SCRIPTS[n] for n in argv[i + 1].split(","))
    sys.argv[1:] = argv
    run_all.SCRIPTS = list(SCRIPTS.values())
    run_all.phases_for = phases_for
    run_all.main()


if __name__ == "__main__":
    main()
