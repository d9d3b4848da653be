"""CaseOps: the one way the CLI (and later the HTTP API) reach cases in Temporal.

Every error a person can cause comes out as a CaseError with a kind (a `Refusal`,
domain/errors.py) and a message saying what to do, never a stack trace. The rules
themselves are the domain's: who may open (domain/access.py), whether a referral fits
the provider directory (domain/directory.py), what may happen now (domain/lifecycle.py).
"""

from __future__ import annotations

import asyncio
import hashlib
import secrets
from collections.abc import Awaitable, Callable, Mapping
from contextlib import AbstractContextManager
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

from sqlalchemy import and_, select
from sqlalchemy.ext.asyncio import AsyncEngine
from temporalio.api.common.v1 import WorkflowExecution as ExecutionRef
from temporalio.api.workflowservice.v1 import DescribeWorkflowExecutionRequest
from temporalio.client import (
    Client,
    WorkflowExecutionStatus,
    WorkflowHandle,
    WorkflowQueryFailedError,
    WorkflowUpdateFailedError,
    WorkflowUpdateRPCTimeoutOrCancelledError,
)
from temporalio.common import (
    TypedSearchAttributes,
    WorkflowIDConflictPolicy,
    WorkflowIDReusePolicy,
)
from temporalio.exceptions import ApplicationError, WorkflowAlreadyStartedError
from temporalio.service import RPCError, RPCStatusCode

from config.codec import key_ring_of
from config.settings import Settings
from config.temporal import actor_keys
from domain import bounds
from domain.access import may_open, not_staff_for, why_case_would_be_unseen
from domain.case import apply_open, decide, intake_conflict
from domain.commands import (
    OpenCase,
    Refer,
    StaffCommand,
    Transfer,
    command_digest,
    door_problem,
    new_command_key,
)
from domain.directory import Directory
from domain.errors import Refusal, Rejected
from domain.events import ALL_CHANGES, ErasedChange, Event, Restore
from domain.models import Actor, Case, Note, erased_case
from domain.policy import Program
from domain.schedule import next_deadline, overdue
from domain.views import CaseView, Receipt, WorkflowStatus, case_view
from domain.vocabulary import STOCK
from service.identity import acting, signing
from service.refusals import CaseError
from store.keys import ClientErased, KeyRing, Opener
from store.tables import case_command_keys, case_events, cases
from workflows import search
from workflows.case import GENERATION, CaseInput, CaseWorkflow
from workflows.contracts import CommandKey
from workflows.identity import ActorKeys


def refusal_named(failure_type: str | None) -> Refusal:
    """The refusal a workflow's ApplicationError names by its type. Casework sets a Refusal's
    value on every failure it raises; anything else is read as "not allowed now", as before."""
    try:
        return Refusal(failure_type or Refusal.INVALID_TRANSITION)
    except ValueError:
        return Refusal.INVALID_TRANSITION


# How long a staff command waits for a worker to take it before the caller is told.
COMMAND_TIMEOUT = timedelta(seconds=10)

STATUS_NAMES: dict[WorkflowExecutionStatus, WorkflowStatus] = {
    WorkflowExecutionStatus.RUNNING: "running",
    WorkflowExecutionStatus.COMPLETED: "archived",
    WorkflowExecutionStatus.TERMINATED: "terminated",
    WorkflowExecutionStatus.FAILED: "failed",
    WorkflowExecutionStatus.TIMED_OUT: "timed_out",
    WorkflowExecutionStatus.CANCELED: "canceled",
}

# Actions whose events may carry what a person wrote (a note, reason or summary).
NOTED = tuple(
    action
    for action, fields in ((t.model_fields["action"].default, t.model_fields) for t in ALL_CHANGES)
    if any(name in fields for name in ("text", "note", "summary", "reason", "notes"))
)


def not_running_message(number: str, status: WorkflowStatus) -> str:
    if status == "archived":
        return f"case {number} is archived: its reopen window has passed"
    if status == "erased":
        return f"case {number} is closed and its client's data was erased: only its facts remain"
    what = {"lost": "is gone from Temporal", "timed_out": "timed out"}.get(status, f"was {status}")
    return (
        f"case {number} is not running: its workflow {what}. The record keeps the case; "
        f"a supervisor can start it again with `casework restore {number}`"
    )


