"""Test doubles shipped in the package: a fake clock, fault injection for models and HTTP, a loopback endpoint.

Example:
    >>> from keel.testing import FakeClock
    >>> clock = FakeClock(0.0)
"""

from ._clock import FakeClock
from ._server import CompletionRequest, completions_server
from .faults import FAULTS, FaultyModel, FaultyTransport, Injected

__all__ = [
    "CompletionRequest",
    "FAULTS",
    "FakeClock",
    "FaultyModel",
    "FaultyTransport",
    "Injected",
    "completions_server",
]
