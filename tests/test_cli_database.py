"""The ``--db`` option: commands that only read never create a database; a path that cannot hold one is named.

Each command runs as a real subprocess, so a traceback would show on its standard error.
"""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from keel import ConfigError, Runtime

ROOT = Path(__file__).resolve().parents[1]

ON_EXISTING = [
    ("runs", "list"),
    ("runs", "show", "run_x"),
    ("runs", "resume", "run_x"),
    ("runs", "cancel", "run_x"),
    ("runs", "fork", "run_x", "--from-step", "1"),
    ("runs", "resolve", "apv_x", "retry"),
    ("runs", "prune", "--older-than", "30d"),
    ("runs", "feedback", "run_x", "--thumbs", "up"),
    ("approvals", "list"),
    ("approvals", "approve", "apv_x"),
    ("approvals", "reject", "apv_x", "--reason", "no"),
    ("approvals", "edit", "apv_x", "--arguments", "{}"),
    ("keys", "list"),
    ("keys", "revoke", "key_x"),
]


def keel(*args: str, cwd: Path = ROOT) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "keel.cli", *args], capture_output=True, text=True, timeout=120, cwd=cwd
    )


@pytest.mark.parametrize("args", ON_EXISTING, ids=lambda a: " ".join(a[:2]))
def test_a_command_on_a_database_that_does_not_exist_says_so_and_creates_nothing(
    args: tuple[str, ...], tmp_path: Path
) -> None:
    typo = tmp_path / "kele" / "keel.db"
    done = keel(*args, "--db", f"sqlite:///{typo}")
    assert done.returncode == 2, done.stderr
    assert done.stderr.startswith("error: "), done.stderr
    flat = " ".join(done.stderr.split())
    assert f"database sqlite:///{typo} does not exist" in flat
    assert "--db" in flat and "KEEL_DATABASE_URL" in flat
    assert "Traceback" not in done.stderr and done.stdout == ""
    assert list(tmp_path.iterdir()) == []  # neither the folder nor a database was made


def test_the_default_database_is_not_created_by_a_read(tmp_path: Path) -> None:
    done = keel("runs", "list", cwd=tmp_path)
    assert done.returncode == 2 and "database sqlite:///.keel/keel.db does not exist" in done.stderr
    assert list(tmp_path.iterdir()) == []


@pytest.mark.parametrize("url", ["sqlite:////proc/keel.db", "sqlite:////proc/keel/keel.db", "sqlite:////dev/null/x.db"])
@pytest.mark.parametrize("command", [("runs", "list"), ("keys", "create", "--tenant", "acme")])
def test_a_database_path_that_cannot_be_written_is_named_without_a_traceback(
    url: str, command: tuple[str, ...]
) -> None:
    done = keel(*command, "--db", url)
    assert done.returncode == 2, done.stderr
    assert done.stderr.startswith("error: "), done.stderr
    assert "Traceback" not in done.stderr
    flat = " ".join(done.stderr.split())
    assert url in flat and ("cannot open database" in flat or "does not exist" in flat)


def test_a_run_creates_the_database_and_the_reads_then_find_it(tmp_path: Path) -> None:
    agent = tmp_path / "calc.py"
    agent.write_text(
        "from keel import Agent\nfrom keel.models import ScriptedModel\n"
        'agent = Agent("calc", ScriptedModel(["3"]))\n'
    )
    url = f"sqlite:///{tmp_path / 'new' / 'keel.db'}"
    assert keel("run", f"{agent}:agent", "add 1 and 2", "--db", url).returncode == 0
    listed = keel("runs", "list", "--db", url)
    assert listed.returncode == 0 and "calc" in listed.stdout


def test_unwritable_from_python_is_a_config_error(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match=r"cannot open database 'sqlite:////proc/keel.db'.*writable"):
        Runtime("sqlite:////proc/keel.db")
    missing = tmp_path / "missing" / "keel.db"
    with pytest.raises(ConfigError, match=r"does not exist"):
        Runtime(f"sqlite:///{missing}", create=False)
    assert not missing.parent.exists()


def test_a_postgresql_database_that_does_not_exist_is_named_without_a_traceback() -> None:
    url = "postgresql://postgres@127.0.0.1:5432/keel_no_such_database"
    done = keel("runs", "list", "--db", url)
    assert done.returncode == 2 and done.stderr.startswith("error: cannot open database"), done.stderr
    assert 'database "keel_no_such_database" does not exist' in done.stderr and "Traceback" not in done.stderr
