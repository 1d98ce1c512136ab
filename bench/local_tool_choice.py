"""Tool choice of the embedded model on the support agent: does it call the right tool, and answer right?

    .venv/bin/python bench/local_tool_choice.py                  # all tasks, model "local"
    .venv/bin/python bench/local_tool_choice.py --model local-large --json out.json
    .venv/bin/python bench/local_tool_choice.py --tasks 3,5,9    # a subset, by number

Each task runs the real loop (`Agent.run` on `Runtime.in_memory()`, the support example's instructions
and tools, greedy sampling) against a fresh copy of the shop's database. Scored per task:

* first tool: the first tool call the model makes is one of the expected tools, with the key argument
  right (an exact id, or a query containing one of the expected words);
* answer (some tasks): the run ends `done` and the final answer contains one of the expected words.

Seconds are wall time per task, including every model call and tool; the model server is started
and warmed (one tiny request) before the first task, so start-up is not counted, but the first task
still pays for reading the system prompt, which later tasks mostly reuse from llama.cpp's cache.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import statistics
import sys
import tempfile
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from examples.support.agent import INSTRUCTIONS  # noqa: E402
from examples.support.tools import TOOLS  # noqa: E402

from keel import Agent, Runtime  # noqa: E402
from keel.messages import AssistantMessage, UserMessage  # noqa: E402
from keel.models import resolve_model  # noqa: E402


@dataclass(frozen=True)
class Task:
    """One support request and what a right first step and answer look like."""

    text: str
    tools: tuple[str, ...]
    """Acceptable first tools."""
    argument: str
    """The key argument, checked on the first call."""
    values: tuple[str, ...]
    """Acceptable values: an exact id (``A-1001``), or words of which the argument must contain one."""
    answer: tuple[str, ...] = ()
    """Words of which the final answer must contain one (case-insensitive); empty: not scored."""
    exact: bool = False
    """Whether `values` are exact ids rather than words to look for."""


def order(text: str, tools: tuple[str, ...], order_id: str, answer: tuple[str, ...] = ()) -> Task:
    return Task(text, tools, "order_id", (order_id,), answer, exact=True)


TASKS: list[Task] = [
    order("Where is order A-1001?", ("track_shipment", "lookup_order"), "A-1001", ("DHL", "11-03", "November 3")),
    order("What is the status of order A-1002?", ("lookup_order", "track_shipment"), "A-1002", ("delivered",)),
    Task(
        "How long does international shipping take?",
        ("search_kb",),
        "query",
        ("international", "shipping", "abroad"),
        ("5-10", "5 to 10", "5 and 10"),
    ),
    Task("What payment methods do you accept?", ("search_kb",), "query", ("pay",), ("PayPal", "Visa")),
    Task("How do I reset my password?", ("search_kb",), "query", ("password", "reset"), ("forgot",)),
    order("Can you track the parcel of order A-1004 for me?", ("track_shipment",), "A-1004"),
    Task(
        "Hi, I'm ben.carter@example.com. Which orders do I have?",
        ("find_customer",),
        "query",
        ("ben.carter@example.com",),
    ),
    Task("List the orders of customer C-1003.", ("list_orders",), "customer_id", ("C-1003",), exact=True),
    Task(
        "This is the third time my parcel is late! I want to talk to a real person now.",
        ("escalate_to_human",),
        "reason",
        ("",),
        ("T-",),
    ),
    Task(
        "I'm ana.silva@example.com. My order A-1002 arrived broken, please refund it.",
        ("find_customer",),
        "query",
        ("ana.silva@example.com",),
    ),
    Task("Is there a warranty on the espresso machine?", ("search_kb",), "query", ("warranty", "espresso")),
    Task("Can I return an item I don't like?", ("search_kb",), "query", ("return",), ("30 days",)),
    Task(
        "I'm chloe.martin@example.com. Please change the shipping address of order A-1006 to "
        "Hafenstrasse 5, 20095 Hamburg, DE.",
        ("find_customer",),
        "query",
        ("chloe.martin@example.com",),
    ),
    order("What did I buy in order A-1003?", ("lookup_order",), "A-1003", ("scarf",)),
    Task("How much does express delivery cost?", ("search_kb",), "query", ("express", "shipping", "delivery")),
    order("When will order A-1001 arrive?", ("track_shipment", "lookup_order"), "A-1001"),
]


@dataclass
class Outcome:
    """What happened on one task."""

    number: int
    task: str
    first: str
    """The first call as ``tool(arguments)``, or ``answer`` when the model answered without a tool."""
    tool_ok: bool
    answer_ok: bool | None
    status: str
    steps: int
    seconds: float
    input_tokens: int
    output: str
    calls: list[str] = field(default_factory=list)
    requests: list[str] = field(default_factory=list)
    """Per model request: seconds, prompt tokens and the raw reply."""


def first_call_ok(task: Task, name: str, arguments: dict[str, Any]) -> bool:
    if name not in task.tools:
        return False
    if name not in (task.tools[0],) and task.argument not in arguments:
        return True  # an acceptable alternative tool with other argument names
    value = str(arguments.get(task.argument, ""))
    if task.exact:
        return value.strip().upper() in task.values
    return any(v.lower() in value.lower() for v in task.values) and value.strip() != ""


def answer_ok(task: Task, status: str, output: str) -> bool | None:
    if not task.answer:
        return None
    return status == "done" and any(word.lower() in output.lower() for word in task.answer)


class Timed:
    """Wraps a model to record each request's wall time, prompt tokens and reply (for --verbose)."""

    def __init__(self, model: Any) -> None:
        self.model, self.name, self.profile = model, model.name, model.profile
        self.log: list[str] = []

    async def request(self, messages: Any, tools: Any, *, max_tokens: int | None = None) -> Any:
        started = time.perf_counter()
        response = await self.model.request(messages, tools, max_tokens=max_tokens)
        seconds = time.perf_counter() - started
        self.log.append(f"{seconds:4.1f}s {response.usage.input_tokens:5d} tok  {response.raw_text or ''}")
        return response

    async def count_tokens(self, messages: Any, tools: Any) -> int:
        return int(await self.model.count_tokens(messages, tools))


