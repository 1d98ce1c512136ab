"""The error tree drawn in `keel.exceptions` is the one the classes form, and every public name is in it."""

from __future__ import annotations

import re

import pytest

import keel
import keel.exceptions as exceptions


def drawn_tree() -> dict[str, str | None]:
    """Each class drawn in the module docstring, with the parent it is drawn under."""
    doc = exceptions.__doc__ or ""
    parents: dict[str, str | None] = {}
    stack: list[tuple[int, str]] = []
    for line in doc.split("The tree::", 1)[1].splitlines()[1:]:
        if not line.strip():
            continue
        if not line.startswith("    "):  # the drawing ends with the first paragraph of prose
            break
        match = re.match(r"^[ │├└─]*([A-Z]\w+)\s", line + " ")
        assert match is not None, line
        name = match.group(1)
        depth = line.index(name)
        while stack and stack[-1][0] >= depth:
            stack.pop()
        parents[name] = stack[-1][1] if stack else None
        stack.append((depth, name))
    return parents


def test_the_drawn_tree_is_the_class_tree() -> None:
    tree = drawn_tree()
    assert {"KeelError", "Signal", "ToolFailed", "CallInterrupted"} <= set(tree)
    for name, parent in tree.items():
        cls = getattr(exceptions, name)
        assert cls.__bases__ == ((getattr(exceptions, parent),) if parent else (Exception,)), name


def test_every_public_exception_is_drawn_and_exported_from_keel() -> None:
    tree = drawn_tree()
    assert set(exceptions.__all__) == set(tree)
    leaves = set(tree) - {"KeelError", "Signal"}
    assert leaves <= set(keel.__all__)


def test_call_interrupted_is_a_public_signal_with_one_identity() -> None:
    from keel import _tool_exec

    assert keel.CallInterrupted is exceptions.CallInterrupted is _tool_exec.CallInterrupted
    assert issubclass(keel.CallInterrupted, exceptions.Signal)


def test_approval_rejected_is_deprecated_but_still_imports() -> None:
    assert "ApprovalRejected" not in keel.__all__ and "ApprovalRejected" not in exceptions.__all__
    with pytest.warns(DeprecationWarning, match="never raised"):
        from keel import ApprovalRejected
    with pytest.warns(DeprecationWarning, match="never raised"):
        from keel.exceptions import ApprovalRejected as same
    assert ApprovalRejected is same and issubclass(ApprovalRejected, keel.RunError)
    with pytest.raises(AttributeError, match="no attribute 'NoSuchError'"):
        exceptions.NoSuchError  # noqa: B018
