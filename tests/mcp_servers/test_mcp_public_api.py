"""keel.mcp's public names, and `import keel` staying free of the MCP SDK."""

from __future__ import annotations

import subprocess
import sys
import types

import keel.mcp


def test_mcp_all_matches_public_names_and_each_is_documented() -> None:
    public = {
        name
        for name in dir(keel.mcp)
        if not name.startswith("_") and not isinstance(getattr(keel.mcp, name), types.ModuleType)
    } - {"annotations"}
    assert set(keel.mcp.__all__) == public
    assert keel.mcp.__all__ == sorted(keel.mcp.__all__)
    for name in keel.mcp.__all__:
        assert (getattr(keel.mcp, name).__doc__ or "").strip(), f"{name} has no docstring"


def test_import_keel_and_its_cli_do_not_import_the_mcp_sdk() -> None:
    code = "import sys, keel, keel.cli; print(sorted(m for m in sys.modules if m == 'mcp' or m.startswith('mcp.')))"
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert done.stdout.strip() == "[]"