# What an Event is read from (its actor and action are in clear: what is left of an erased one).
EVENT_COLUMNS = (
    case_events.c.seq,
    case_events.c.at,
    case_events.c.stage_before,
    case_events.c.stage_after,
    case_events.c.change,
    case_events.c.action,
    case_events.c.actor_id,
    case_events.c.actor_role,
)


def event_from_row(row: Any, opener: Opener) -> Event:
    """An event as the record keeps it, its change opened with the client's key; an erased
    client's event says what was done, by whom and when, and no more (SQLite hands back times
    without their UTC zone)."""
    at = row["at"] if row["at"].tzinfo else row["at"].replace(tzinfo=UTC)
    fields = {name: row[name] for name in ("seq", "stage_before", "stage_after")} | {"at": at}
    try:
        return Event.model_validate(fields | {"change": opener.value(row["change"], "case_events.change")})
    except ClientErased:
        actor = Actor(id=row["actor_id"], role=row["actor_role"])
        return Event.model_validate(fields | {"change": ErasedChange(actor=actor, was=row["action"])})


# The most a page of a case's history holds, whatever the caller asks (the API's own limits).
MAX_EVENTS_PAGE = 500
MAX_NOTES_PAGE = 200
NOTE_READS = 10  # reads of events a page of notes makes at most (see CaseOps.notes)


@dataclass(frozen=True)
class Notes:
    """A page of a case's notes: (seq, note) pairs, newest first."""

    found: list[tuple[int, Note]]
    next_before: int | None  # pass as `before` for older notes; None: there are none


def named_case_number(prefix: str, name: str) -> str:
    """The case number an opening's name gives it: an intake reference (I-), or an idempotency key
    (K-: the caller's, prefixed with their id). The same name always names the same case, so a
    retried open never opens a second one."""
    return f"{prefix}-" + hashlib.sha256(name.encode()).hexdigest()[:10].upper()


def new_case_number(now: datetime) -> str:
    """Short, unguessable, sortable by day: 261125-7KQ2."""
    return f"{now:%y%m%d}-{secrets.token_hex(2).upper()}"


