"""The import graph of `src/keel` has no cycle other than `keel.agent` <-> `keel._runtime`.

Every import counts: module-level ones, type-only ones under `if TYPE_CHECKING:` and lazy ones inside
functions, so a cycle hidden behind a type annotation or a deferred import still shows. An edge goes to
the module named: `import keel.a.b` and `from keel.a.b import x` to `keel.a.b`, `from keel.a import b`
to `keel.a.b` when `b` is a submodule and to `keel.a` otherwise; relative imports are resolved against
the importing module's package. Importing a submodule does not count as importing its package's
`__init__` (the convention of grimp and import-linter).

Run `python tests/test_import_graph.py` for the figures: files in cycles, back-edges, the components.
"""

from __future__ import annotations

import ast
import re
import sys
from dataclasses import dataclass
from pathlib import Path

SRC = Path(__file__).resolve().parent.parent / "src"
ROOT = "keel"
ALLOWED = frozenset({"keel.agent", "keel._runtime"})
"""The one cycle the layout keeps: `Agent.run` delegates to `Runtime`, which runs the agent."""


def module_files(src: Path = SRC, root: str = ROOT) -> dict[str, Path]:
    """Every module under `src/root`, by dotted name (a package by its own name)."""
    modules: dict[str, Path] = {}
    for path in sorted((src / root).rglob("*.py")):
        parts = list(path.relative_to(src).with_suffix("").parts)
        if parts[-1] == "__init__":
            parts.pop()
        modules[".".join(parts)] = path
    return modules


def _imported(node: ast.Import | ast.ImportFrom, module: str, is_package: bool, known: set[str]) -> set[str]:
    """The modules of `known` that one import statement in `module` names."""
    if isinstance(node, ast.Import):
        return {alias.name for alias in node.names if alias.name in known}
    if node.level:
        package = module if is_package else module.rpartition(".")[0]
        for _ in range(node.level - 1):
            package = package.rpartition(".")[0]
        base = f"{package}.{node.module}" if node.module else package
    else:
        base = node.module or ""
    targets = set()
    for alias in node.names:
        sub = f"{base}.{alias.name}"
        if sub in known:
            targets.add(sub)
        elif base in known:
            targets.add(base)
    return targets


def import_graph(src: Path = SRC, root: str = ROOT) -> dict[str, set[str]]:
    """Each module's imports of other modules of the package, every import statement counted."""
    files = module_files(src, root)
    known = set(files)
    graph: dict[str, set[str]] = {}
    for module, path in files.items():
        tree = ast.parse(path.read_text(encoding="utf-8"), filename=str(path))
        is_package = path.name == "__init__.py"
        edges: set[str] = set()
        for node in ast.walk(tree):
            if isinstance(node, ast.Import | ast.ImportFrom):
                edges |= _imported(node, module, is_package, known)
        edges.discard(module)
        graph[module] = edges
    return graph


def components(graph: dict[str, set[str]]) -> list[set[str]]:
    """The strongly connected components of `graph` (Tarjan's algorithm, iterative), largest first."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    on_stack: set[str] = set()
    stack: list[str] = []
    found: list[set[str]] = []
    counter = 0
    for start in sorted(graph):
        if start in index:
            continue
        work: list[tuple[str, list[str]]] = [(start, sorted(graph[start]))]
        index[start] = low[start] = counter
        counter += 1
        stack.append(start)
        on_stack.add(start)
        while work:
            node, pending = work[-1]
            if pending:
                nxt = pending.pop(0)
                if nxt not in index:
                    index[nxt] = low[nxt] = counter
                    counter += 1
                    stack.append(nxt)
                    on_stack.add(nxt)
                    work.append((nxt, sorted(graph[nxt])))
                elif nxt in on_stack:
                    low[node] = min(low[node], index[nxt])
                continue
            work.pop()
            if work:
                parent = work[-1][0]
                low[parent] = min(low[parent], low[node])
            if low[node] == index[node]:
                component = set()
                while True:
                    member = stack.pop()
                    on_stack.discard(member)
                    component.add(member)
                    if member == node:
                        break
                found.append(component)
    return sorted(found, key=lambda c: (-len(c), sorted(c)))


def back_edges(graph: dict[str, set[str]]) -> list[tuple[str, str]]:
    """The edges a depth-first search (modules and edges in sorted order) finds pointing back up its path.

    Each closes a cycle; removing them all leaves the graph acyclic. Their number depends on the order
    of the search, which is fixed here so the figure can be compared between commits.
    """
    state: dict[str, int] = {}  # 1 on the current path, 2 finished
    found: list[tuple[str, str]] = []
    for start in sorted(graph):
        if start in state:
            continue
        state[start] = 1
        work: list[tuple[str, list[str]]] = [(start, sorted(graph[start]))]
        while work:
            node, pending = work[-1]
            if not pending:
                state[node] = 2
                work.pop()
                continue
            nxt = pending.pop(0)
            if state.get(nxt) == 1:
                found.append((node, nxt))
            elif nxt not in state:
                state[nxt] = 1
                work.append((nxt, sorted(graph[nxt])))
    return found


@dataclass(frozen=True)
class Figures:
    """What the graph shows: its cycles and the edges that close them."""

    modules: int
    edges: int
    cycles: list[set[str]]
    back_edges: list[tuple[str, str]]

    @property
    def files_in_cycles(self) -> int:
        """Modules that are part of some cycle."""
        return sum(len(c) for c in self.cycles)

    def describe(self) -> str:
        """A plain-text report of the figures."""
        lines = [
            f"{self.modules} modules, {self.edges} import edges",
            f"files in cycles: {self.files_in_cycles} in {len(self.cycles)} component(s)",
            f"back-edges: {len(self.back_edges)}",
        ]
        for component in self.cycles:
            lines.append(f"component of {len(component)}: {', '.join(sorted(component))}")
        lines += [f"back-edge: {a} -> {b}" for a, b in self.back_edges]
        return "\n".join(lines)


def figures(src: Path = SRC, root: str = ROOT) -> Figures:
    """Measure the import graph of the package under `src`."""
    graph = import_graph(src, root)
    cycles = [c for c in components(graph) if len(c) > 1]
    return Figures(len(graph), sum(len(e) for e in graph.values()), cycles, back_edges(graph))


def test_the_only_import_cycle_is_agent_and_runtime() -> None:
    found = figures()
    assert [c for c in found.cycles if c != ALLOWED] == [], found.describe()


STEP_NAME = re.compile(r"^(tool|request|decision|policy|memory|completion):(?!\s)")
"""A string that spells a journal name's family: only the vocabulary (`keel._seam`) writes one."""