async def run_task(agent: Agent, runtime: Runtime, number: int, task: Task, workdir: Path) -> Outcome:
    os.environ["SUPPORT_DB"] = str(workdir / f"shop-{number}.db")  # a fresh shop for every task
    timed = agent.model
    assert isinstance(timed, Timed)
    timed.log = []
    started = time.perf_counter()
    result = await agent.run(task.text, runtime=runtime)
    seconds = time.perf_counter() - started
    calls = [c for m in result.messages if isinstance(m, AssistantMessage) for c in m.tool_calls]
    if calls:
        first = f"{calls[0].name}({json.dumps(calls[0].arguments, ensure_ascii=False)})"
        tool_ok = first_call_ok(task, calls[0].name, calls[0].arguments)
    else:
        first, tool_ok = "answer", False
    output = str(result.output or result.error or "")
    return Outcome(
        number=number,
        task=task.text,
        first=first,
        tool_ok=tool_ok,
        answer_ok=answer_ok(task, result.status, output),
        status=result.status,
        steps=result.steps,
        seconds=seconds,
        input_tokens=result.usage.input_tokens,
        output=output,
        calls=[f"{c.name}({json.dumps(c.arguments, ensure_ascii=False)})" for c in calls],
        requests=list(timed.log),
    )


def mark(ok: bool | None) -> str:
    return "-" if ok is None else ("ok" if ok else "XX")


async def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--model", default="local", help="model string (default local)")
    parser.add_argument("--tasks", default="", help="comma-separated task numbers (default all)")
    parser.add_argument("--json", type=Path, help="also write the outcomes to this file")
    parser.add_argument("--label", default="", help="a name for this variant, kept in the JSON")
    parser.add_argument("--verbose", action="store_true", help="print every call and the whole answer")
    args = parser.parse_args(argv)

    chosen = [int(n) for n in args.tasks.split(",") if n.strip()] or list(range(1, len(TASKS) + 1))
    model = resolve_model(args.model)
    agent = Agent(name="support", model=Timed(model), instructions=INSTRUCTIONS, tools=TOOLS, max_steps=10)
    runtime = Runtime.in_memory()
    started = time.perf_counter()
    await model.request([UserMessage("Say hi.")], [], max_tokens=4)  # start and warm the server
    print(f"model {args.model}: ready in {time.perf_counter() - started:.1f}s\n")

    outcomes: list[Outcome] = []
    with tempfile.TemporaryDirectory(prefix="keel-bench-") as tmp:
        for number in chosen:
            outcome = await run_task(agent, runtime, number, TASKS[number - 1], Path(tmp))
            outcomes.append(outcome)
            print(
                f"{number:2d} tool {mark(outcome.tool_ok)} answer {mark(outcome.answer_ok)} "
                f"{outcome.status:6s} {outcome.steps} steps {outcome.seconds:5.1f}s  {outcome.task}\n"
                f"     first: {outcome.first}"
            )
            if args.verbose:
                for request in outcome.requests:
                    print(f"     {request}")
            shown = outcome.output if args.verbose else outcome.output[:160]
            print(f"     -> {shown!r}")

    scored = [o for o in outcomes if o.answer_ok is not None]
    tool_right = sum(o.tool_ok for o in outcomes)
    answer_right = sum(bool(o.answer_ok) for o in scored)
    seconds = [o.seconds for o in outcomes]
    summary = {
        "label": args.label,
        "model": args.model,
        "tasks": len(outcomes),
        "right_first_tool": tool_right,
        "right_answer": answer_right,
        "answer_scored": len(scored),
        "mean_steps": statistics.fmean(o.steps for o in outcomes),
        "mean_seconds": statistics.fmean(seconds),
        "median_seconds": statistics.median(seconds),
        "mean_input_tokens": statistics.fmean(o.input_tokens for o in outcomes),
    }
    print(
        f"\nright first tool {tool_right}/{len(outcomes)}, right answer {answer_right}/{len(scored)}, "
        f"{summary['mean_steps']:.1f} steps and {summary['mean_seconds']:.1f}s per task "
        f"(median {summary['median_seconds']:.1f}s), {summary['mean_input_tokens']:.0f} prompt tokens per task"
    )
    if args.json:
        args.json.write_text(json.dumps({"summary": summary, "outcomes": [asdict(o) for o in outcomes]}, indent=2))


if __name__ == "__main__":
    asyncio.run(main())
