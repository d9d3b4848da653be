"""Recording a case to SQL: its events, its current state, and outbox messages.

One activity, one transaction: the events of a batch, the outbox rows their
notices and referrals produce, and the case projection are written together.
Events are keyed by (case number, seq) and outbox rows by an idempotency key,
so a retried activity (worker killed after the commit, before Temporal heard
of it) writes nothing twice.
"""

from __future__ import annotations

import asyncio
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

import structlog
from sqlalchemy import select, update
from sqlalchemy.ext.asyncio import AsyncEngine
from temporalio import activity

from activities.answer_links import AnswerLinks
from activities.contracts import MessageRef, RecordBatch, RecordResult
from activities.failpoints import failpoint
from activities.messages import (
    calendar_cancellation,
    called_off,
    invitation_keys,
    messages_for,
    shown_recipient,
)
from domain.events import Event
from domain.models import Case
from domain.policy import Program
from store.db import insert_ignoring_duplicates, write_together
from store.keys import KeyRing, Opener, Sealer, opened_message, sealed_message
from store.projection import Projector, Written
from store.tables import (
    case_command_keys,
    case_events,
    case_stage_spells,
    outbox,
)

log = structlog.get_logger("casework.records")

# A recording whose oldest event waited this long is logged as a warning: the record is behind
# (down, slow, or the worker short of CPU), not merely busy.
RECORD_BEHIND_WARNING = timedelta(minutes=1)
# At most this many cases' recordings share a transaction (each batch is at most 16 KB).
RECORDINGS_PER_TRANSACTION = 32


def event_row(number: str, event: Event, now: datetime, sealer: Sealer) -> dict[str, Any]:
    return {
        "case_number": number,
        "seq": event.seq,
        "at": event.at,
        "action": event.action,
        "actor_id": event.actor.id,
        "actor_role": event.actor.role.value,
        "stage_before": event.stage_before.value if event.stage_before else None,
        "stage_after": event.stage_after.value,
        "change": sealer.value(event.change.model_dump(mode="json"), "case_events.change"),
        "recorded_at": now,
    }


class CaseRecorder:
    """Activities that need the database; constructed once per worker with its engine."""

    def __init__(
        self,
        engine: AsyncEngine,
        callback_url: str = "",
        links: AnswerLinks | None = None,
        keys: KeyRing | None = None,
        programs: Mapping[str, Program] | None = None,
    ) -> None:
        """`programs`: the worker's own, for batches that do not carry the workflow's program."""
        self.engine, self.callback_url, self.links = engine, callback_url, links
        self.keys = keys if keys is not None else KeyRing(engine, None)
        self.programs = programs or {}
        self.projector = Projector()
        self.turns = RecordingTurns(self)

    @activity.defn(name="record_case_events")
    async def record(self, batch: RecordBatch) -> RecordResult:
        # the key first, outside the transaction: making it writes (SQLite has one writer)
        sealer = await self.keys.sealer(batch.case.number)
        recorded = await self.turns.record(batch, sealer)
        failpoint("record-committed")  # crash tests: committed, but Temporal never hears of it
        # How long the batch's oldest event waited for the record: the record's lag, which staff
        # see as stale lists and a busy worker pays in replays (a full cache evicts the cases
        # whose recording is queued, docs/architecture.md "A worker's memory and throughput").
        # Never below 0: events carry the server's clock, which a time-skipping test server runs ahead.
        events = batch.events
        behind = max(0.0, (recorded.at - events[0].at).total_seconds()) if events else 0.0
        (log.warning if behind >= RECORD_BEHIND_WARNING.total_seconds() else log.info)(
            "recorded case events",
            case=batch.case.number,
            received=len(events),
            new=recorded.new,
            seqs=f"{events[0].seq}-{events[-1].seq}" if events else "",
            behind_s=round(behind, 2),
            together_with=recorded.together - 1,
        )
        # Every message of the batch, new or already written by an earlier try: the workflow
        # delivers each (delivery is idempotent by key).
        return RecordResult(
            new_events=recorded.new,
            messages=[
                MessageRef(
                    key=m["idempotency_key"], kind=m["kind"], event_seq=m["event_seq"], to=shown_recipient(m)
                )
                for m in recorded.messages
            ],
        )

    async def write(self, conn: Any, batch: RecordBatch, sealer: Sealer, now: datetime) -> Recorded:
        """One batch, in a transaction `conn` that may hold other cases' batches too."""
        case = batch.case
        opener = Opener(case.number, sealer.key, erased=False)
        events = [event_row(case.number, e, now, sealer) for e in batch.events]
        messages = [
            m for e in batch.events for m in messages_for(case, e, now, self.callback_url, self.links)
        ]
        new = await insert_ignoring_duplicates(conn, case_events, events, ["case_number", "seq"])
        keys = [
            {"case_number": case.number, "command_key": k.key, "seq": k.seq, "command": k.command}
            for k in batch.keys
        ]
        await insert_ignoring_duplicates(conn, case_command_keys, keys, ["case_number", "command_key"])
        await insert_ignoring_duplicates(
            conn, outbox, [sealed_message(m, sealer) for m in messages], ["idempotency_key"]
        )
        # after the batch's own invitations are written: a visit booked and cancelled in one batch
        cancels = await _calendar_cancellations(conn, case, batch.events, now, opener)
        await insert_ignoring_duplicates(
            conn, outbox, [sealed_message(m, sealer) for m in cancels], ["idempotency_key"]
        )
        await _project_spells(conn, case.number, batch.events)
        written = None
        if batch.events and batch.events[-1].seq == batch.case_seq:  # the batch reaches the case
            program = batch.program or self.programs.get(case.program)
            if program is None:  # the overdue report cannot judge this case (its rows are not written)
                log.warning("no program to judge the case's deadlines by", case=case.number)
            written = await self.projector.write(conn, case, batch.case_seq, now, sealer, program)
        return Recorded(now, new, messages + cancels, written)

    def committed(self, batch: RecordBatch, recorded: Recorded) -> None:
        # the next recording of the case writes only what changed since
        self.projector.remember(batch.case.number, recorded.written)


