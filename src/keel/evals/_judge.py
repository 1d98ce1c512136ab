"""LLM-as-judge: a model scores an answer against a rubric into a validated verdict.

The judge is a keel `Agent` with a structured output: the verdict is validated like any agent's
output (malformed verdicts are sent back, bounded), never parsed by hand. Pairwise comparisons are
asked twice with the answers' order swapped, so a judge that prefers a position cancels out. When
cases carry human labels, the judge's agreement with people is measured with Cohen's kappa.
The instructions are data, in ``keel/prompts/judge.md``.
"""

from __future__ import annotations

import asyncio
import functools
import importlib.resources
import re
from collections.abc import Sequence
from dataclasses import dataclass, field
from string import Template
from typing import Any, Literal

import pydantic
from pydantic import BaseModel, ConfigDict, Field

from .._runtime import Runtime
from ..agent import Agent
from ..exceptions import ConfigError, ModelError
from ..models import Model, resolve_model
from ._format import EvalSet, JudgeSpec
from ._report import EvalReport
from ._stats import cohens_kappa

__all__ = ["Agreement", "Judge", "JudgeVerdict", "PairwiseResult", "PairwiseVerdict", "compare_answers"]

_IDENT = re.compile(r"^[a-z][a-z0-9_]{0,39}$")


class JudgeVerdict(BaseModel):
    """A judge's verdict on one answer: per-criterion scores, an overall score, reasons and pass."""

    model_config = ConfigDict(extra="forbid")

    criteria: dict[str, float] = Field(description="each criterion's score from 0 to 1")
    score: float = Field(ge=0.0, le=1.0, description="the overall score from 0 to 1")
    reasons: list[str] = Field(default_factory=list, description="short reasons for points taken off")
    passed: bool = Field(description="true when the answer is acceptable to send")


class PairwiseVerdict(BaseModel):
    """A judge's choice between two answers shown as A and B."""

    model_config = ConfigDict(extra="forbid")

    winner: Literal["A", "B", "tie"] = Field(description="the better answer, or tie")
    reasons: list[str] = Field(default_factory=list, description="short reasons")


@dataclass(slots=True)
class PairwiseResult:
    """The outcome of a comparison asked in both orders.

    Attributes:
        winner: ``first``, ``second`` or ``tie`` (also when the two orders disagree).
        consistent: whether both orders named the same answer (False reveals position bias).
        verdicts: the verdict with the first answer shown as A, then with it shown as B.
    """

    winner: Literal["first", "second", "tie"]
    consistent: bool
    verdicts: tuple[PairwiseVerdict, PairwiseVerdict]


@dataclass(slots=True)
class Agreement:
    """The judge's agreement with human labels.

    Attributes:
        kappa: Cohen's kappa (None when undefined: no labels, or both raters constant and equal).
        n: labelled answers judged.
        agree: how many the judge and the person labelled alike.
        items: ``{"case", "human", "judge", "score"}`` per labelled answer.
    """

    kappa: float | None
    n: int
    agree: int
    items: list[dict[str, Any]] = field(default_factory=list)

    def to_dict(self) -> dict[str, Any]:
        """Return a JSON-ready dict."""
        return {"kappa": self.kappa, "n": self.n, "agree": self.agree, "items": self.items}


@functools.cache
def _prompts() -> dict[str, str]:
    text = importlib.resources.files("keel").joinpath("prompts", "judge.md").read_text("utf-8")
    sections: dict[str, str] = {}
    for block in text.split("## ")[1:]:
        name, _, body = block.partition("\n")
        sections[name.strip()] = body.strip()
    return sections


@functools.cache
def _verdict_type(criteria: tuple[str, ...]) -> type[JudgeVerdict]:
    """A verdict type whose `criteria` must score exactly these criteria, each from 0 to 1."""
    scores = pydantic.create_model(  # type: ignore[call-overload]
        "CriteriaScores",
        __config__=ConfigDict(extra="forbid"),
        **{c: (float, Field(ge=0.0, le=1.0)) for c in criteria},
    )
    verdict: type[JudgeVerdict] = pydantic.create_model(
        "JudgeVerdict",
        __base__=JudgeVerdict,
        criteria=(scores, Field(description="each criterion's score from 0 to 1")),
    )
    return verdict


