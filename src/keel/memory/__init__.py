"""Memory: the short-term window kept inside a token budget (long-term stores come later)."""

from .short_term import ShortTermMemory, Window

__all__ = ["ShortTermMemory", "Window"]
