"""Recording a case to SQL: its events, its current state, and outbox messages.

One activity, one transaction: the events of a batch, the outbox rows their
notices and referrals produce, and the case projection are written together.
Events are keyed by (case number, seq) and outbox rows by an idempotency key,
so a retried activity (worker killed after the commit, before Temporal heard
of it) writes nothing twice.
"""

from __future__ import annotations

from collections.abc import Mapping
from datetime import UTC, datetime, timedelta
from typing import Any

import structlog
from sqlalchemy import delete, insert, select
from sqlalchemy.ext.asyncio import AsyncEngine
from temporalio import activity

from activities.answer_links import AnswerLinks
from activities.contracts import MessageRef, RecordBatch, RecordResult
from activities.failpoints import failpoint
from activities.messages import calendar_cancellation, invitation_keys, messages_for, shown_recipient
from domain.events import Event
from domain.models import Case
from domain.policy import Program
from store.db import insert_ignoring_duplicates, writing
from store.keys import KeyRing, Opener, Sealer, opened_message, sealed_message
from store.projection import Projector
from store.tables import (
    case_events,
    case_stage_spells,
    outbox,
)

log = structlog.get_logger("casework.records")

# A recording whose oldest event waited this long is logged as a warning: the record is behind
# (down, slow, or the worker short of CPU), not merely busy.
RECORD_BEHIND_WARNING = timedelta(minutes=1)


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

    @activity.defn(name="record_case_events")
    async def record(self, batch: RecordBatch) -> RecordResult:
        now = datetime.now(UTC)
        case = batch.case
        # the key first, outside the transaction: making it writes (SQLite has one writer)
        sealer = await self.keys.sealer(case.number)
        opener = Opener(case.number, sealer.key, erased=False)
        events = [event_row(case.number, e, now, sealer) for e in batch.events]
        messages = [
            m for e in batch.events for m in messages_for(case, e, now, self.callback_url, self.links)
        ]
        async with writing(self.engine) as conn:
            new = await insert_ignoring_duplicates(conn, case_events, events, ["case_number", "seq"])
            await insert_ignoring_duplicates(
                conn, outbox, [sealed_message(m, sealer) for m in messages], ["idempotency_key"]
            )
            # after the batch's own invitations are written: a visit booked and cancelled in one batch
            cancels = await _calendar_cancellations(conn, case, batch.events, now, opener)
            await insert_ignoring_duplicates(
                conn, outbox, [sealed_message(m, sealer) for m in cancels], ["idempotency_key"]
            )
            messages += cancels
            if any(_moves(e) for e in batch.events):
                await _project_spells(conn, case.number)
            written = None
            if batch.events and batch.events[-1].seq == batch.case_seq:  # the batch reaches the case
                program = batch.program or self.programs.get(case.program)
                if program is None:  # the overdue report cannot judge this case (its rows are not written)
                    log.warning("no program to judge the case's deadlines by", case=case.number)
                written = await self.projector.write(conn, case, batch.case_seq, now, sealer, program)
        self.projector.remember(case.number, written)  # committed: the next recording writes what changes
        failpoint("record-committed")  # crash tests: committed, but Temporal never hears of it
        # How long the batch's oldest event waited for the record: the record's lag, which staff
        # see as stale lists and a busy worker pays in replays (a full cache evicts the cases
        # whose recording is queued, docs/architecture.md "A worker's memory and throughput").
        # Never below 0: events carry the server's clock, which a time-skipping test server runs ahead.
        behind = max(0.0, (now - batch.events[0].at).total_seconds()) if batch.events else 0.0
        (log.warning if behind >= RECORD_BEHIND_WARNING.total_seconds() else log.info)(
            "recorded case events",
            case=case.number,
            received=len(events),
            new=new,
            seqs=f"{batch.events[0].seq}-{batch.events[-1].seq}" if batch.events else "",
            behind_s=round(behind, 2),
        )
        # Every message of the batch, new or already written by an earlier try: the workflow
        # delivers each (delivery is idempotent by key).
        return RecordResult(
            new_events=new,
            messages=[
                MessageRef(
                    key=m["idempotency_key"], kind=m["kind"], event_seq=m["event_seq"], to=shown_recipient(m)
                )
                for m in messages
            ],
        )


async def _calendar_cancellations(
    conn: Any, case: Case, events: list[Event], now: datetime, opener: Opener
) -> list[dict[str, Any]]:
    """A calendar CANCEL for every invitation the follow-ups an event cancelled have sent: the
    outbox says who was invited (consent may have changed since)."""
    rows = []
    for event in events:
        keys = [key for follow_up in event.cancelled for key in invitation_keys(case, follow_up)]
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


async def _project_spells(conn: Any, number: str) -> None:
    """Rewrite the case's stays in each stage from its recorded moves (few rows per case, and a
    retried or late batch lands in the right place: the spells follow the events' order)."""
    moves = (
        await conn.execute(
            select(case_events.c.seq, case_events.c.at, case_events.c.stage_after)
            .where(
                case_events.c.case_number == number,
                (case_events.c.stage_before.is_(None))
                | (case_events.c.stage_before != case_events.c.stage_after),
            )
            .order_by(case_events.c.seq)
        )
    ).all()
    spells = []
    for i, move in enumerate(moves):
        entered = _aware(move.at)
        left = _aware(moves[i + 1].at) if i + 1 < len(moves) else None
        spells.append(
            {
                "case_number": number,
                "seq": move.seq,
                "stage": move.stage_after,
                "entered_at": entered,
                "left_at": left,
                "entered_epoch": entered.timestamp(),
                "days": (left - entered).total_seconds() / 86400 if left else None,
            }
        )
    await conn.execute(delete(case_stage_spells).where(case_stage_spells.c.case_number == number))
    if spells:
        await conn.execute(insert(case_stage_spells), spells)


def _aware(at: datetime) -> datetime:
    """SQLite hands datetimes back without their zone; they were written in UTC."""
    return at if at.tzinfo else at.replace(tzinfo=UTC)
