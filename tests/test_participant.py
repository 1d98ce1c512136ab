"""Planning and agent memory join the loop through `Participant` hooks, never through the loop's own state."""

from __future__ import annotations

import ast
from pathlib import Path

import keel

SRC = Path(keel.__file__).parent


def imported(path: Path) -> set[str]:
    """Every module `path` imports, type-only and lazy imports included, as dotted names under keel."""
    package = ".".join(["keel", *path.relative_to(SRC).parent.parts])
    names: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.ImportFrom):
            base = package.rsplit(".", node.level - 1)[0] if node.level else ""
            module = ".".join(p for p in (base, node.module or "") if p)
            names.add(module)
            names.update(f"{module}.{a.name}" for a in node.names)
        elif isinstance(node, ast.Import):
            names.update(a.name for a in node.names)
    return names


def test_memory_and_planning_do_not_import_the_loop() -> None:
    for module in ("memory/_agent.py", "planning.py"):
        assert not {n for n in imported(SRC / module) if n.startswith("keel._loop")}, module


def test_the_loop_knows_planning_and_memory_only_as_participants() -> None:
    tree = ast.parse((SRC / "_loop.py").read_text())
    attributes = {n.attr for n in ast.walk(tree) if isinstance(n, ast.Attribute)}
    assert "planner" not in attributes  # no planning branches: every participant is called in one place
    names = imported(SRC / "_loop.py")
    assert "keel.memory._agent.recall_into_context" not in names and "keel.planning.PlanningFailed" not in names
