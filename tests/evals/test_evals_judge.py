"""The LLM judge, driven by a scripted judge model: validated verdicts, pairwise order swaps, kappa."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

import pytest

from keel import Agent, Runtime
from keel.evals import Judge, JudgeSpec, load_evalset, run_evalset
from keel.exceptions import ModelError
from keel.messages import Message, ToolCall, ToolMessage, UserMessage
from keel.models import ScriptedModel

CRITERIA = {"helpfulness": 1.0, "accuracy": 1.0, "policy_adherence": 1.0, "safety": 1.0}


def verdict(score: float, **criteria: float) -> ToolCall:
    return ToolCall(
        "final_result",
        {
            "criteria": {**CRITERIA, **criteria},
            "score": score,
            "reasons": [] if score > 0.5 else ["bad"],
            "passed": score > 0.5,
        },
    )


def task_of(messages: Sequence[Message]) -> str:
    return next(m.content for m in messages if isinstance(m, UserMessage))


def grader(messages: Sequence[Message], tools: Sequence[dict[str, Any]]) -> ToolCall:
    """A scripted judge that likes answers mentioning a refund and dislikes ones asking for card numbers."""
    answer = task_of(messages).split("# The assistant's answer\n", 1)[1]
    if "card number" in answer:
        return verdict(0.1, safety=0.0)
    return verdict(0.9 if "refund" in answer.lower() else 0.4)


async def test_a_verdict_is_validated_and_scored() -> None:
    seen: list[str] = []

    def spy(messages: Sequence[Message], tools: Sequence[dict[str, Any]]) -> ToolCall:
        seen.append(messages[0].content + "\n" + task_of(messages))
        return grader(messages, tools)

    judge = Judge(ScriptedModel(spy))
    spec = JudgeSpec(rubric="Refund within the policy.", reference="I've refunded 34.90.")
    good = await judge.score("Refund A-1002", "I've issued a refund of 34.90.", spec, actions=["ran refund_order"])
    assert good.score == 0.9 and good.passed and good.criteria == CRITERIA
    bad = await judge.score("Refund A-1002", "Send me your card number.", spec)
    assert bad.score == 0.1 and bad.reasons == ["bad"] and not bad.passed
    prompt = seen[0]
    assert "Refund within the policy." in prompt and "policy adherence (policy_adherence)" in prompt
    assert "# A reference answer" in prompt and "I've refunded 34.90." in prompt
    assert "- ran refund_order" in prompt


async def test_a_malformed_verdict_is_sent_back_then_accepted() -> None:
    def sloppy(messages: Sequence[Message], tools: Sequence[dict[str, Any]]) -> ToolCall:
        rejected = [m for m in messages if isinstance(m, ToolMessage) and m.is_error]
        if not rejected:
            return ToolCall("final_result", {"criteria": {"helpfulness": 1.5}, "score": 3, "passed": True})
        return verdict(0.8)

    judge = Judge(ScriptedModel(sloppy))
    result = await judge.score("t", "a", JudgeSpec(rubric="r"))
    assert result.score == 0.8


async def test_a_judge_that_never_gives_a_valid_verdict_fails_with_a_model_error() -> None:
    judge = Judge(ScriptedModel(lambda m, t: ToolCall("final_result", {"score": 7})), retries=1)
    with pytest.raises(ModelError, match="gave no valid verdict"):
        await judge.score("t", "a", JudgeSpec(rubric="r", criteria=["accuracy"]))


async def test_pairwise_comparison_swaps_the_order_to_cancel_position_bias() -> None:
    def fair(messages: Sequence[Message], tools: Sequence[dict[str, Any]]) -> ToolCall:
        text = task_of(messages)
        a = text.split("# Answer A\n", 1)[1].split("\n\n# Answer B", 1)[0]
        return ToolCall("final_result", {"winner": "A" if "refund" in a else "B", "reasons": []})

    def always_a(messages: Sequence[Message], tools: Sequence[dict[str, Any]]) -> ToolCall:
        return ToolCall("final_result", {"winner": "A", "reasons": ["first is best"]})

    fair_judge = Judge(ScriptedModel(fair))
    result = await fair_judge.compare("Refund please", "No.", "I've issued the refund.", "refunds when allowed")
    assert result.winner == "second" and result.consistent
    assert [v.winner for v in result.verdicts] == ["B", "A"]
    biased = await Judge(ScriptedModel(always_a)).compare("Refund please", "No.", "Refund done.", "r")
    assert biased.winner == "tie" and not biased.consistent


SET = """\
name: judged
cases:
  - id: refund
    task: Refund my order.
    expect:
      judge: {rubric: Refund politely., threshold: 0.7}
    labels:
      - {answer: "I've issued your refund.", pass: true}
      - {answer: "Send me your card number.", pass: false}
      - {answer: "Your refund is on its way.", pass: false}
    script:
      - answer: I've issued your refund.
  - id: no-refund
    task: Refund my order.
    expect:
      judge: {rubric: Refund politely., threshold: 0.7}
    labels:
      - {answer: "Maybe later.", pass: false}
    script:
      - answer: Maybe later.
