"""CaseWorkflow: one durable workflow per case, for as long as the case lives.

It executes what the domain decides. Staff actions arrive as the `act` update:
the validator asks the domain (lifecycle, roles, guards) and refuses with a
clear message before anything is written to history; the handler applies the
change and returns a small Receipt. The main loop records every event (and
every notice for the outbox) to SQL through an activity, and sleeps until the
next deadline from `schedule.next_due` or the next command.

Its state is bounded whatever the case's age (domain/bounds.py): the live case,
the events not yet recorded, and recent command keys. The SQL record keeps the
whole story; the run continues as new on its own history bounds.
"""

from __future__ import annotations

import asyncio
import contextlib
from datetime import timedelta
from typing import Any

from temporalio import workflow
from temporalio.common import RetryPolicy
from temporalio.exceptions import ActivityError, ApplicationError, RetryState

with workflow.unsafe.imports_passed_through():
    from pydantic import ValidationError

    from activities.contracts import AppliedKey, DeliveryOutcome, MessageRef, RecordBatch, RecordResult
    from activities.messages import FAILING_NOTICE
    from domain import bounds
    from domain.case import apply, decide, notice_for, open_case
    from domain.commands import STAFF_COMMAND, StaffCommand, command_digest
    from domain.errors import Refusal, Rejected, explain
    from domain.events import Archive, Change, DeliveryFailing, DeliveryRecorded, Event
    from domain.lifecycle import allowed_actions
    from domain.models import SYSTEM, FailingDelivery
    from domain.schedule import Due, next_deadline, next_due
    from domain.views import CaseView, Receipt, case_view, details_markdown, receipt
    from workflows import search
    from workflows.contracts import CaseInput, CaseResult, CommandKey

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
# Runs that see this marker deliver in rounds, so a delivery whose attempts keep failing shows on
# the case (and its case manager is told once) long before the three days are up. Each round is
# one activity with a small attempt budget; the workflow waits the policy's backoff between
# rounds, so attempts are spaced as one long retry would space them.
DELIVERY_IN_ROUNDS = "delivery-in-rounds"
FIRST_ROUND_ATTEMPTS = 3  # a few seconds: a blip is retried quietly, a provider down is seen at once
ROUND_ATTEMPTS = 6  # about an hour a round once the backoff reaches its 10 minutes


# When a run continues as new (docs/architecture.md, "Continue-as-new"): far below Temporal's
# hard limits (51,200 events, 50 MB, 2,000 updates per run), so a long case never meets them,
# and high enough that a quiet case continues as new only every year or so.
CONTINUE_AT_EVENTS = 4_000
CONTINUE_AT_BYTES = 4 * 1024 * 1024
CONTINUE_AT_UPDATES = 1_000
# Past these a run continues as new even with deliveries in flight (they are carried over and
# restarted; a delivery is idempotent by its key). Still a fifth of Temporal's limits.
MUST_CONTINUE_AT_EVENTS = 10_000
MUST_CONTINUE_AT_BYTES = 10 * 1024 * 1024
# How long a run waits for a workflow task without updates before it continues as new.
QUIET_TASK = timedelta(milliseconds=20)
# Runs started before the case kept bounded state replay as they were (see docs/architecture.md,
# "Changing the workflow"); runs that see this marker record in bounded batches and continue as
# new on their own bounds.
BOUNDED_HISTORY = "bounded-history"
# Runs that see this marker pause every deadline during holds (referral answers and appointments
# too); runs from before it kept those two clocks running, and replay so.
EVERY_DEADLINE_HONOURS_HOLDS = "every-deadline-honours-holds"
# Runs that see this marker upsert only the search attributes whose value changed (a note, a
# follow-up recorded: none); runs from before it upserted all seven at every change, and replay
# so. Each upsert is a history event and a visibility write on the server.
UPSERT_ONLY_CHANGES = "upsert-only-changes"
# Runs that see this marker were started by code that takes every change above, and ask no other
# patch: each `workflow.patched` a new run calls costs it a marker and an upsert of Temporal's
# TemporalChangeVersion search attribute (a visibility write on the server), four for every case
# opened and every continue-as-new. Runs without it ask each patch as before, and replay so.
TAKES_EVERY_CHANGE = "takes-every-change-v5"
# The code that starts a run writes its generation into the run's input (CaseInput.generation;
# runs started before there was one read 0). A run of generation 6 or later takes every change
# above without asking a patch, so it records no marker and no upsert of TemporalChangeVersion
# at all; and it leaves a next due within search.NEXT_DUE_SLACK of the one shown as it is, so
# its first task upserts nothing (the client starts it with every attribute). The input is in
# the run's history, so a replay decides the same. A change made after this one can be asked as
# `self.generation >= 7` for runs started since, and `workflow.patched` for older runs.
GENERATION = 8
WITHOUT_MARKERS_SINCE = 6  # the generation since which runs ask no patch and publish with slack
# Since generation 7 a follow-up inviting a client no invitation can reach is refused. Older runs
# accepted some and replay them as they were; their validator refuses new ones (a refused update
# leaves nothing in the history, so no marker is needed).
REACHABLE_INVITEES_SINCE = 7
# Since generation 8 an outcome must fit the facts (domain/policy.py, `outcomes_fit_the_facts`):
# older runs replay what they took, and their validator refuses new such commands, as above.
FITTING_OUTCOMES_SINCE = 8