class Judge:
    """A model that scores answers against rubrics.

    Args:
        model: any keel model string or `Model` (a `ScriptedModel` in tests).
        retries: times a malformed verdict is sent back before the judging fails; default 2.

    Raises:
        ConfigError: the model string is unknown.
    """

    def __init__(self, model: str | Model, *, retries: int = 2) -> None:
        self.model = resolve_model(model)
        self.retries = retries
        self._runtime = Runtime.in_memory()  # verdicts are recorded with the eval's results, not as runs
        self._lock = asyncio.Lock()  # one verdict at a time: a scripted judge answers in order

    @property
    def name(self) -> str:
        """The judge model's name."""
        return self.model.name

    async def _ask(self, instructions: str, task: str, output_type: type[BaseModel]) -> Any:
        agent = Agent(
            "keel-judge",
            self.model,
            instructions=instructions,
            output_type=output_type,
            max_steps=self.retries + 1,
            output_retries=self.retries,
            policies=[],
        )
        async with self._lock:
            result = await agent.run(task, runtime=self._runtime)
        if result.status != "done":
            raise ModelError(f"the judge ({self.model.name}) gave no valid verdict: {result.error}")
        return result.output

    async def score(self, task: str, answer: str, spec: JudgeSpec, *, actions: Sequence[str] = ()) -> JudgeVerdict:
        """Score `answer` to `task` against the rubric.

        Args:
            task: what the user asked.
            answer: the assistant's final answer.
            spec: the rubric, criteria, threshold and optional reference answer.
            actions: what the assistant did (tools run, approvals requested), one line each.

        Raises:
            ConfigError: a criterion is not a lowercase identifier.
            ModelError: the judge gave no valid verdict within its retries.
        """
        for criterion in spec.criteria:
            if not _IDENT.match(criterion):
                raise ConfigError(f"judge criterion {criterion!r} must be a lowercase identifier like policy_adherence")
        criteria = tuple(spec.criteria)
        instructions = Template(_prompts()["score"]).safe_substitute(
            criteria="\n".join(f"- {c.replace('_', ' ')} ({c})" for c in criteria), rubric=spec.rubric
        )
        parts = [f"# The user's request\n{task}"]
        if actions:
            parts.append("# What the assistant did\n" + "\n".join(f"- {a}" for a in actions))
        parts.append(f"# The assistant's answer\n{answer or '(no answer)'}")
        if spec.reference:
            parts.append(f"# A reference answer (a good answer need not match its words)\n{spec.reference}")
        checked: BaseModel = await self._ask(instructions, "\n\n".join(parts), _verdict_type(criteria))
        return JudgeVerdict.model_validate(checked.model_dump(mode="json"))  # criteria as a plain dict

    async def compare(self, task: str, first: str, second: str, rubric: str) -> PairwiseResult:
        """Compare two answers, asking twice with their order swapped to cancel position bias.

        Raises:
            ModelError: the judge gave no valid verdict within its retries.
        """
        instructions = Template(_prompts()["pairwise"]).safe_substitute(rubric=rubric)

        def prompt(a: str, b: str) -> str:
            return f"# The user's request\n{task}\n\n# Answer A\n{a}\n\n# Answer B\n{b}"

        shown_first: PairwiseVerdict = await self._ask(instructions, prompt(first, second), PairwiseVerdict)
        shown_second: PairwiseVerdict = await self._ask(instructions, prompt(second, first), PairwiseVerdict)
        one = {"A": "first", "B": "second", "tie": "tie"}[shown_first.winner]
        two = {"A": "second", "B": "first", "tie": "tie"}[shown_second.winner]
        winner: Literal["first", "second", "tie"] = one if one == two else "tie"  # type: ignore[assignment]
        return PairwiseResult(winner, one == two, (shown_first, shown_second))

    async def agreement(self, labelled: Sequence[tuple[str, str, str, bool, JudgeSpec]]) -> Agreement:
        """Judge answers that people labelled, and measure agreement with Cohen's kappa.

        Args:
            labelled: ``(case id, task, answer, the person's pass, the rubric)`` per labelled answer.

        Raises:
            ModelError: the judge gave no valid verdict within its retries.
        """
        items: list[dict[str, Any]] = []
        for case_id, task, answer, human, spec in labelled:
            verdict = await self.score(task, answer, spec)
            judged = verdict.score >= spec.threshold
            items.append({"case": case_id, "human": human, "judge": judged, "score": verdict.score})
        humans = [bool(i["human"]) for i in items]
        judges = [bool(i["judge"]) for i in items]
        return Agreement(
            cohens_kappa(judges, humans), len(items), sum(h == j for h, j in zip(humans, judges, strict=True)), items
        )


async def compare_answers(judge: Judge, evalset: EvalSet, current: EvalReport, baseline: EvalReport) -> dict[str, Any]:
    """Compare each judged case's answer now with the baseline's (first trials), in both orders.

    Returns:
        counts of ``better``, ``worse``, ``tie`` and ``inconsistent`` (the orders disagreed: position
        bias, counted as a tie too), and per case the winner.
    """
    cases = {c.id: c for c in evalset.cases}
    old = {c.case_id: c for c in baseline.cases}
    counts = {"better": 0, "worse": 0, "tie": 0, "inconsistent": 0}
    per_case: dict[str, str] = {}
    for result in current.cases:
        case = cases.get(result.case_id)
        before = old.get(result.case_id)
        if case is None or case.expect.judge is None or before is None or not before.trials or not result.trials:
            continue
        outcome = await judge.compare(
            case.prompt(), result.trials[0].answer, before.trials[0].answer, case.expect.judge.rubric
        )
        label = {"first": "better", "second": "worse", "tie": "tie"}[outcome.winner]
        counts[label] += 1
        counts["inconsistent"] += not outcome.consistent
        per_case[result.case_id] = label
    return {**counts, "cases": per_case}


def verdict_summary(verdict: JudgeVerdict) -> str:
    """The verdict in one line: score, criteria, reasons."""
    scores = ", ".join(f"{k} {v:.2f}" for k, v in verdict.criteria.items())
    reasons = "; ".join(verdict.reasons)
    return f"score {verdict.score:.2f} ({scores})" + (f": {reasons}" if reasons else "")
