"""Eval-set files: what loads, and errors that name the file, the line and the field."""

from __future__ import annotations

from pathlib import Path

import pytest

from keel.evals import EvalSetError, load_evalset

VALID = """\
name: demo
agent: agent.py:agent
fixtures:
  shop:
    use: examples.support.eval_hooks:shop
    params: {sql: []}
cases:
  - id: one
    task: Where is order A-1001?
    tags: [orders]
    expect:
      answer_contains: DHL
      tools_called: [track_shipment, {name: lookup_order, arguments: {order_id: A-1001}}]
      tools_not_called: refund_order
      approval_requested: refund_order
      state: [{check: "pkg.mod:fn", args: {order: A-1001}}]
      max_steps: 3
      max_cost: 0.01
      judge: {rubric: polite and correct, threshold: 0.8}
    script:
      - {tool: track_shipment, args: {order_id: A-1001}}
      - answer: It is on its way.
  - id: two
    conversation:
      - {role: user, content: I want to change my address.}
      - {role: assistant, content: "Which order?"}
      - {role: user, content: A-1006.}
    fixtures: {shop: {sql: ["DELETE FROM refunds"]}}
    labels:
      - {answer: Done., pass: true}
"""


def write(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "set.yaml"
    path.write_text(text, encoding="utf-8")
    return path


def error_of(tmp_path: Path, text: str) -> str:
    path = write(tmp_path, text)
    with pytest.raises(EvalSetError) as info:
        load_evalset(path)
    return str(info.value)


def test_a_valid_set_loads_with_every_expectation(tmp_path: Path) -> None:
    evalset = load_evalset(write(tmp_path, VALID))
    one, two = evalset.cases
    assert evalset.name == "demo" and evalset.source == (tmp_path / "set.yaml").resolve()
    assert one.expect.answer_contains == ["DHL"]
    assert [t.name for t in one.expect.tools_called] == ["track_shipment", "lookup_order"]
    assert one.expect.tools_called[1].arguments == {"order_id": "A-1001"}
    assert one.expect.tools_not_called == ["refund_order"]
    assert one.expect.expected_status == "waiting"  # an expected approval means the run waits
    assert one.expect.judge is not None and one.expect.judge.threshold == 0.8
    assert one.expect.judge.criteria == ["helpfulness", "accuracy", "policy_adherence", "safety"]
    assert one.script is not None and one.script[0].tool == "track_shipment"
    assert two.expect.expected_status == "done"
    assert two.labels[0].passed is True
    assert two.prompt() == (
        "Conversation so far:\nCustomer: I want to change my address.\nYou: Which order?\n\n"
        "The customer now says: A-1006."
    )


@pytest.mark.parametrize(
    ("old", "new", "line", "field", "message"),
    [
        (
            "      answer_contains: DHL\n",
            "      answer_contain: DHL\n",
            12,
            "cases[0](id=one).expect.answer_contain",
            "Extra inputs",
        ),
        ("      max_steps: 3\n", "      max_steps: three\n", 17, "cases[0](id=one).expect.max_steps", "valid integer"),
        (
            "      max_cost: 0.01\n",
            "      max_cost: -1\n",
            18,
            "cases[0](id=one).expect.max_cost",
            "greater than or equal to 0",
        ),
        ("    task: Where is order A-1001?\n", "", 8, "cases[0](id=one)", "exactly one of task or conversation"),
        ("  - id: two\n", "  - id: one\n", 23, "cases[1](id=one).id", "duplicate case id 'one'"),
        (
            "      judge: {rubric: polite and correct, threshold: 0.8}\n",
            "      judge: {rubric: x, threshold: 2}\n",
            19,
            "cases[0](id=one).expect.judge.threshold",
            "less than or equal to 1",
        ),
        (
            '      state: [{check: "pkg.mod:fn", args: {order: A-1001}}]\n',
            "      state: [{check: no-colon}]\n",
            16,
            "cases[0](id=one).expect.state[0].check",
            "should match pattern",
        ),
        (
            '    fixtures: {shop: {sql: ["DELETE FROM refunds"]}}\n',
            "    fixtures: {db: {}}\n",
            28,
            "cases[1](id=two).fixtures.db",
            "unknown fixture 'db' (fixtures of this set: shop)",
        ),
        (
            "      - answer: It is on its way.\n",
            "      - {answer: hi, tool: x}\n",
            22,
            "cases[0](id=one).script[1]",
            "exactly one of tool, answer, output, give_up",
        ),
        ("      - {role: user, content: A-1006.}\n", "", 23, "cases[1](id=two)", "must end with a user turn"),
    ],
)
def test_errors_name_the_file_line_and_field(
    tmp_path: Path, old: str, new: str, line: int, field: str, message: str
) -> None:
    assert old in VALID
    text = error_of(tmp_path, VALID.replace(old, new))
    assert f"{tmp_path / 'set.yaml'}:{line}: {field}: " in text
    assert message in text


def test_a_bad_regular_expression_is_named(tmp_path: Path) -> None:
    text = error_of(tmp_path, VALID.replace("answer_contains: DHL", "answer_matches: '(unclosed'"))
    assert ":12: cases[0](id=one).expect.answer_matches: not a valid regular expression" in text


def test_yaml_syntax_errors_give_the_line(tmp_path: Path) -> None:
    text = error_of(tmp_path, "name: x\ncases:\n  - id: a\n    task: [unclosed\n")
    assert f"{tmp_path / 'set.yaml'}:5: not valid YAML" in text


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("", "the file is empty"),
        ("- a\n- b\n", ":1: an eval set is a mapping"),
        ("name: x\ncases: []\n", ":2: cases: List should have at least 1 item"),
        ("cases:\n  - {id: a, task: t}\n", ":1: name: Field required"),
    ],
)
def test_structural_errors(tmp_path: Path, text: str, expected: str) -> None:
    assert expected in error_of(tmp_path, text)


def test_a_missing_file_is_named(tmp_path: Path) -> None:
    with pytest.raises(EvalSetError, match=r"missing\.yaml: cannot read the eval set"):
        load_evalset(tmp_path / "missing.yaml")


def test_the_flagship_set_loads() -> None:
    evalset = load_evalset(Path(__file__).parents[2] / "examples" / "support" / "evals.yaml")
    assert len(evalset.cases) >= 30
    tags = {t for c in evalset.cases for t in c.tags}
    assert {"approval", "injection", "pii", "angry", "multi-step", "refusal"} <= tags
    assert all(c.script for c in evalset.cases)
