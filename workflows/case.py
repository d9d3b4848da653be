"""CaseWorkflow: one durable workflow per case, for as long as the case lives.

It executes what the domain decides. Staff actions arrive as the `act` update:
the validator asks the domain (lifecycle, roles, guards) and refuses with a
clear message before anything is written to history; the handler applies the
change and returns the new CaseView. The main loop records every event (and
every notice for the outbox) to SQL through an activity, and sleeps until the
next deadline from `schedule.next_due` or the next command.
"""

from __future__ import annotations

import asyncio
import contextlib
from datetime import timedelta
from typing import Any

from temporalio import workflow
from temporalio.common import RetryPolicy, SearchAttributeUpdate
from temporalio.exceptions import ActivityError, ApplicationError

with workflow.unsafe.imports_passed_through():
    from pydantic import Field, ValidationError

    from activities.contracts import DeliveryOutcome, MessageRef, RecordBatch, RecordResult
    from domain.case import Rejected, apply, decide, notice_for, open_case
    from domain.commands import STAFF_COMMAND, OpenCase, StaffCommand
    from domain.errors import explain
    from domain.events import Archive, Change, DeliveryRecorded, Event
    from domain.models import SYSTEM, Case, Model, Outcome
    from domain.policy import Program
    from domain.schedule import Due, next_due
    from domain.views import CaseView, case_view, details_markdown
    from workflows import search

# A batch is one small transaction; a worker that dies mid-write is retried after this.
RECORD_TIMEOUT = timedelta(seconds=10)
# Recording must never be lost: retry for as long as it takes, but back off.
RECORD_RETRY = RetryPolicy(initial_interval=timedelta(seconds=1), maximum_interval=timedelta(minutes=5))
# Deliveries retry transient failures with backoff for up to three days; permanent ones
# (a bad address, a 4xx) are not retried and reach the case manager as a failed delivery.
DELIVERY_RETRY = RetryPolicy(
    initial_interval=timedelta(seconds=1),
    backoff_coefficient=2.0,
    maximum_interval=timedelta(minutes=10),
    non_retryable_error_types=["PermanentDeliveryError"],
)
# Longer than a channel's own timeout (15 s), short enough that a dead worker's attempt is retried soon.
DELIVERY_ATTEMPT_TIMEOUT = timedelta(seconds=20)
DELIVERY_GIVE_UP_AFTER = timedelta(days=3)


class CaseInput(Model):
    """Start input, and the state carried across continue-as-new."""

    program: Program
    opening: OpenCase | None = None
    case: Case | None = None
    events: list[Event] = Field(default_factory=list)
    unrecorded: int = 0  # how many of the last events are not yet recorded in SQL
    undelivered: list[MessageRef] = Field(default_factory=list)  # messages still being delivered


def parse_command(raw: dict[str, Any]) -> StaffCommand:
    try:
        return STAFF_COMMAND.validate_python(raw)
    except ValidationError as exc:
        problems = explain(exc.errors(), whole="command")
        raise Rejected("validation", f"invalid command: {problems}") from None


class CaseResult(Model):
    number: str
    outcome: Outcome | None
    events: int


def attributes(case: Case, view: CaseView) -> list[SearchAttributeUpdate[Any]]:
    pairs: list[SearchAttributeUpdate[Any]] = [
        search.CASE_STAGE.value_set(case.stage.value),
        search.CASE_MANAGER.value_set(case.manager),
        search.CASE_PROGRAM.value_set(case.program),
        search.CASE_RISK.value_set(case.risk.value),
        search.CASE_OVERDUE.value_set(bool(view.overdue)),
        search.CASE_SUPERVISOR.value_set(case.supervisor or search.NO_SUPERVISOR),
    ]
    if view.next_deadline is not None:
        pairs.append(search.CASE_NEXT_DUE.value_set(view.next_deadline))
    else:  # nothing due (on hold, closed): no stale date in lists
        pairs.append(search.CASE_NEXT_DUE.value_unset())
    return pairs


