"""The eval runner: every case, k trials each, run concurrently (bounded) on a real keel `Runtime`.

Each trial sets up the case's fixtures, runs the agent, watches its `RunEvent`s, applies the checks
(and the judge), then tears the fixtures down. Trials are gathered by case into pass@k, pass^k,
cost, steps and latency. Results come out in case and trial order whatever order trials finish in.

With the scripted model, each case's ``script:`` drives the run: one model object serves every
trial, picking the trial's script from a context variable, so concurrent trials of one agent (one
name in the durable engine's registry) each replay their own case.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import inspect
import json
import tempfile
import time
from collections.abc import Callable, Iterator, Sequence
from contextvars import ContextVar
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from .._runtime import Runtime
from ..agent import Agent
from ..exceptions import ConfigError, KeelError, ModelError
from ..messages import Message, ModelResponse, ToolCall
from ..models import ScriptedModel
from ..models.scripted import ScriptItem
from ._checks import CheckContext, CheckOutcome, TrialFacts, answer_text, run_checks
from ._format import Case, EvalSet, ScriptStep, resolve_callable
from ._judge import Judge, verdict_summary
from ._report import CaseResult, EvalReport, TrialResult

__all__ = ["FixtureRequest", "agent_fingerprint", "run_evalset", "scripted_agent", "trial_seed"]

_SCRIPT: ContextVar[ScriptedModel | None] = ContextVar("keel_eval_script", default=None)


@dataclass(frozen=True, slots=True)
class FixtureRequest:
    """What a fixture function receives.

    Attributes:
        name: the fixture's name in the eval set.
        case_id: the case.
        trial: the trial's number, from 0.
        seed: the trial's seed (stable for a given eval seed, case and trial).
        params: the set's parameters merged with the case's.
        workdir: a directory for this trial alone, removed after it.
    """

    name: str
    case_id: str
    trial: int
    seed: int
    params: dict[str, Any]
    workdir: Path


class _CaseScripts:
    """A `Model` that answers each run from the script of the trial it belongs to."""

    name = "scripted"

    def __init__(self) -> None:
        self.profile = ScriptedModel([]).profile

    def _current(self) -> ScriptedModel:
        model = _SCRIPT.get()
        if model is None:
            raise ModelError("the scripted eval model was asked outside an eval trial; it has no script to follow")
        return model

    async def request(
        self, messages: Sequence[Message], tools: Sequence[dict[str, Any]], *, max_tokens: int | None = None
    ) -> ModelResponse:
        """The current trial's next scripted answer."""
        return await self._current().request(messages, tools, max_tokens=max_tokens)

    async def count_tokens(self, messages: Sequence[Message], tools: Sequence[dict[str, Any]]) -> int:
        """Estimated prompt tokens."""
        return await self._current().count_tokens(messages, tools)


def scripted_agent(agent: Agent) -> Agent:
    """A copy of `agent` whose model plays each case's ``script:`` (for CI: fast and deterministic)."""
    return agent.with_model(_CaseScripts())


def _script_item(step: ScriptStep) -> ScriptItem:
    if step.tool is not None:
        return ToolCall(step.tool, dict(step.args))
    if step.output is not None:
        return ToolCall("final_result", dict(step.output))
    if step.give_up is not None:
        return ToolCall("give_up", {"reason": step.give_up})
    assert step.answer is not None
    return step.answer


def trial_seed(seed: int, case_id: str, trial: int) -> int:
    """A trial's seed: stable for the same eval seed, case and trial, different between them."""
    digest = hashlib.sha256(f"{seed}/{case_id}/{trial}".encode()).digest()
    return int.from_bytes(digest[:4], "big")


def agent_fingerprint(agent: Agent) -> dict[str, Any]:
    """The agent's configuration and its hash: model, instructions, tools, policies, limits."""

    def plain(value: Any) -> Any:
        if isinstance(value, str | int | float | bool) or value is None:
            return value
        if isinstance(value, frozenset | set):
            return sorted(str(v) for v in value)
        return None

    policies = [
        {"type": type(p).__name__, **{k: plain(v) for k, v in sorted(vars(p).items()) if plain(v) is not None}}
        for p in agent.policies
    ]
    config = {
        "name": agent.name,
        "model": agent.model.name,
        "instructions": agent.instructions,
        "tools": agent.tool_specs,
        "policies": policies,
        "max_steps": agent.max_steps,
        "output_retries": agent.output_retries,
        "output_type": agent.output_type.model_json_schema() if agent.output_type else None,
    }
    blob = json.dumps(config, sort_keys=True, default=str).encode()
    return {"config_hash": hashlib.sha256(blob).hexdigest()[:16], "config": config}


