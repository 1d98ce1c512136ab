"""MCP (Model Context Protocol): use the tools of MCP servers in keel agents, and serve agents over MCP.

Needs the ``mcp`` extra (``pip install 'keel[mcp]'``); ``import keel`` never imports it.

Example:
    >>> from keel import Agent
    >>> from keel.mcp import MCPTools
    >>> docs = MCPTools("http://127.0.0.1:8000/mcp", prefix="docs_")  # doctest: +SKIP
    >>> agent = Agent("helper", "openai:gpt-4o-mini", tools=[docs])  # doctest: +SKIP
"""

from __future__ import annotations

try:
    import mcp as _mcp  # noqa: F401 - fail early, with the fix
except ImportError as exc:  # pragma: no cover - depends on the environment
    from ..exceptions import ConfigError

    raise ConfigError("keel.mcp needs the MCP SDK: install it with pip install 'keel[mcp]'") from exc

from ._serve import build_server, serve
from ._tools import ElicitationRequest, ElicitHandler, MCPTool, MCPTools, ToolOptions

__all__ = ["ElicitHandler", "ElicitationRequest", "MCPTool", "MCPTools", "ToolOptions", "build_server", "serve"]
