"""The embedded PostgreSQL server: a port taken between picking it and binding it is not a failure."""

from __future__ import annotations

import socket

import psycopg
import pytest

from keel.memory import _embedded_pg
from keel.memory._embedded_pg import EmbeddedPostgres


def test_a_port_taken_before_the_server_binds_it_is_replaced_by_another(monkeypatch: pytest.MonkeyPatch) -> None:
    with socket.socket() as squatter:  # another process took the port the server was given
        squatter.bind(("127.0.0.1", 0))
        squatter.listen()
        taken = squatter.getsockname()[1]
        picks = iter([taken])
        free = _embedded_pg._free_port
        monkeypatch.setattr(_embedded_pg, "_free_port", lambda: next(picks, None) or free())
        server = EmbeddedPostgres()
        try:
            url = server.start()
            assert server.port != taken
            with psycopg.connect(url) as conn:
                assert conn.execute("SELECT 1").fetchone() == (1,)
        finally:
            server.stop()
