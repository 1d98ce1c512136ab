"""Fixtures for the MCP tests: files the test server writes, and a streamable-HTTP server process."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
from mcp_helpers import HttpServer, ServerFiles


@pytest.fixture
def files(tmp_path: Path) -> ServerFiles:
    ledger, hang = tmp_path / "ledger.txt", tmp_path / "hang.pid"
    return ServerFiles(ledger, hang, {"LEDGER": str(ledger)})


@pytest.fixture
def http_server(files: ServerFiles, tmp_path: Path) -> Iterator[HttpServer]:
    server = HttpServer(tmp_path / "mcp-http.log", files.env)
    server.start()
    yield server
    server.stop()
