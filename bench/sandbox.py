"""Latency of one sandboxed execution, per backend, from request to result.

    .venv/bin/python bench/sandbox.py                  # 30 timed runs per row after 3 warm-ups
    .venv/bin/python bench/sandbox.py --repeat 100 --json
    .venv/bin/python bench/sandbox.py --cold-wasm      # also time the first compile of the wasm module

Rows: ``python`` runs ``print(sum(range(1000)))``; ``shell`` runs ``echo $((6*7))``. Each figure is
the wall time of ``backend.run(request)`` (``time.perf_counter``), which includes creating and
removing the workspace, starting the sandbox and collecting the output: what a tool call costs. The
wasm backend runs in this process; its module is loaded (or compiled) once before timing. The load
average (``os.getloadavg``) is printed with the figures: on a shared machine, it moves them.
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import shutil
import statistics
import tempfile
import time
import warnings
from typing import Any

from keel.sandbox import BubblewrapBackend, ExecutionRequest, SandboxBackend, UnsafeLocalBackend

PROGRAMS = {"python": "print(sum(range(1000)))", "shell": "echo $((6*7))"}
EXPECTED = {"python": "499500\n", "shell": "42\n"}


def time_backend(backend: SandboxBackend, language: str, warmup: int, repeat: int) -> dict[str, Any]:
    request = ExecutionRequest(language=language, code=PROGRAMS[language])  # type: ignore[arg-type]
    for _ in range(warmup):
        backend.run(request)
    samples = []
    for _ in range(repeat):
        started = time.perf_counter()
        result = backend.run(request)
        samples.append((time.perf_counter() - started) * 1000)
        assert result.stdout == EXPECTED[language], result
    samples.sort()
    return {
        "backend": backend.name,
        "language": language,
        "runs": repeat,
        "median_ms": round(statistics.median(samples), 1),
        "p90_ms": round(samples[int(0.9 * (len(samples) - 1))], 1),
        "min_ms": round(samples[0], 1),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeat", type=int, default=30)
    parser.add_argument("--warmup", type=int, default=3)
    parser.add_argument("--json", action="store_true")
    parser.add_argument("--cold-wasm", action="store_true", help="compile the wasm module into an empty cache first")
    args = parser.parse_args()
    logging.getLogger("keel.sandbox").setLevel(logging.ERROR)  # unsafe-local warns on every run

    rows: list[dict[str, Any]] = []
    notes: list[str] = []
    load_before = os.getloadavg()
    bwrap = BubblewrapBackend()
    reason = bwrap.unavailable_reason()
    if reason is None:
        rows += [time_backend(bwrap, lang, args.warmup, args.repeat) for lang in ("python", "shell")]
    else:
        notes.append(f"bubblewrap skipped: {reason}")

    try:
        from keel.sandbox import wasm

        backend = wasm.WasmBackend()
        reason = backend.unavailable_reason()
        if reason is not None:
            raise ImportError(reason)
        cold_dir = None
        if args.cold_wasm:
            cold_dir = tempfile.mkdtemp(prefix="keel-wasm-cache-")
            os.environ["KEEL_SANDBOX_CACHE"] = cold_dir
        started = time.perf_counter()
        backend.warm()
        label = "compile (empty cache)" if args.cold_wasm else "load (cached compile, or compile if none)"
        notes.append(f"wasm module {label}: {time.perf_counter() - started:.2f} s")
        rows.append(time_backend(backend, "python", args.warmup, args.repeat))
        if cold_dir is not None:
            shutil.rmtree(cold_dir, ignore_errors=True)
    except ImportError as exc:
        notes.append(f"wasm skipped: {exc}")

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        local = UnsafeLocalBackend(acknowledge_unsafe=True)
    rows += [time_backend(local, lang, args.warmup, args.repeat) for lang in ("python", "shell")]

    load_after = os.getloadavg()
    if args.json:
        print(json.dumps({"rows": rows, "notes": notes, "loadavg": [load_before, load_after]}, indent=2))
        return
    print(f"{'backend':<14} {'language':<8} {'runs':>5} {'median ms':>10} {'p90 ms':>8} {'min ms':>8}")
    for row in rows:
        print(
            f"{row['backend']:<14} {row['language']:<8} {row['runs']:>5} {row['median_ms']:>10} "
            f"{row['p90_ms']:>8} {row['min_ms']:>8}"
        )
    for note in notes:
        print(note)
    before = " ".join(f"{x:.2f}" for x in load_before)
    after = " ".join(f"{x:.2f}" for x in load_after)
    print(f"load average (1, 5, 15 min): {before} before, {after} after; {os.cpu_count()} CPUs")


if __name__ == "__main__":
    main()