class CaseOps:
    def __init__(
        self,
        client: Client,
        programs: dict[str, Program],
        task_queue: str,
        directory: Directory | None = None,
        record: AsyncEngine | None = None,
        command_timeout: timedelta = COMMAND_TIMEOUT,
        keys: ActorKeys | None = None,
        clock: Callable[[], Awaitable[datetime]] | None = None,
        data_keys: KeyRing | None = None,
        staff: Mapping[str, Actor] | None = None,
    ) -> None:
        self.client, self.programs, self.task_queue = signing(client), programs, task_queue
        # clients' data keys: the record's personal fields are sealed with them (store/keys.py)
        self.data_keys = data_keys
        if data_keys is None and record is not None:
            self.data_keys = key_ring_of(client, record)
        self.keys = keys if keys is not None else actor_keys(Settings())
        # Temporal's time, which signed actors are checked against (a test server's clock skips)
        self.clock = clock or _wall_clock
        self.directory, self.command_timeout = directory, command_timeout
        self.record = record  # the SQL record: cases stay readable after Temporal forgets them
        # the people casework knows, by id (from the API keys): a case's manager and supervisor
        # are checked against them; None (tests, operator tools) checks nobody
        self.staff = staff

    def program(self, key: str) -> Program:
        try:
            return self.programs[key]
        except KeyError:
            known = ", ".join(sorted(self.programs))
            raise CaseError(Refusal.VALIDATION, f"unknown program {key!r} (known: {known})") from None

    async def open_case(self, command: OpenCase, key: str | None = None) -> CaseView:
        """Open a case. With an intake reference, or else an idempotency key (`key`: the caller's,
        prefixed with their id), the case number comes from it, and a repeated request returns
        the case it opened before (its `opening_request` tells which request)."""
        if refusal := may_open(command.actor, command.manager):
            raise CaseError(Refusal.FORBIDDEN, refusal)
        if unlikely := command.client.unlikely_details(utcnow().date()):
            raise CaseError(Refusal.VALIDATION, unlikely)
        program = self.program(command.program)
        if self.staff is not None and (
            unseen := why_case_would_be_unseen(command.manager, command.supervisor, program, self.staff)
        ):
            raise CaseError(Refusal.VALIDATION, unseen)
        if command.request_id is None:  # to tell this request's case from one opened before
            command = command.model_copy(update={"request_id": new_command_key()})
        if command.intake_reference:
            command = command.model_copy(update={"number": named_case_number("I", command.intake_reference)})
        elif key:
            command = command.model_copy(update={"number": named_case_number("K", key)})
        conflict_uses_it = bool(command.intake_reference or key)  # a named case: a retry finds it
        conflict = (
            WorkflowIDConflictPolicy.USE_EXISTING if conflict_uses_it else WorkflowIDConflictPolicy.FAIL
        )
        try:
            with await self._acting(command.actor, command.number):
                handle = await self.client.start_workflow(
                    CaseWorkflow.run,
                    CaseInput(program=program, opening=command, generation=GENERATION),
                    id=search.workflow_id(command.number),
                    task_queue=self.task_queue,
                    id_reuse_policy=WorkflowIDReusePolicy.REJECT_DUPLICATE,
                    id_conflict_policy=conflict,
                    search_attributes=starting_attributes(apply_open(command, utcnow()), program),
                    static_summary=f"Case {command.number} · {program.name}",
                )
        except WorkflowAlreadyStartedError:
            # a number chosen at random, taken; or one named by a reference or key whose case has
            # ended since (a running one is answered above: USE_EXISTING)
            named_by = (
                f"intake reference {command.intake_reference}" if command.intake_reference else "this key"
            )
            ended = f": {named_by} opened it before, and it is no longer running" if conflict_uses_it else ""
            raise CaseError(Refusal.CONFLICT, f"case {command.number} already exists{ended}") from None
        try:
            view = await self._view(handle, command.number)
        except CaseError as unanswered:
            if unanswered.kind is not Refusal.UNAVAILABLE:
                raise
            # Temporal has the case: opening it again would make a second one
            raise CaseError(
                Refusal.UNAVAILABLE,
                f"case {command.number} is opened, but no worker has taken it within "
                f"{self.command_timeout.seconds} s: it is ready once a worker runs (casework show "
                f"{command.number}). Do not open it again.",
                key=key,
            ) from None
        if view.case.opening_request != command.request_id and (
            refusal := intake_conflict(view.case, command)
        ):
            raise CaseError(Refusal.CONFLICT, refusal)
        return view

    def _checked(self, command: StaffCommand) -> StaffCommand:
        """The command in the deployment's vocabulary (aliases become slugs) and, for a referral,
        fitting the directory; what cannot be meant refused (domain.commands.door_problem). Cases
        accept any slug: this is where the vocabulary is kept."""
        moved_to = command.to_manager if isinstance(command, Transfer) else None
        if (
            moved_to
            and self.staff is not None
            and (refusal := not_staff_for(moved_to, "new manager", self.staff))
        ):
            raise Rejected(Refusal.VALIDATION, f"to_manager: {refusal}")
        vocabulary = self.directory.vocabulary if self.directory is not None else STOCK
        command = vocabulary.check_command(command)
        if problem := door_problem(command):  # after the vocabulary: an alias and its slug are one need
            raise Rejected(Refusal.VALIDATION, problem)
        if isinstance(command, Refer) and self.directory is not None:
            command = self.directory.check_referral(command)
        return command

    async def act(
        self, number: str, command: StaffCommand, key: str | None = None, new_key: bool = False
    ) -> Receipt:
        """Apply a staff command once. `key` is its idempotency key (a fresh one if None): sent
        again with the same key, the command is answered with the first result, never applied
        twice (the receipt says `repeated`). If no worker takes it within `command_timeout`,
        CaseError UNAVAILABLE says so and that retrying with the same key is safe (the command
        may still apply meanwhile). `new_key`: the caller made `key` just now (nothing was sent
        with it before: no need to ask Temporal for an earlier answer)."""
        sent_before, key = key is not None and not new_key, key or new_command_key()
        try:  # before Temporal: a referral to no one, a need no one knows, must not wait for a worker
            command = self._checked(command)
        except Rejected as refused:
            raise CaseError.rejected(refused) from None
        handle = self._handle(number)
        sent = command.model_dump(mode="json")
        try:
            with await self._acting(command.actor, number):
                timeout = self.command_timeout
                done = await self._answered_before(handle, key) if sent_before else None
                if done is None:
                    done = await handle.execute_update(CaseWorkflow.act, sent, id=key, rpc_timeout=timeout)
        except WorkflowUpdateRPCTimeoutOrCancelledError:
            raise CaseError(
                Refusal.UNAVAILABLE,
                f"case {number}: no worker took the command within {self.command_timeout.seconds} s. "
                "It is kept and applies when a worker returns; retrying with the same idempotency "
                "key is safe: it applies once.",
                key=key,
            ) from None
        except WorkflowUpdateFailedError as exc:
            cause = exc.cause
            if isinstance(cause, ApplicationError):
                raise CaseError(refusal_named(cause.type), cause.message, key=key) from None
            raise await self._not_running(number) or CaseError(
                Refusal.UNAVAILABLE, str(cause or exc)
            ) from None
        except RPCError as exc:
            raise await self._not_running(number) or self._rpc_error(number, exc) from None
        except ClientErased:  # the command cannot even be sealed: the client's key is gone
            raise CaseError(Refusal.CLOSED, not_running_message(number, "erased")) from None
        if done.command is not None and done.command != command_digest(sent):
            # Temporal answers a key it has seen with that update's result, whatever was sent
            raise CaseError(
                Refusal.CONFLICT,
                f"case {number}: this idempotency key was used for another command "
                f"({done.summary.strip()}); this one was not applied: send it with a new key",
                key=key,
            )
        return done

    async def _answered_before(self, handle: WorkflowHandle[Any, Any], key: str) -> Receipt | None:
        """The answer the case's run gave a command sent before with `key`, marked `repeated`;
        None if the run has not taken it. Temporal answers an update id it has seen with the
        first answer as it was, so without this a retry could not tell its caller that it applied
        nothing. Only for keys the caller chose (a fresh key was never sent): a read, one round
        trip. A key from an earlier run of the case is not Temporal's to know: the workflow
        carries its keys across continue-as-new and answers those as repeats itself."""
        earlier = handle.get_update_handle(key, result_type=Receipt)
        try:
            answer: Receipt = await earlier.result(rpc_timeout=self.command_timeout)
        except (RPCError, WorkflowUpdateFailedError):
            # not seen (NOT_FOUND); or refused, and sending it again is answered with the same
            # refusal, told the usual way. A command still waiting for a worker times out above.
            return None
        return answer.model_copy(update={"repeated": True})

    async def _acting(self, actor: Actor, number: str) -> AbstractContextManager[None]:
        """Sign who acts on this case for the Temporal call made inside (workflows/identity.py)."""
        if not self.keys.keys:
            raise CaseError(
                Refusal.UNAVAILABLE,
                "no actor key is configured (CASEWORK_ACTOR_KEY): casework cannot sign commands",
            )
        return acting(self.keys, actor, number, await self.clock())

    async def status(self, number: str) -> WorkflowStatus | None:
        """What Temporal says of the case's workflow; "lost" if it has none but the record has
        the case, None if neither knows it; "erased" once the client's data was erased."""
        if await self._erased(number):
            return "erased"
        try:
            status = await workflow_status(self.client, search.workflow_id(number))
        except RuntimeError as exc:  # a client that cannot (re)connect
            raise CaseError(Refusal.UNAVAILABLE, f"Temporal cannot be reached ({exc})") from None
        except RPCError as exc:  # the server gave up on the request (busy, restarting): say so, never a 500
            raise CaseError(
                Refusal.UNAVAILABLE, f"Temporal did not answer for case {number} ({exc.message}); try again"
            ) from None
        if status is None:
            return "lost" if await self.recorded_case(number) is not None else None
        return STATUS_NAMES.get(status, "running")

    async def _not_running(self, number: str) -> CaseError | None:
        """Why a command could not reach the case, if its workflow no longer runs."""
        status = await self.status(number)
        if status is None:
            return CaseError(Refusal.NOT_FOUND, f"no case {number}")
        if status == "running":
            return None
        return CaseError(
            Refusal.CLOSED if status in ("archived", "erased") else Refusal.NOT_RUNNING,
            not_running_message(number, status),
        )

    async def view(self, number: str) -> CaseView:
        """The case as its workflow has it, with `status` saying whether Temporal still runs
        it (archived, terminated, failed, lost ...). A closed workflow is read from its history
        while Temporal keeps it, and from the SQL record after that."""
        status = await self.status(number)
        if status is None:
            raise CaseError(Refusal.NOT_FOUND, f"no case {number}")
        if status == "erased":  # the record's facts: nothing of the client can be read, or done
            found = await self.recorded_view(number)
            assert found is not None
            return idle(found, status)
        try:
            view = await self._view(self._handle(number), number)
        except CaseError as exc:
            if status == "running" or exc.kind not in (Refusal.NOT_FOUND, Refusal.UNAVAILABLE):
                raise
            if (recorded := await self.recorded_view(number)) is None:
                raise
            view = recorded
        return view if status == "running" else idle(view, status)

    async def recorded_case(self, number: str) -> tuple[Case, int] | None:
        """The case's live state as last recorded, and the seq of that event. An erased client's
        case is its facts alone (domain.models.erased_case)."""
        if self.record is None:
            return None
        async with self.record.connect() as conn:
            row = (await conn.execute(select(cases).where(cases.c.number == number))).one_or_none()
        if row is None:
            return None
        try:
            opener = await self._keys().opener(number)
            return Case.model_validate(opener.value(row.state, "cases.state")), row.last_seq
        except ClientErased:
            return erased_case(dict(row._mapping)), row.last_seq

    async def _erased(self, number: str) -> bool:
        if self.record is None:
            return False
        async with self.record.connect() as conn:
            found = await conn.execute(select(cases.c.erased_at).where(cases.c.number == number))
            row = found.one_or_none()
        return row is not None and row.erased_at is not None

    def data_keys_for_record(self) -> KeyRing:
        """The key ring the record's sealed fields open with."""
        if self.data_keys is None:
            self.data_keys = KeyRing(self.record_engine(), None)
        return self.data_keys

    _keys = data_keys_for_record

    async def recorded_view(self, number: str) -> CaseView | None:
        """The case as the SQL record has it, once its workflow is gone."""
        found = await self.recorded_case(number)
        if found is None:
            return None
        case, seq = found
        view = case_view(case, self.program(case.program), utcnow(), seq)
        return view.model_copy(update={"status": "archived"})

    async def events(self, number: str, after: int = 0, limit: int = 100) -> list[Event]:
        """A page of the case's events from the SQL record, oldest first, with seq > `after`
        (at most MAX_EVENTS_PAGE: the primary key's order, read from `after` on)."""
        async with self.record_engine().connect() as conn:
            rows = await conn.execute(
                select(*EVENT_COLUMNS)
                .where(case_events.c.case_number == number, case_events.c.seq > after)
                .order_by(case_events.c.seq)
                .limit(max(1, min(limit, MAX_EVENTS_PAGE)))
            )
        opener = await self._keys().opener(number)
        return [event_from_row(r._mapping, opener) for r in rows]

    async def notes(self, number: str, before: int | None = None, limit: int = 20) -> Notes:
        """The case's notes (what people wrote with its events), newest first, from events with
        seq < `before`: (seq, note) pairs (at most MAX_NOTES_PAGE), and where the next page starts.

        An event that may carry words can carry none (an accept without a note), so the page reads
        on, `limit` events at a time along the primary key, until it has its notes; but at most
        NOTE_READS times, then it ends short, with `next_before` where it stopped."""
        limit = max(1, min(limit, MAX_NOTES_PAGE))
        found: list[tuple[int, Note]] = []
        opener = await self._keys().opener(number)
        async with self.record_engine().connect() as conn:
            for _ in range(NOTE_READS):
                query = select(*EVENT_COLUMNS).where(
                    case_events.c.case_number == number, case_events.c.action.in_(NOTED)
                )
                if before is not None:
                    query = query.where(case_events.c.seq < before)
                rows = list(await conn.execute(query.order_by(case_events.c.seq.desc()).limit(limit)))
                for row in rows:
                    if (note := event_from_row(row._mapping, opener).note()) is not None:
                        found.append((row.seq, note))
                        if len(found) == limit:
                            return Notes(found, next_before=row.seq)
                if len(rows) < limit:
                    return Notes(found, next_before=None)
                before = rows[-1].seq
        return Notes(found, next_before=before)

    async def restore(self, number: str, actor: Actor, reason: str) -> CaseView:
        """Start a lost case's workflow again from the SQL record: same number, stage, deadlines
        and ladder, and a `restore` event saying who and why. Only when Temporal no longer runs
        it and its reopen window has not passed; Temporal's reuse policy allows a new run only
        after a failed, terminated, timed-out or canceled one (or none at all)."""
        status = await self.status(number)
        if status is None:
            raise CaseError(Refusal.NOT_FOUND, f"no case {number}")
        if status == "running":
            raise CaseError(Refusal.CONFLICT, f"case {number} is running: there is nothing to restore")
        if status in ("archived", "erased"):
            raise CaseError(Refusal.CLOSED, not_running_message(number, status))
        recorded = await self.recorded_case(number)
        assert recorded is not None, "a case Temporal lost is known from the record"
        case, seq = recorded
        program = self.program(case.program)
        restore = Restore(actor=actor, reason=reason, from_seq=seq, lost_status=status)
        try:  # the domain decides who may restore (and says why not) before anything starts
            decide(case, restore, program, utcnow(), seq=seq + 1)
        except Rejected as refused:
            raise CaseError.rejected(refused) from None
        recent = await self._recorded_keys(number)
        try:
            with await self._acting(actor, number):
                handle = await self.client.start_workflow(
                    CaseWorkflow.run,
                    CaseInput(
                        program=program,
                        case=case,
                        seq=seq,
                        restore=restore,
                        generation=GENERATION,
                        recent=recent,
                    ),
                    id=search.workflow_id(number),
                    task_queue=self.task_queue,
                    id_reuse_policy=WorkflowIDReusePolicy.ALLOW_DUPLICATE_FAILED_ONLY,
                    id_conflict_policy=WorkflowIDConflictPolicy.FAIL,
                    search_attributes=starting_attributes(case, program),
                    static_summary=f"Case {number} · {program.name} (restored)",
                )
        except WorkflowAlreadyStartedError:
            raise CaseError(Refusal.CONFLICT, f"case {number} was started again meanwhile") from None
        return await self._view(handle, number)

    async def _recorded_keys(self, number: str) -> list[CommandKey]:
        """The keys of the case's last RECENT_COMMAND_KEYS staff commands, as the record has them
        (oldest first, as a run keeps them): the restored run answers a retry of each as done."""
        k, e = case_command_keys, case_events
        async with self.record_engine().connect() as conn:
            rows = (
                await conn.execute(
                    select(
                        k.c.command_key,
                        k.c.seq,
                        k.c.command,
                        e.c.action,
                        e.c.actor_id,
                        e.c.actor_role,
                        e.c.stage_after,
                    )
                    .join(e, and_(e.c.case_number == k.c.case_number, e.c.seq == k.c.seq))
                    .where(k.c.case_number == number)
                    .order_by(k.c.seq.desc())
                    .limit(bounds.RECENT_COMMAND_KEYS)
                )
            ).all()
        # the summary as Event.describe words it, from the record's clear columns
        return [
            CommandKey(
                key=r.command_key,
                seq=r.seq,
                action=r.action,
                summary=f"#{r.seq} {r.action} by {r.actor_id} ({r.actor_role}) [{r.stage_after}]",
                command=r.command,
            )
            for r in reversed(rows)
        ]

    def record_engine(self) -> AsyncEngine:
        if self.record is None:
            raise CaseError(Refusal.UNAVAILABLE, "no record store is configured (CASEWORK_DATABASE_URL)")
        return self.record

    def _handle(self, number: str) -> WorkflowHandle[Any, Any]:
        return self.client.get_workflow_handle_for(CaseWorkflow.run, search.workflow_id(number))

    async def _view(self, handle: WorkflowHandle[Any, Any], number: str) -> CaseView:
        try:
            return await handle.query(CaseWorkflow.view, rpc_timeout=self.command_timeout)
        except WorkflowQueryFailedError as exc:
            raise CaseError(Refusal.UNAVAILABLE, f"case {number} could not be read: {exc}") from None
        except RPCError as exc:
            raise self._rpc_error(number, exc) from None
        except (KeyError, RuntimeError) as exc:  # the converter meets a payload it cannot read
            if "binary/encrypted" in str(exc):
                raise CaseError(
                    Refusal.UNAVAILABLE,
                    f"case {number} is encrypted: set CASEWORK_PAYLOAD_KEY to the key the workers use",
                ) from None
            raise

    def _rpc_error(self, number: str, exc: RPCError) -> CaseError:
        if exc.status is RPCStatusCode.NOT_FOUND:
            return CaseError(Refusal.NOT_FOUND, f"no case {number}")
        if exc.status in (RPCStatusCode.DEADLINE_EXCEEDED, RPCStatusCode.CANCELLED):
            wait = self.command_timeout.seconds
            return CaseError(
                Refusal.UNAVAILABLE, f"case {number}: no worker answered within {wait} s; try again"
            )
        return CaseError(Refusal.UNAVAILABLE, f"case {number}: {exc.message}")


