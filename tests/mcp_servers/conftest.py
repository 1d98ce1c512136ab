"""Fixtures for the MCP tests: files the test server writes, and a streamable-HTTP server process."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
from mcp_helpers import HttpServer, ServerFiles, free_port


@pytest.fixture
def files(tmp_path: Path) -> ServerFiles:
    ledger, hang = tmp_path / "ledger.txt", tmp_path / "hang.pid"
    return ServerFiles(ledger, hang, {"LEDGER": str(ledger)})


@pytest.fixture
def http_server(files: ServerFiles) -> Iterator[HttpServer]:
    server = HttpServer(free_port(), files.env)
    server.start()
    yield server
    server.stop()