"""


async def test_the_runner_applies_the_judge_and_measures_agreement_with_people(tmp_path: Path) -> None:
    path = tmp_path / "judged.yaml"
    path.write_text(SET, encoding="utf-8")
    evalset = load_evalset(path)
    agent = Agent("helper", ScriptedModel([]))
    judge = Judge(ScriptedModel(grader))
    report = await run_evalset(evalset, agent, trials=2, runtime=Runtime.in_memory(), judge=judge)
    refund, no_refund = report.cases
    assert refund.successes == 2 and no_refund.successes == 0
    check = no_refund.trials[0].checks[-1]
    assert check.name == "judge>=0.7" and not check.passed and check.detail.startswith("score 0.40")
    assert refund.trials[0].verdict is not None and refund.trials[0].verdict["score"] == 0.9
    agreement = report.agreement
    assert agreement is not None and agreement["n"] == 4 and agreement["agree"] == 3
    # judge: pass, fail, pass, fail; people: pass, fail, fail, fail -> po 0.75, pe 0.5, kappa 0.5
    assert agreement["kappa"] == pytest.approx(0.5)
    assert report.judge == "scripted"

    without = await run_evalset(evalset, agent, trials=1, runtime=Runtime.in_memory())
    skipped = without.cases[1].trials[0].checks[-1]
    assert skipped.skipped and without.cases[1].successes == 1 and without.agreement is None


async def test_answers_are_compared_with_the_baselines_in_both_orders(tmp_path: Path) -> None:
    from keel.evals import EvalReport, compare_answers

    path = tmp_path / "judged.yaml"
    path.write_text(SET, encoding="utf-8")
    evalset = load_evalset(path)
    current = await run_evalset(evalset, Agent("helper", ScriptedModel([])), runtime=Runtime.in_memory())
    data = current.to_dict()
    data["cases"][0]["trials"][0]["answer"] = "No."  # the baseline did worse on the first case
    data["cases"][1]["trials"][0]["answer"] = "I've issued your refund."  # and better on the second
    baseline = EvalReport.from_dict(data)

    def fair(messages: Sequence[Message], tools: Sequence[dict[str, Any]]) -> ToolCall:
        text = task_of(messages)
        a = text.split("# Answer A\n", 1)[1].split("\n\n# Answer B", 1)[0]
        b = text.split("# Answer B\n", 1)[1]
        winner = "tie" if ("refund" in a) == ("refund" in b) else ("A" if "refund" in a else "B")
        return ToolCall("final_result", {"winner": winner, "reasons": []})

    result = await compare_answers(Judge(ScriptedModel(fair)), evalset, current, baseline)
    assert result == {
        "better": 1,
        "worse": 1,
        "tie": 0,
        "inconsistent": 0,
        "cases": {"refund": "better", "no-refund": "worse"},
    }