def _check_callables(evalset: EvalSet) -> None:
    """Import every fixture, state check and schema now, so a typo fails before any trial runs."""
    for name, spec in evalset.fixtures.items():
        if not callable(resolve_callable(spec.use, f"fixture {name!r}")):
            raise ConfigError(f"fixture {name!r}: {spec.use!r} is not a function")
    for case in evalset.cases:
        for state in case.expect.state:
            if not callable(resolve_callable(state.check, f"case {case.id!r}: state check")):
                raise ConfigError(f"case {case.id!r}: state check {state.check!r} is not a function")
        if case.expect.output_schema is not None:
            resolve_callable(case.expect.output_schema, f"case {case.id!r}: output_schema")


@contextlib.contextmanager
def _fixtures(evalset: EvalSet, case: Case, trial: int, seed: int) -> Iterator[dict[str, Any]]:
    with tempfile.TemporaryDirectory(prefix=f"keel-eval-{case.id}-") as tmp, contextlib.ExitStack() as stack:
        values: dict[str, Any] = {}
        for name, spec in evalset.fixtures.items():
            fn = resolve_callable(spec.use, f"fixture {name!r}")
            workdir = Path(tmp) / name
            workdir.mkdir()
            params = {**spec.params, **case.fixtures.get(name, {})}
            request = FixtureRequest(name, case.id, trial, seed, params, workdir)
            if inspect.isgeneratorfunction(fn):
                values[name] = stack.enter_context(contextlib.contextmanager(fn)(request))
            else:
                value = fn(request)
                if isinstance(value, contextlib.AbstractContextManager):
                    value = stack.enter_context(value)
                values[name] = value
        yield values


def _actions(facts: TrialFacts) -> list[str]:
    lines = [
        f"ran {t['name']}({json.dumps(t['arguments'], default=str)})" + (" -> error" if t["is_error"] else "")
        for t in facts.tools
    ]
    lines += [f"asked a person to approve {a['tool']}" for a in facts.approvals]
    return lines


async def _trial(
    evalset: EvalSet,
    agent: Agent,
    case: Case,
    trial: int,
    *,
    runtime: Runtime,
    seed: int,
    judge: Judge | None,
    scripted: bool,
) -> TrialResult:
    tseed = trial_seed(seed, case.id, trial)
    facts = TrialFacts()
    if scripted:
        assert case.script is not None
        _SCRIPT.set(ScriptedModel([_script_item(s) for s in case.script]))
    metadata = {"eval": evalset.name, "case": case.id, "trial": trial, "seed": tseed}
    with _fixtures(evalset, case, trial, tseed) as values:
        started = time.perf_counter()
        result = await agent.run(case.prompt(), runtime=runtime, on_event=facts.observe, metadata=metadata)
        latency = time.perf_counter() - started
        # state checks read the fixtures on a worker thread, as tools do: the event loop stays free
        ctx = CheckContext(case, result, facts, values, tseed)
        checks = await asyncio.to_thread(run_checks, ctx)
    verdict: dict[str, Any] | None = None
    spec = case.expect.judge
    if spec is not None:
        if judge is None:
            checks.append(CheckOutcome("judge", True, "no judge model given", skipped=True))
        else:
            try:
                scored = await judge.score(case.prompt(), answer_text(result.output), spec, actions=_actions(facts))
            except KeelError as exc:
                checks.append(CheckOutcome("judge", False, str(exc)))
            else:
                ok = scored.score >= spec.threshold
                checks.append(CheckOutcome(f"judge>={spec.threshold}", ok, verdict_summary(scored)))
                verdict = scored.model_dump(mode="json")
    return TrialResult(
        case_id=case.id,
        trial=trial,
        seed=tseed,
        run_id=result.run_id,
        status=result.status,
        passed=all(c.passed for c in checks if not c.skipped),
        answer=answer_text(result.output),
        error=result.error,
        steps=result.steps,
        cost_usd=result.usage.cost_usd,
        tokens=result.usage.total_tokens,
        latency_s=latency,
        tools=[t["name"] for t in facts.tools],
        approvals=[a["tool"] for a in facts.approvals],
        checks=checks,
        verdict=verdict,
    )


@dataclass(slots=True)
class _Plan:
    cases: list[Case]
    scripted: bool
    agent: Agent
    fingerprint: dict[str, Any] = field(default_factory=dict)