def step_name_readers(src: Path = SRC, root: str = ROOT) -> dict[str, list[str]]:
    """Modules outside `storage` and `_seam` that spell step names themselves or parse them."""
    found: dict[str, list[str]] = {}
    for module, path in module_files(src, root).items():
        if module == f"{root}._seam" or module == f"{root}.storage" or module.startswith(f"{root}.storage."):
            continue
        hits = []
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            if isinstance(node, ast.Constant) and isinstance(node.value, str) and STEP_NAME.match(node.value):
                hits.append(f"line {node.lineno}: {node.value!r}")
            elif isinstance(node, ast.Name | ast.Attribute | ast.alias) and "parse_step_name" in (
                getattr(node, "id", None),
                getattr(node, "attr", None),
                getattr(node, "name", None),
            ):
                hits.append(f"line {node.lineno}: parse_step_name")
        if hits:
            found[module] = hits
    return found


def test_no_module_outside_storage_parses_step_names() -> None:
    assert step_name_readers() == {}


def test_the_step_name_check_sees_literals_f_strings_and_the_parser(tmp_path: Path) -> None:
    pkg = tmp_path / "pkg"
    (pkg / "storage").mkdir(parents=True)
    (pkg / "__init__.py").write_text("")
    (pkg / "a.py").write_text('def f(n, k):\n    return n.startswith("tool:") or n == f"decision:{k}"\n')
    (pkg / "b.py").write_text('from pkg._seam import parse_step_name\nX = "tool: the plan step"\n')
    (pkg / "_seam.py").write_text('def tool_step_name(t):\n    return f"tool:{t}"\n')
    (pkg / "storage" / "__init__.py").write_text('LIKE = "tool:%"\n')
    assert step_name_readers(tmp_path, "pkg") == {
        "pkg.a": ["line 2: 'tool:'", "line 2: 'decision:'"],
        "pkg.b": ["line 1: parse_step_name"],
    }


def test_the_graph_sees_type_only_lazy_and_relative_imports(tmp_path: Path) -> None:
    pkg = tmp_path / "pkg"
    (pkg / "sub").mkdir(parents=True)
    (pkg / "__init__.py").write_text("from . import a\n")
    (pkg / "a.py").write_text("from typing import TYPE_CHECKING\nif TYPE_CHECKING:\n    from .b import B\n")
    (pkg / "b.py").write_text("def f():\n    from pkg.sub import c\n")
    (pkg / "sub" / "__init__.py").write_text("")
    (pkg / "sub" / "c.py").write_text("from .. import b\nfrom ..a import x\nimport pkg.sub\n")
    graph = import_graph(tmp_path, "pkg")
    assert graph == {
        "pkg": {"pkg.a"},
        "pkg.a": {"pkg.b"},
        "pkg.b": {"pkg.sub.c"},
        "pkg.sub": set(),
        "pkg.sub.c": {"pkg.b", "pkg.a", "pkg.sub"},
    }
    found = figures(tmp_path, "pkg")
    assert found.cycles == [{"pkg.a", "pkg.b", "pkg.sub.c"}]
    assert found.files_in_cycles == 3
    assert found.back_edges == [("pkg.sub.c", "pkg.a"), ("pkg.sub.c", "pkg.b")]


if __name__ == "__main__":
    sys.stdout.write(figures().describe() + "\n")