@dataclass
class Recorded:
    """What recording a batch wrote: `together` batches (this one among them) in one transaction."""

    at: datetime
    new: int
    messages: list[dict[str, Any]]
    written: Written | None
    together: int = 1


@dataclass
class _Waiting:
    batch: RecordBatch
    sealer: Sealer
    recorded: asyncio.Future[Recorded]


class RecordingTurns:
    """Recordings waiting for the record are written together, in one transaction.

    Under load a worker has many recordings in flight (one per busy case), and SQLite has one
    writer: each recording waited its turn, and every turn paid for its transaction, its lock
    and a dozen hops between the event loop and the database's thread, while the loop was busy
    with cases. The record fell seconds behind the answers (bench/README.md). Here the first
    recording to find nobody writing starts a writer that takes every recording waiting (up to
    RECORDINGS_PER_TRANSACTION, at most one per case) into one transaction, then the next ones,
    until none wait. If a group's transaction fails, each of its recordings is tried alone, so
    one bad batch fails only its own activity (Temporal retries it)."""

    def __init__(self, recorder: CaseRecorder) -> None:
        self.recorder = recorder
        self.waiting: list[_Waiting] = []
        self.writer: asyncio.Task[None] | None = None

    async def record(self, batch: RecordBatch, sealer: Sealer) -> Recorded:
        waiting = _Waiting(batch, sealer, asyncio.get_running_loop().create_future())
        self.waiting.append(waiting)
        if self.writer is None or self.writer.done():
            # A task of its own: an activity cancelled while its group is written (a timeout)
            # must not cancel the others'.
            self.writer = asyncio.create_task(self._write_while_waiting())
        return await waiting.recorded

    async def _write_while_waiting(self) -> None:
        try:
            while self.waiting:
                await self._write(self._next_group())
        finally:  # stopped (the worker shutting down): nobody is left waiting for ever
            for left in self.waiting:
                if not left.recorded.done():
                    left.recorded.set_exception(RuntimeError("the worker stopped before recording"))
            self.waiting.clear()

    def _next_group(self) -> list[_Waiting]:
        """The oldest waiting recordings, at most one per case (a case's batches stay in order)."""
        group: list[_Waiting] = []
        cases: set[str] = set()
        for waiting in list(self.waiting):
            if len(group) == RECORDINGS_PER_TRANSACTION:
                break
            if waiting.recorded.done():  # its activity gave up (timed out, cancelled)
                self.waiting.remove(waiting)
            elif waiting.batch.case.number not in cases:
                cases.add(waiting.batch.case.number)
                group.append(waiting)
                self.waiting.remove(waiting)
        return group

    async def _write(self, group: list[_Waiting]) -> None:
        if not group:
            return
        try:
            now = datetime.now(UTC)

            async def every_batch(conn: Any) -> list[Recorded]:
                return [await self.recorder.write(conn, w.batch, w.sealer, now) for w in group]

            done = await write_together(self.recorder.engine, every_batch)
        except asyncio.CancelledError:  # the writer stopped mid-group: its recordings are not written
            for waiting in group:
                if not waiting.recorded.done():
                    waiting.recorded.set_exception(RuntimeError("the worker stopped before recording"))
            raise
        except Exception as failed:
            if len(group) == 1:
                if not group[0].recorded.done():
                    group[0].recorded.set_exception(failed)
                return
            for alone in group:  # find the one that failed; the others are written
                await self._write([alone])
            return
        for waiting, recorded in zip(group, done, strict=True):
            self.recorder.committed(waiting.batch, recorded)
            recorded.together = len(group)
            if not waiting.recorded.done():
                waiting.recorded.set_result(recorded)