BEFORE_EVERY_CHANGE = (BOUNDED_HISTORY, EVERY_DEADLINE_HONOURS_HOLDS, DELIVERY_IN_ROUNDS, UPSERT_ONLY_CHANGES)


def parse_command(raw: dict[str, Any]) -> StaffCommand:
    try:
        return STAFF_COMMAND.validate_python(raw)
    except ValidationError as exc:
        problems = explain(exc.errors(), whole="command")
        raise Rejected(Refusal.VALIDATION, f"invalid command: {problems}") from None


@workflow.defn(name="CaseWorkflow")
class CaseWorkflow:
    @workflow.init
    def __init__(self, start: CaseInput) -> None:
        self.generation = start.generation
        # Set both ways: a run continued as new from an old-path run carries the flag off.
        honours = self._patched(EVERY_DEADLINE_HONOURS_HOLDS)
        reachable = self.generation >= REACHABLE_INVITEES_SINCE
        fitting = self.generation >= FITTING_OUTCOMES_SINCE
        self.program = start.program.model_copy(
            update={
                "holds_pause_every_deadline": honours,
                "invitations_need_a_reachable_client": reachable,
                "outcomes_fit_the_facts": fitting,
            }
        )
        # what a new command is judged by: every rule, also those this run's history predates
        # (the same object for a run of today's generation: no second program per cached case)
        self.rules_now = (
            self.program
            if reachable and fitting
            else self.program.model_copy(
                update={"invitations_need_a_reachable_client": True, "outcomes_fit_the_facts": True}
            )
        )
        self.recent: dict[str, CommandKey] = {k.key: k for k in start.recent}
        self.updates = 0  # updates taken by this run (Temporal allows 2,000 per run)
        self.last_update_at_length = -1  # the history length when this run last took an update
        # before any change: the view a change publishes shows failing deliveries
        self.undelivered: dict[str, MessageRef] = {m.key: m for m in start.undelivered}
        self.deliveries: set[asyncio.Task[None]] = set()
        if start.case is None:
            assert start.opening is not None, "a new case needs its opening command"
            self.case, first = open_case(start.opening, self.program, workflow.now())
            self.seq, self.pending = 1, [first]
        elif start.events:  # carried by a run from before bounded state
            self.case, self.seq = start.case, start.events[-1].seq
            self.pending = start.events[len(start.events) - start.unrecorded :]
        else:  # continued as new, or restored from the record
            self.case, self.seq, self.pending = start.case, start.seq, list(start.pending)
        if start.restore is not None:
            self._change(start.restore)
        self.woken = False
        self.bounded = True  # set in run(): False while replaying a run from before bounded state

    # --- the durable loop -------------------------------------------------

    @workflow.run
    async def run(self, start: CaseInput) -> CaseResult:
        self.bounded = self._patched(BOUNDED_HISTORY)
        self.in_rounds = self._patched(DELIVERY_IN_ROUNDS)
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
            if self._time_to_continue_as_new():
                await self._continue_as_new()
            await self._sleep_until(due)

    def _time_to_continue_as_new(self) -> bool:
        info = workflow.info()
        suggested = info.is_continue_as_new_suggested()
        if not self.bounded:
            return suggested and not self.undelivered
        if self._must_continue_as_new():
            return True
        length, size = info.get_current_history_length(), info.get_current_history_size()
        due = (
            suggested
            or length >= CONTINUE_AT_EVENTS
            or size >= CONTINUE_AT_BYTES
            or self.updates >= CONTINUE_AT_UPDATES
        )
        return due and not self.undelivered

    @staticmethod
    def _must_continue_as_new() -> bool:
        info = workflow.info()
        return (
            info.get_current_history_length() >= MUST_CONTINUE_AT_EVENTS
            or info.get_current_history_size() >= MUST_CONTINUE_AT_BYTES
        )

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
        await self._record(until_done=True)
        await workflow.wait_condition(workflow.all_handlers_finished)
        return CaseResult(number=self.case.number, outcome=self.case.outcome, events=self.seq)

    async def _record(self, until_done: bool = False) -> None:
        """Write unrecorded events (and their outbox messages) to SQL. Idempotent by seq.

        Between batches it stops when the run is due to continue as new (unless `until_done`):
        staff adding notes back to back keep events coming, and the loop must still get to
        its check (before this, a stream of notes kept a case recording until it hit 50 MB)."""
        while self.pending:
            batch = self._next_batch()
            result = await workflow.execute_activity(
                "record_case_events",
                RecordBatch(
                    case=self.case,
                    case_seq=self.seq,
                    events=batch,
                    program=self.program,
                    keys=self._keys_of(batch),
                ),
                result_type=RecordResult,
                start_to_close_timeout=RECORD_TIMEOUT,
                retry_policy=RECORD_RETRY,
                summary=f"record events {batch[0].seq}–{batch[-1].seq}",
            )
            # handlers may have added events meanwhile; only these are now recorded
            del self.pending[: len(batch)]
            for message in result.messages:
                if message.key not in self.undelivered:
                    self.undelivered[message.key] = message
                    self._start_delivery(message)
            if self.bounded and not until_done and self._time_to_continue_as_new():
                return

    def _next_batch(self) -> list[Event]:
        """The oldest unrecorded events that fit in RECORD_INPUT_BYTES with the case (at least
        one), so no activity input grows with how much happened while the record store was away."""
        if not self.bounded:
            return list(self.pending)
        batch, size = [self.pending[0]], len(self.case.model_dump_json()) + _json_size(self.pending[:1])
        for event in self.pending[1:]:
            size += _json_size([event])
            if size > bounds.RECORD_INPUT_BYTES:
                break
            batch.append(event)
        return batch

    def _start_delivery(self, message: MessageRef) -> None:
        # Deliveries run beside the loop: a provider down for hours must not hold up deadlines.
        # (asyncio tasks are deterministic in a workflow; keep a reference so none is collected)
        task = asyncio.create_task(self._deliver(message), name=f"deliver {message.key}")
        self.deliveries.add(task)
        task.add_done_callback(self.deliveries.discard)

    async def _deliver(self, message: MessageRef) -> None:
        if self.in_rounds:
            outcome = await self._deliver_in_rounds(message)
        else:
            outcome = await self._deliver_at_once(message)
        referral = f"R{message.event_seq}" if message.kind == "referral_request" else None
        del self.undelivered[message.key]  # before the event: its published view shows no failing
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

    async def _deliver_at_once(self, message: MessageRef) -> DeliveryOutcome:
        """Runs from before delivery in rounds: one activity retried for up to three days."""
        try:
            outcome: DeliveryOutcome = await workflow.execute_activity(
                "deliver_message",
                message.key,
                result_type=DeliveryOutcome,
                start_to_close_timeout=DELIVERY_ATTEMPT_TIMEOUT,
                schedule_to_close_timeout=DELIVERY_GIVE_UP_AFTER,
                retry_policy=DELIVERY_RETRY,
                summary=f"deliver {message.kind} {message.key}"[:200],
            )
        except ActivityError as failed:
            return DeliveryOutcome(delivered=False, detail=_failure_detail(failed))
        return outcome

    async def _deliver_in_rounds(self, message: MessageRef) -> DeliveryOutcome:
        """Deliver with the same backoff and three-day limit as one long retry, but in rounds of a
        few attempts, so the workflow hears when attempts keep failing (without polling SQL)."""
        if message.started_at is None:
            message.started_at = workflow.now()
        give_up_at = message.started_at + DELIVERY_GIVE_UP_AFTER
        while True:
            tried = message.failing.attempts if message.failing else 0
            left = give_up_at - workflow.now()
            if left <= timedelta(0):
                last = message.failing.last_error if message.failing else "no attempt"
                return DeliveryOutcome(delivered=False, detail=f"gave up after {tried} attempts: {last}")
            budget = ROUND_ATTEMPTS if tried else FIRST_ROUND_ATTEMPTS
            try:
                outcome: DeliveryOutcome = await workflow.execute_activity(
                    "deliver_message",
                    args=[message.key, tried],
                    result_type=DeliveryOutcome,
                    start_to_close_timeout=DELIVERY_ATTEMPT_TIMEOUT,
                    schedule_to_close_timeout=left,
                    retry_policy=_round_policy(tried, budget),
                    summary=f"deliver {message.kind} {message.key} (attempts {tried + 1}–)"[:200],
                )
                return outcome
            except ActivityError as failed:
                if failed.retry_state != RetryState.MAXIMUM_ATTEMPTS_REACHED:
                    return DeliveryOutcome(delivered=False, detail=_failure_detail(failed))
                self._failing(message, tried + budget, _failure_detail(failed, gave_up=False))
            wait = min(_backoff_after(tried + budget), give_up_at - workflow.now())
            if wait > timedelta(0):
                await workflow.sleep(wait, summary=f"retry {message.key}"[:200])

    def _failing(self, message: MessageRef, attempts: int, error: str) -> None:
        """Note that `message` keeps failing; the first time, tell the case manager (once: the
        note rides with the message across continue-as-new, and a notice about a failing notice
        would only fail the same way)."""
        first = message.failing is None
        assert message.started_at is not None
        message.failing = FailingDelivery(
            key=message.key,
            kind=message.kind,
            to=message.to or "the recipient",
            since=message.started_at,
            attempts=attempts,
            last_error=error[: bounds.MAX_ERROR_CHARS],  # a server's error text has no limit of its own
        )
        if first and message.kind != FAILING_NOTICE:
            self._change(DeliveryFailing(actor=SYSTEM, failing=message.failing))
        else:
            self._publish()

    async def _continue_as_new(self) -> None:
        await workflow.wait_condition(workflow.all_handlers_finished)
        if not self.bounded:  # as runs from before bounded state did
            await self._record()
            if self.undelivered:
                return
        elif self.undelivered and not self._must_continue_as_new():
            return  # deliver what is under way in this run first
        # Unrecorded events (bounded: MAX_UNRECORDED_BYTES) and deliveries under way are carried
        # over: the next run records and delivers them (both are idempotent by key).
        # A run must not end in the workflow task that completed an update: the time-skipping
        # server refuses that ("invalid history builder state"). Let one quiet task pass.
        # (That message is that server's refusal of a CancelTimer for a timer that fired while the
        # task was with the worker, docs/architecture.md, "Lessons paid for in this suite": this
        # wait may have answered that race. It stays until a run without it is shown safe.)
        while self.bounded and self.last_update_at_length == workflow.info().get_current_history_length():
            with contextlib.suppress(TimeoutError):
                await workflow.wait_condition(lambda: False, timeout=QUIET_TASK)
            await workflow.wait_condition(workflow.all_handlers_finished)
        workflow.continue_as_new(
            CaseInput(
                program=self.program,
                case=self.case,
                seq=self.seq,
                pending=self.pending,
                recent=list(self.recent.values()),
                undelivered=list(self.undelivered.values()),
                generation=GENERATION,  # the next run is started by this code
            )
        )

    # --- staff actions ----------------------------------------------------

    # The update takes plain JSON and parses it here, so a malformed command (typed
    # into the Temporal UI, say) is refused with the field that is wrong rather than
    # an opaque "failed decoding arguments". The update's id is the command's
    # idempotency key: a key this case has applied is answered, never applied again
    # (Temporal de-duplicates within a run; `recent` carries keys across runs).

    @workflow.update
    def act(self, command: dict[str, Any]) -> Receipt:
        key = _update_key()
        if key in self.recent:
            return self._receipt_for_repeat(self.recent[key])
        try:
            event = self._change(parse_command(command))
        except Rejected as refused:  # only if the case changed between validator and handler
            raise ApplicationError(refused.message, type=refused.kind.value, non_retryable=True) from refused
        self.updates += 1
        self.last_update_at_length = workflow.info().get_current_history_length()
        summary, digest = event.describe(), command_digest(command)
        applied = CommandKey(key=key, seq=event.seq, action=event.action, summary=summary, command=digest)
        self._remember(applied)
        return receipt(self.case, event, self.program, key, command=applied.command)

    @act.validator
    def _validate(self, command: dict[str, Any]) -> None:
        if _update_key() in self.recent:
            return  # a retry of a command already applied: answered by the handler
        if self.bounded and _json_size(self.pending) >= bounds.MAX_UNRECORDED_BYTES:
            raise ApplicationError(
                f"case {self.case.number} cannot take commands now: {len(self.pending)} events "
                "are waiting for the record store; try again shortly",
                type=Refusal.UNAVAILABLE.value,
                non_retryable=True,
            )
        try:
            decide(self.case, parse_command(command), self.rules_now, workflow.now(), seq=self.seq + 1)
        except Rejected as refused:
            raise ApplicationError(refused.message, type=refused.kind.value, non_retryable=True) from refused

    @workflow.query
    def view(self) -> CaseView:
        return self._view()

    # --- applying a change ------------------------------------------------

    def _change(self, change: Change) -> Event:
        event = decide(self.case, change, self.program, workflow.now(), seq=self.seq + 1)
        self.case = apply(self.case, event, self.program)
        self.seq = event.seq
        self.pending.append(event)
        self.woken = True
        self._publish()
        return event

    def _patched(self, change: str) -> bool:
        """Whether this run takes `change`, one of the patches TAKES_EVERY_CHANGE folds: every run
        of generation WITHOUT_MARKERS_SINCE or later does, without a marker; an older run asks
        TAKES_EVERY_CHANGE, then the patch itself (the first call decides it for the run, while
        it replays or at its start; then it is remembered). A patch made after it is asked with
        `workflow.patched` itself: runs started between the two lack it."""
        assert change in BEFORE_EVERY_CHANGE, f"{change} is not folded into {TAKES_EVERY_CHANGE}"
        if self.generation >= WITHOUT_MARKERS_SINCE:
            return True
        return workflow.patched(TAKES_EVERY_CHANGE) or workflow.patched(change)

    def _keys_of(self, batch: list[Event]) -> list[AppliedKey]:
        """The keys of the commands that made `batch`'s events, recorded with them (at most
        RECENT_COMMAND_KEYS: bounded whatever the case's age)."""
        first, last = batch[0].seq, batch[-1].seq
        return [
            AppliedKey(key=k.key, seq=k.seq, command=k.command)
            for k in self.recent.values()
            if first <= k.seq <= last
        ]

    def _remember(self, applied: CommandKey) -> None:
        self.recent[applied.key] = applied
        while len(self.recent) > bounds.RECENT_COMMAND_KEYS:
            del self.recent[next(iter(self.recent))]  # the oldest

    def _receipt_for_repeat(self, applied: CommandKey) -> Receipt:
        return Receipt(
            number=self.case.number,
            key=applied.key,
            seq=applied.seq,
            action=applied.action,
            summary=applied.summary,
            stage=self.case.stage,
            next_deadline=next_deadline(self.case, self.program),
            allowed_actions=allowed_actions(self.case),
            repeated=True,
            command=applied.command,
        )

    def _view(self) -> CaseView:
        failing = [m.failing for m in self.undelivered.values() if m.failing is not None]
        return case_view(self.case, self.program, workflow.now(), self.seq, len(self.pending), failing)

    def _publish(self) -> None:
        view = self._view()
        updates = search.case_attributes(self.case, view.next_deadline, bool(view.overdue))
        if self._patched(UPSERT_ONLY_CHANGES):  # decided once per run; then remembered
            slack = search.NEXT_DUE_SLACK if self.generation >= WITHOUT_MARKERS_SINCE else timedelta(0)
            updates = search.changed(updates, workflow.info().typed_search_attributes, slack)
        if updates:
            workflow.upsert_search_attributes(updates)
        workflow.set_current_details(details_markdown(view))


