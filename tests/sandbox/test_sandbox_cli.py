"""`python -m keel.sandbox`: run one program, and refuse to serve unsafe-local without the flag."""

from __future__ import annotations

import json
import subprocess
import sys

from keel.sandbox import BubblewrapBackend


def test_run_prints_the_result_as_json(bubblewrap: BubblewrapBackend) -> None:
    done = subprocess.run(
        [sys.executable, "-m", "keel.sandbox", "run", "--backend", "bubblewrap", "print(6 * 7)"],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert done.returncode == 0, done.stderr
    result = json.loads(done.stdout)
    assert (result["stdout"], result["exit_code"], result["backend"]) == ("42\n", 0, "bubblewrap")


def test_serving_unsafe_local_needs_the_explicit_flag() -> None:
    done = subprocess.run(
        [sys.executable, "-m", "keel.sandbox", "serve", "--backend", "unsafe-local", "--port", "0"],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert done.returncode == 2
    assert "add --allow-unsafe only where something else is the boundary" in done.stderr


def test_run_with_a_bad_network_entry_names_the_form_and_exits_2() -> None:
    done = subprocess.run(
        [sys.executable, "-m", "keel.sandbox", "run", "--network", "api.example.com", "print(1)"],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert done.returncode == 2, done.stderr
    assert "not host:port" in done.stderr and "api.example.com:443" in done.stderr
    assert "Traceback" not in done.stderr