async def _calendar_cancellations(
    conn: Any, case: Case, events: list[Event], now: datetime, opener: Opener
) -> list[dict[str, Any]]:
    """A calendar CANCEL for every invitation sent for the follow-ups an event called off
    (cancelled or rescheduled): the outbox says who was invited (consent may have changed since)."""
    rows = []
    for event in events:
        keys = [key for follow_up in called_off(event) for key in invitation_keys(case, follow_up)]
        if not keys:
            continue
        sent = await conn.execute(
            select(outbox).where(outbox.c.idempotency_key.in_(keys)).order_by(outbox.c.idempotency_key)
        )
        base = {"case_number": case.number, "event_seq": event.seq, "status": "pending", "attempts": 0}
        rows += [
            base
            | {"created_at": now, "level": 0, "payload": None}
            | calendar_cancellation(opened_message(dict(invitation._mapping), opener), event, now)
            for invitation in sent
        ]
    return rows


def _moves(event: Event) -> bool:
    """Whether the event put the case in a stage (the opening, or a change of stage)."""
    return event.stage_before is None or event.stage_before != event.stage_after


async def _project_spells(conn: Any, number: str, events: list[Event]) -> None:
    """The case's stays in each stage that the batch's moves begin and end: the stay it was in
    ends at the first move, and each move begins one. Two statements for a batch that moves the
    case, whatever its age (this used to read every move the case ever made and rewrite all its
    stays). A retried batch changes nothing: its stays are there (inserted once, by key), and
    the stay before it already ended. The workflow records a case's batches one after another,
    so a batch never lands before one it precedes."""
    moves = [e for e in events if _moves(e)]
    if not moves:
        return
    s = case_stage_spells
    first = _aware(moves[0].at)
    ended = (s.c.case_number == number) & (s.c.seq < moves[0].seq) & s.c.left_at.is_(None)
    await conn.execute(
        update(s).where(ended).values(left_at=first, days=(first.timestamp() - s.c.entered_epoch) / 86400.0)
    )
    spells = []
    for move, after in zip(moves, [*moves[1:], None], strict=True):
        entered, left = _aware(move.at), _aware(after.at) if after else None
        spells.append(
            {
                "case_number": number,
                "seq": move.seq,
                "stage": move.stage_after.value,
                "entered_at": entered,
                "left_at": left,
                "entered_epoch": entered.timestamp(),
                "days": (left - entered).total_seconds() / 86400 if left else None,
            }
        )
    await insert_ignoring_duplicates(conn, s, spells, ["case_number", "seq"])


def _aware(at: datetime) -> datetime:
    """An event's time is UTC (the workflow's clock); one made without its zone is taken as UTC."""
    return at if at.tzinfo else at.replace(tzinfo=UTC)
