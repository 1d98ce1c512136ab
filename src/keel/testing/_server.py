"""A chat-completions endpoint on loopback, for tests of the OpenAI-compatible model over real HTTP."""

from __future__ import annotations

import http.server
import json
import threading
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any

__all__ = ["CompletionRequest", "completions_server"]


@dataclass(frozen=True, slots=True)
class CompletionRequest:
    """One request the server received.

    Attributes:
        path: the request path (``/v1/chat/completions``).
        headers: the request headers, by lower-case name.
        body: the JSON body.
    """

    path: str
    headers: dict[str, str]
    body: dict[str, Any]


@contextmanager
def completions_server(answer: Callable[[CompletionRequest], dict[str, Any]]) -> Iterator[str]:
    """Serve POSTs on 127.0.0.1 and a free port, answering each with ``answer(request)`` as JSON.

    Yields:
        the base URL to give the model (``http://127.0.0.1:PORT/v1``); the server stops on exit.
    """

    class Handler(http.server.BaseHTTPRequestHandler):
        def do_POST(self) -> None:  # noqa: N802 - the stdlib's name
            body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
            headers = {k.lower(): v for k, v in self.headers.items()}
            data = json.dumps(answer(CompletionRequest(self.path, headers, body))).encode()
            self.send_response(200)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(data)))
            self.end_headers()
            self.wfile.write(data)

        def log_message(self, format: str, *args: Any) -> None:  # noqa: A002 - the stdlib's name
            """Keep test output quiet."""

    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    thread = threading.Thread(target=server.serve_forever, args=(0.05,), daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}/v1"
    finally:
        server.shutdown()
        server.server_close()
        thread.join()
