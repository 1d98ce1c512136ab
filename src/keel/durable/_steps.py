"""The durable step runner: replay journaled steps, run and journal new ones, wait for people.

It implements `keel._seam.StepRunner`, journaling under the step names declared there, and tells the
loop whether each step was replayed.
"""

from __future__ import annotations

import time
from typing import Any

import sqlalchemy as sa

from .. import approvals
from .._seam import (
    COMPLETION,
    MODEL,
    RESOLUTION,
    StepConflict,
    StepFn,
    StepInterrupted,
    Suspend,
    decision_step,
    request_step,
)
from ..exceptions import RunError
from ..storage import Store
from ._decisions import expire_due
from ._writer import JournalWriter

__all__ = ["JournalSteps"]


class JournalSteps:
    """Runs the loop's steps against the run's journal.

    A step already journaled returns its recorded output and does not run. A guarded step (a
    side-effecting, non-idempotent tool) is journaled as started before it runs; if a replay finds it
    started but not finished, the worker died mid-call, and the loop asks a person what to do.
    """

    def __init__(
        self,
        run_id: str,
        store: Store,
        writer: JournalWriter,
        journal: dict[int, tuple[str, str, dict[str, Any] | None]] | None = None,
    ) -> None:
        self.run_id = run_id
        self._store = store
        self._writer = writer
        self._journal = store.load_steps(run_id) if journal is None else journal
        self._seq = 0
        self._interrupted: int | None = None
        self.replayed = False

    @property
    def seq(self) -> int:
        """The sequence number of the step last run, replayed or journaled."""
        return self._seq

    @property
    def replaying(self) -> bool:
        """Whether the journal still holds steps ahead, recorded by an earlier segment."""
        return bool(self._journal)

    async def __call__(self, name: str, fn: StepFn, *, guard: bool = False) -> dict[str, Any]:
        """Return the journaled output of this step, or run it and journal it."""
        self._seq += 1
        seq = self._seq
        recorded = self._journal.pop(seq, None)
        if recorded is not None:
            recorded_name, status, output = recorded
            if recorded_name != name:
                raise RunError(
                    f"run {self.run_id} diverged from its journal at step {seq}: the journal has "
                    f"{recorded_name!r} but the agent asked for {name!r}; resume it with the agent version "
                    "that started it, or fork it from an earlier step",
                    run_id=self.run_id,
                )
            if status == "done":
                assert output is not None
                self._skip_resolution()
                self.replayed = True
                return output
            self._interrupted = seq
            raise StepInterrupted(f"{name} at step {seq} of run {self.run_id} started but never finished")
        self.replayed = False
        if name == MODEL:
            self._check_cancelled()
        try:
            if guard:
                await self._writer.step("started", self.run_id, seq, name, None)
                output = await fn()
                await self._writer.step("complete", self.run_id, seq, name, output)
            else:
                output = await fn()
                await self._writer.step("done", self.run_id, seq, name, output)
        except sa.exc.IntegrityError as exc:
            raise StepConflict(f"step {seq} of run {self.run_id} was journaled by another segment") from exc
        return output

    def _check_cancelled(self) -> None:
        # A cancel may come from any process; the store refreshes one set of cancelled runs for the
        # whole process at most once a second, which keeps the cost off every run's step path.
        if self._store.is_cancelled(self.run_id):
            raise Suspend("failed", "the run was cancelled")

    def _skip_resolution(self) -> None:
        """Step past the journal rows of a person's decision on the step just replayed, if it was interrupted.

        They follow the step they resolve, and a replay that finds the step done does not ask again.
        """
        while (entry := self._journal.get(self._seq + 1)) is not None and entry[0] in RESOLUTION:
            self._seq += 1
            del self._journal[self._seq]

    async def complete(self, fn: StepFn) -> dict[str, Any]:
        """Finish the interrupted step with `fn`'s output (a retry, or a result a person supplied).

        The completion is journaled as begun before `fn` runs, so a retry cut off in turn is not repeated
        on the strength of the old decision: the replay finds it begun, the step still unfinished, and
        asks again.

        Raises:
            StepInterrupted: an earlier completion of this step began and never finished.
        """
        seq = self._interrupted
        if seq is None:
            raise RunError(f"run {self.run_id}: no interrupted step to complete")
        self._seq += 1
        if self._journal.pop(self._seq, None) is not None:
            raise StepInterrupted(f"completing step {seq} of run {self.run_id} began but never finished")
        try:
            await self._writer.step("done", self.run_id, self._seq, COMPLETION, {"step": seq})
        except sa.exc.IntegrityError as exc:
            raise StepConflict(f"step {self._seq} of run {self.run_id} was journaled by another segment") from exc
        self.replayed = False
        output = await fn()
        self._interrupted = None
        await self._writer.step("complete", self.run_id, seq, "", output)
        return output

    async def decide(self, kind: str, request: dict[str, Any]) -> dict[str, Any]:
        """Request a person's decision (journaled once) and return it when made.

        Raises:
            Suspend: the decision is still pending; the run waits without holding a process.
        """
        self._seq += 1
        recorded = self._journal.pop(self._seq, None)
        self.replayed = recorded is not None
        if recorded is not None:
            approval_id = str((recorded[2] or {})["id"])
        else:
            approval_id = approvals.request_id(self.run_id, self._seq)
            self._store.request_decision(approvals.new_request(approval_id, self.run_id, kind, request, time.time()))
            await self._writer.step("done", self.run_id, self._seq, request_step(kind), {"id": approval_id})

        self._seq += 1
        recorded = self._journal.pop(self._seq, None)
        if recorded is not None:
            assert recorded[2] is not None
            self.replayed = True
            return recorded[2]
        approval = self._store.get_approval(approval_id)
        if approval is None:
            raise RunError(f"run {self.run_id}: its request {approval_id} is missing from the database")
        if approvals.is_due(approval):
            expire_due(self._store, ids=[approval_id])  # this run is running: nothing to claim
            approval = self._store.get_approval(approval_id) or approval
        if approval.status == "pending":
            self._seq -= 1  # the decision's slot stays free for the segment that finds it made
            raise Suspend(
                approvals.WAITING.get(kind, "needs_attention"),
                f"{approval.reason} (decision {approval_id})",
                approval_id,
            )
        decision = approvals.decision_record(approval)
        self.replayed = False
        await self._writer.step("done", self.run_id, self._seq, decision_step(kind), decision)
        return decision