def _plan(evalset: EvalSet, agent: Agent, scripted: bool | None, only: Sequence[str] | None) -> _Plan:
    cases = list(evalset.cases)
    if only:
        unknown = [c for c in only if c not in {case.id for case in cases}]
        if unknown:
            raise ConfigError(f"unknown case id(s) {unknown}; the set has: {', '.join(c.id for c in cases)}")
        cases = [c for c in cases if c.id in set(only)]
    if scripted is None:
        scripted = isinstance(agent.model, ScriptedModel | _CaseScripts)
    if scripted:
        missing = [c.id for c in cases if c.script is None]
        if missing:
            raise ConfigError(
                f"the model is scripted but case(s) {', '.join(missing)} have no script:; "
                "add a script (the tool calls and the answer) or run on a real model"
            )
        if not isinstance(agent.model, _CaseScripts):
            agent = scripted_agent(agent)
    return _Plan(cases, scripted, agent, agent_fingerprint(agent))


async def run_evalset(
    evalset: EvalSet,
    agent: Agent,
    *,
    trials: int = 1,
    runtime: Runtime | None = None,
    judge: Judge | None = None,
    concurrency: int = 4,
    seed: int = 0,
    scripted: bool | None = None,
    cases: Sequence[str] | None = None,
    on_trial: Callable[[TrialResult], None] | None = None,
) -> EvalReport:
    """Run every case of `evalset` `trials` times on `agent` and gather the results.

    Args:
        evalset: the cases.
        agent: the agent under test.
        trials: trials per case (k); pass@k and pass^k are computed for k = trials.
        runtime: where the runs execute; default the durable runtime on ``KEEL_DATABASE_URL``.
        judge: scores cases that have a judge rubric; without one those checks are skipped.
        concurrency: trials running at once.
        seed: the eval's seed; each trial's seed (given to fixtures and in the run's metadata) derives
            from it, so the same seed gives the same trials.
        scripted: play each case's ``script:``; default True when the agent's model is a `ScriptedModel`.
        cases: run only these case ids.
        on_trial: called with each trial's result as it finishes (for progress).

    Raises:
        ConfigError: trials or concurrency below 1, an unknown case id, a case without a script on the
            scripted model, or a fixture or check that cannot be imported.
    """
    if trials < 1:
        raise ConfigError(f"trials must be 1 or more, got {trials}")
    if concurrency < 1:
        raise ConfigError(f"concurrency must be 1 or more, got {concurrency}")
    plan = _plan(evalset, agent, scripted, cases)
    _check_callables(evalset)
    runtime = runtime or Runtime.default()
    gate = asyncio.Semaphore(concurrency)

    async def one(case: Case, trial: int) -> TrialResult:
        async with gate:
            outcome = await _trial(
                evalset, plan.agent, case, trial, runtime=runtime, seed=seed, judge=judge, scripted=plan.scripted
            )
        if on_trial is not None:
            on_trial(outcome)
        return outcome

    started_at = time.time()
    started = time.perf_counter()
    jobs = [asyncio.ensure_future(one(case, t)) for case in plan.cases for t in range(trials)]
    try:
        done = await asyncio.gather(*jobs)
    finally:
        for job in jobs:
            job.cancel()
    by_case: dict[str, list[TrialResult]] = {}
    for outcome in done:
        by_case.setdefault(outcome.case_id, []).append(outcome)
    results = [CaseResult(c.id, list(c.tags), sorted(by_case[c.id], key=lambda t: t.trial)) for c in plan.cases]
    agreement = None
    labelled = [
        (c.id, c.prompt(), label.answer, label.passed, c.expect.judge)
        for c in plan.cases
        if c.expect.judge is not None
        for label in c.labels
    ]
    if judge is not None and labelled:
        agreement = (await judge.agreement(labelled)).to_dict()
    from .. import __version__
    from ..config import settings

    return EvalReport(
        evalset=evalset.name,
        agent=plan.agent.name,
        model=plan.agent.model.name,
        keel_version=__version__,
        agent_version=settings().application_version,
        config_hash=plan.fingerprint["config_hash"],
        trials=trials,
        seed=seed,
        started_at=started_at,
        duration_s=time.perf_counter() - started,
        judge=judge.name if judge is not None else None,
        cases=results,
        agreement=agreement,
        alpha=evalset.gate.alpha,
        min_pass_hat_k=evalset.gate.min_pass_hat_k,
    )
