"""Test doubles shipped in the package: a fake clock and fault injection for models and HTTP.

Example:
    >>> from keel.testing import FakeClock
    >>> clock = FakeClock(0.0)
"""

from ._clock import FakeClock
from .faults import FAULTS, FaultyModel, FaultyTransport, Injected

__all__ = ["FAULTS", "FakeClock", "FaultyModel", "FaultyTransport", "Injected"]
