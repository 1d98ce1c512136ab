"""The effects the loop performs inside durable steps: one model request, one tool execution."""

from __future__ import annotations

import asyncio
import functools
import time
from typing import Any

from .exceptions import CallInterrupted, Escalate, NeedsApproval, Retry, ToolError
from .memory.short_term import ShortTermMemory
from .messages import Message
from .models._base import Model
from .tools import Tool, ToolContext

__all__ = ["ToolCrashed", "model_step", "tool_step"]


class ToolCrashed(Exception):  # noqa: N818 - names what happened
    """A tool raised an unexpected exception; raised out of the step so the outcome is not journaled."""


async def model_step(
    model: Model, memory: ShortTermMemory, messages: list[Message], specs: list[dict[str, Any]]
) -> dict[str, Any]:
    """Fit the conversation into the model's window and make one request; return a JSON-ready record."""
    started = time.perf_counter()
    window = await memory.fit(messages, model, specs)
    response = await model.request(window.messages, specs, max_tokens=model.profile.max_output_tokens)
    return {
        "response": response.to_dict(),
        "window": {
            "tokens": window.tokens,
            "budget": window.budget,
            "shortened": window.shortened,
            "omitted": window.omitted,
        },
        "duration_ms": round((time.perf_counter() - started) * 1000, 3),
    }


async def tool_step(tool: Tool, kwargs: dict[str, Any], ctx: ToolContext) -> dict[str, Any]:
    """Run one tool call with its timeout; return a JSON-ready record of the outcome.

    The record has ``content`` and ``is_error``, ``escalate`` when the tool asked for a person, and
    ``fall_back`` (why) when the tool failed and has a fallback: the loop then calls the fallback as a
    call of its own, through the same policies and approvals as any other, journaled as its own step.

    Raises:
        ToolCrashed: the tool raised an exception that is not a keel signal. Nothing is journaled, so a
            run resumed after a fix calls the tool again (or, for a guarded tool, asks a person first).
    """
    started = time.perf_counter()
    if tool.context_param is not None:
        kwargs = {**kwargs, tool.context_param: ctx}
    out: dict[str, Any]
    try:
        call = functools.partial(tool.func, **kwargs)
        pending = call() if tool.is_async else asyncio.to_thread(call)
        value = await asyncio.wait_for(pending, tool.timeout) if tool.timeout else await pending
        out = {"content": tool.serialize(value), "is_error": False}
    except (ToolError, Retry) as exc:
        out = {"content": str(exc) or type(exc).__name__, "is_error": True}
    except (Escalate, NeedsApproval) as exc:
        out = {"content": f"handed to a person: {exc.reason}", "is_error": False, "escalate": exc.reason}
    except CallInterrupted:
        raise
    except TimeoutError:
        out = {"content": f"{tool.name} did not finish within its {tool.timeout} s timeout", "is_error": True}
        if tool.fallback is not None:
            out["fall_back"] = f"timed out after {tool.timeout} s"
    except Exception as exc:
        if tool.fallback is None:
            raise ToolCrashed(f"{type(exc).__name__}: {exc}") from exc
        why = f"{type(exc).__name__}: {exc}"
        out = {"content": f"{tool.name} failed: {why}", "is_error": True, "fall_back": why}
    out["duration_ms"] = round((time.perf_counter() - started) * 1000, 3)
    return out
