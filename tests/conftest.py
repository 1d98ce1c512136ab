"""Test set-up: no real network model calls unless a test opts in with @pytest.mark.network."""

from __future__ import annotations

import ipaddress
import socket
from collections.abc import Iterator
from typing import Any

import pytest

_real_connect = socket.socket.connect


def _is_loopback(address: Any) -> bool:
    if isinstance(address, tuple) and address:
        host = address[0]
        if host in ("localhost", ""):
            return True
        try:
            return ipaddress.ip_address(host).is_loopback
        except ValueError:
            return False
    return True  # Unix sockets


def _guarded_connect(self: socket.socket, address: Any) -> Any:
    if not _is_loopback(address):
        raise ConnectionRefusedError(
            f"tests may not reach {address!r}: real network model calls are blocked; "
            "mark the test @pytest.mark.network to opt in"
        )
    return _real_connect(self, address)


def pytest_configure(config: pytest.Config) -> None:
    config.addinivalue_line("markers", "network: the test may reach non-loopback addresses")


@pytest.fixture(autouse=True)
def _block_network(request: pytest.FixtureRequest, monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    if request.node.get_closest_marker("network") is None:
        monkeypatch.setattr(socket.socket, "connect", _guarded_connect)
    yield