def _backoff_after(attempts: int) -> timedelta:
    """DELIVERY_RETRY's wait after the `attempts`-th failed attempt (1 s doubling to 10 min)."""
    assert DELIVERY_RETRY.maximum_interval is not None
    wait = DELIVERY_RETRY.initial_interval * DELIVERY_RETRY.backoff_coefficient ** max(attempts - 1, 0)
    return min(wait, DELIVERY_RETRY.maximum_interval)


def _round_policy(tried: int, budget: int) -> RetryPolicy:
    """DELIVERY_RETRY for the attempts after the first `tried`, at most `budget` of them."""
    return RetryPolicy(
        initial_interval=_backoff_after(tried + 1),
        backoff_coefficient=DELIVERY_RETRY.backoff_coefficient,
        maximum_interval=DELIVERY_RETRY.maximum_interval,
        maximum_attempts=budget,
        non_retryable_error_types=DELIVERY_RETRY.non_retryable_error_types,
    )


def _failure_detail(failed: ActivityError, gave_up: bool = True) -> str:
    """What went wrong: a channel's own words, else (a timeout, say) that it gave up."""
    cause = failed.cause
    if isinstance(cause, ApplicationError):
        return cause.message
    return f"gave up: {cause or failed}" if gave_up else str(cause or failed)


def _json_size(events: list[Event]) -> int:
    return sum(len(e.model_dump_json()) for e in events)


def _update_key() -> str:
    info = workflow.current_update_info()
    assert info is not None, "called from an update handler or validator"
    return info.id


__all__ = ["CaseInput", "CaseResult", "CaseWorkflow", "CommandKey"]
