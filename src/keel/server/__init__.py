"""The HTTP service: runs, live events, approvals, feedback, metrics, health, and the web console.

Needs the ``server`` extra (``pip install 'keel[server]'``). Start it with ``keel serve TARGET...``,
or build the app yourself with `create_app` and serve it with any ASGI server.
"""

from ._app import ApiError, ServiceConfig, create_app
from ._events import journal_events
from ._keys import ApiKey, create_key, list_keys, revoke_key
from ._serve import serve

__all__ = [
    "ApiError",
    "ApiKey",
    "ServiceConfig",
    "create_app",
    "create_key",
    "journal_events",
    "list_keys",
    "revoke_key",
    "serve",
]