def idle(view: CaseView, status: WorkflowStatus) -> CaseView:
    """A case nothing runs: it takes no command and does nothing at its next action. A lost
    one's deadlines still stand (a restore resumes them); an archived or erased one owes nothing."""
    update: dict[str, Any] = {"status": status, "allowed_actions": [], "next_action": None}
    if status in ("archived", "erased"):
        update |= {"next_deadline": None, "overdue": []}
    return view.model_copy(update=update)


def starting_attributes(case: Case, program: Program) -> TypedSearchAttributes:
    """The search attributes a case's workflow starts with: those it would publish itself
    (it keeps them current; starting with all of them, its first task has none to upsert)."""
    due, late = next_deadline(case, program), overdue(case, program, utcnow())
    return search.starting_attributes(search.case_attributes(case, due, bool(late)))


# A describe the server gave up on is asked again before the caller is told to try again: it is
# a read, and the next one answers. Seen in the full suite from a dev server that had run for a
# quarter of an hour: a describe of a case the fuzzer had just opened came back CANCELLED
# ("operation was canceled", the server's own word for an internal call it dropped) and the API
# answered 503; UNAVAILABLE is a server restarting.
DESCRIBE_AGAIN_AFTER = (0.1, 0.4)  # seconds before the second and the third try
TRANSIENT = (RPCStatusCode.CANCELLED, RPCStatusCode.UNAVAILABLE)


async def workflow_status(client: Client, workflow_id: str) -> WorkflowExecutionStatus | None:
    """A workflow's status, or None if Temporal has no such workflow. Reads the raw
    description: decoding search attributes is not needed here (and the time-skipping
    test server returns unset datetime attributes in a form the SDK cannot decode)."""
    for wait in DESCRIBE_AGAIN_AFTER:
        try:
            return await _described_status(client, workflow_id)
        except RPCError as exc:
            if exc.status not in TRANSIENT:
                raise
        await asyncio.sleep(wait)
    return await _described_status(client, workflow_id)


async def _described_status(client: Client, workflow_id: str) -> WorkflowExecutionStatus | None:
    request = DescribeWorkflowExecutionRequest(
        namespace=client.namespace, execution=ExecutionRef(workflow_id=workflow_id)
    )
    try:
        described = await client.workflow_service.describe_workflow_execution(request)
    except RPCError as exc:
        if exc.status is RPCStatusCode.NOT_FOUND:
            return None
        raise
    return WorkflowExecutionStatus(described.workflow_execution_info.status)


def utcnow() -> datetime:
    return datetime.now(UTC)


async def _wall_clock() -> datetime:
    return utcnow()
