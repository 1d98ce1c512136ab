"""The customer-support agent of the example shop, and a few tasks to demonstrate it.

Run one task with `keel run examples/support/agent.py:agent "Where is order A-1001?"`, or
`python examples/support/agent.py` for the demo tasks. The instructions live in `instructions.md`;
the tools and the shop's database in `tools.py` and `data.py`.
"""

from __future__ import annotations

import os
import sys
from pathlib import Path

from keel import Agent

if __package__:
    from .memory import agent_memory
    from .policies import POLICIES
    from .tools import TOOLS
else:  # loaded by file path (`keel run examples/support/agent.py:agent`, or run as a script)
    sys.path.insert(0, str(Path(__file__).resolve().parents[2]))
    from examples.support.memory import agent_memory
    from examples.support.policies import POLICIES
    from examples.support.tools import TOOLS

__all__ = ["DEMO_TASKS", "INSTRUCTIONS", "agent"]

INSTRUCTIONS = Path(__file__).with_name("instructions.md").read_text(encoding="utf-8").strip()

DEMO_TASKS = [
    "Where is order A-1001?",
    "How long does international shipping take?",
    "I'm ana.silva@example.com. My order A-1002 arrived broken, please refund the 34.90 I paid.",
    "Use run_python to add up 19.90, 34.90 and 4.95 for me.",
]
"""Tasks the embedded 0.5B model can usually finish with one or two tool calls."""

agent = Agent(
    name="support",
    model=os.environ.get("KEEL_MODEL", "local"),
    instructions=INSTRUCTIONS,
    tools=TOOLS,
    max_steps=10,
    memory=agent_memory(),  # the knowledge base and customers' preferences; None without keel[memory]
    policies=POLICIES,
)


def main(argv: list[str]) -> None:
    """Run the tasks given on the command line, or the demo tasks, and print each answer."""
    for task in argv or DEMO_TASKS:
        result = agent.run_sync(task)
        print(f"> {task}\n[{result.status}, {result.steps} steps] {result.output}\n")


if __name__ == "__main__":
    main(sys.argv[1:])