@workflow.defn(name="CaseWorkflow")
class CaseWorkflow:
    @workflow.init
    def __init__(self, start: CaseInput) -> None:
        self.program = start.program
        if start.case is not None:  # continued as new
            self.case, self.events = start.case, list(start.events)
            self.unrecorded = start.unrecorded
        else:
            assert start.opening is not None, "a new case needs its opening command"
            self.case, first = open_case(start.opening, self.program, workflow.now())
            self.events, self.unrecorded = [first], 1
        self.woken = False
        self.undelivered: dict[str, MessageRef] = {m.key: m for m in start.undelivered}
        self.deliveries: set[asyncio.Task[None]] = set()

    # --- the durable loop -------------------------------------------------

    @workflow.run
    async def run(self, start: CaseInput) -> CaseResult:
        self._publish()
        for message in self.undelivered.values():  # carried over a continue-as-new
            self._start_delivery(message)
        while True:
            await self._record()
            due = next_due(self.case, self.program, workflow.now())
            if due is not None and due.at <= workflow.now():
                if due.kind == "archive":
                    return await self._archive()
                self._issue(due)
                continue
            if workflow.info().is_continue_as_new_suggested() and not self.undelivered:
                await self._continue_as_new()
            await self._sleep_until(due)

    async def _sleep_until(self, due: Due | None) -> None:
        self.woken = False
        timeout = None if due is None else max(due.at - workflow.now(), timedelta(seconds=1))
        summary = None if due is None else f"{due.kind}: {due.key}"[:200]
        with contextlib.suppress(TimeoutError):  # a timeout just means the deadline came
            await workflow.wait_condition(lambda: self.woken, timeout=timeout, timeout_summary=summary)

    def _issue(self, due: Due) -> None:
        notice = notice_for(self.case, due, self.program)
        workflow.logger.info("issuing %s for case %s: %s", notice.kind, self.case.number, notice.key)
        self._change(notice)

    async def _archive(self) -> CaseResult:
        await workflow.wait_condition(lambda: not self.undelivered)
        self._change(Archive(actor=SYSTEM))
        await self._record()
        await workflow.wait_condition(workflow.all_handlers_finished)
        return CaseResult(number=self.case.number, outcome=self.case.outcome, events=len(self.events))

    async def _record(self) -> None:
        """Write unrecorded events (and their outbox messages) to SQL. Idempotent by seq."""
        while self.unrecorded:
            batch = self.events[-self.unrecorded :]
            result = await workflow.execute_activity(
                "record_case_events",
                RecordBatch(case=self.case, case_seq=len(self.events), events=batch),
                result_type=RecordResult,
                start_to_close_timeout=RECORD_TIMEOUT,
                retry_policy=RECORD_RETRY,
                summary=f"record events {batch[0].seq}–{batch[-1].seq}",
            )
            # handlers may have added events meanwhile; only these are now recorded
            self.unrecorded -= len(batch)
            for message in result.messages:
                if message.key not in self.undelivered:
                    self.undelivered[message.key] = message
                    self._start_delivery(message)

    def _start_delivery(self, message: MessageRef) -> None:
        # Deliveries run beside the loop: a provider down for hours must not hold up deadlines.
        # (asyncio tasks are deterministic in a workflow; keep a reference so none is collected)
        task = asyncio.create_task(self._deliver(message), name=f"deliver {message.key}")
        self.deliveries.add(task)
        task.add_done_callback(self.deliveries.discard)

    async def _deliver(self, message: MessageRef) -> None:
        try:
            outcome = await workflow.execute_activity(
                "deliver_message",
                message.key,
                result_type=DeliveryOutcome,
                start_to_close_timeout=DELIVERY_ATTEMPT_TIMEOUT,
                schedule_to_close_timeout=DELIVERY_GIVE_UP_AFTER,
                retry_policy=DELIVERY_RETRY,
                summary=f"deliver {message.kind} {message.key}"[:200],
            )
        except ActivityError as failed:
            cause = failed.cause
            detail = cause.message if isinstance(cause, ApplicationError) else f"gave up: {cause or failed}"
            outcome = DeliveryOutcome(delivered=False, detail=detail)
        referral = f"R{message.event_seq}" if message.kind == "referral_request" else None
        self._change(
            DeliveryRecorded(
                actor=SYSTEM,
                key=message.key,
                kind=message.kind,
                delivered=outcome.delivered,
                detail=outcome.detail,
                referral_id=referral,
            )
        )
        del self.undelivered[message.key]

    async def _continue_as_new(self) -> None:
        await workflow.wait_condition(workflow.all_handlers_finished)
        await self._record()
        if self.undelivered:  # recording queued new messages: deliver them in this run first
            return
        workflow.continue_as_new(
            CaseInput(
                program=self.program,
                case=self.case,
                events=self.events,
                unrecorded=self.unrecorded,
                undelivered=list(self.undelivered.values()),
            )
        )

    # --- staff actions ----------------------------------------------------

    # The update takes plain JSON and parses it here, so a malformed command (typed
    # into the Temporal UI, say) is refused with the field that is wrong rather than
    # an opaque "failed decoding arguments".

    @workflow.update
    def act(self, command: dict[str, Any]) -> CaseView:
        try:
            self._change(parse_command(command))
        except Rejected as refused:  # only if the case changed between validator and handler
            raise ApplicationError(refused.message, type=refused.kind, non_retryable=True) from refused
        return self._view()

    @act.validator
    def _validate(self, command: dict[str, Any]) -> None:
        try:
            decide(self.case, parse_command(command), self.program, workflow.now(), seq=len(self.events) + 1)
        except Rejected as refused:
            raise ApplicationError(refused.message, type=refused.kind, non_retryable=True) from refused

    @workflow.query
    def view(self) -> CaseView:
        return self._view()

    @workflow.query
    def history(self) -> list[Event]:
        return self.events

    # --- applying a change ------------------------------------------------

    def _change(self, change: Change) -> None:
        event = decide(self.case, change, self.program, workflow.now(), seq=len(self.events) + 1)
        self.case = apply(self.case, event, self.program)
        self.events.append(event)
        self.unrecorded += 1
        self.woken = True
        self._publish()

    def _view(self) -> CaseView:
        return case_view(self.case, self.program, workflow.now(), len(self.events), self.unrecorded)

    def _publish(self) -> None:
        view = self._view()
        workflow.upsert_search_attributes(attributes(self.case, view))
        workflow.set_current_details(details_markdown(view))


__all__ = ["CaseInput", "CaseResult", "CaseWorkflow"]
