"""Recording a case to SQL: its events, its current state, and outbox messages.

One activity, one transaction: the events of a batch, the outbox rows their
notices and referrals produce, and the case projection are written together.
Events are keyed by (case number, seq) and outbox rows by an idempotency key,
so a retried activity (worker killed after the commit, before Temporal heard
of it) writes nothing twice.
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

import structlog
from sqlalchemy import select, update
from sqlalchemy.ext.asyncio import AsyncEngine
from temporalio import activity

from activities.contracts import RecordBatch
from activities.failpoints import failpoint
from domain import commands as c
from domain.events import Event, NoticeIssued
from domain.models import Case, Role
from store.db import insert_ignoring_duplicates
from store.tables import case_events, cases, outbox

log = structlog.get_logger("casework.records")


def event_row(number: str, event: Event, now: datetime) -> dict[str, Any]:
    return {
        "case_number": number,
        "seq": event.seq,
        "at": event.at,
        "action": event.action,
        "actor_id": event.actor.id,
        "actor_role": event.actor.role.value,
        "stage_before": event.stage_before.value if event.stage_before else None,
        "stage_after": event.stage_after.value,
        "change": event.change.model_dump(mode="json"),
        "recorded_at": now,
    }


def outbox_row(case: Case, event: Event, now: datetime) -> dict[str, Any] | None:
    """The message an event asks to send, if any. Subjects never carry personal data."""
    ch = event.change
    base = {
        "case_number": case.number,
        "event_seq": event.seq,
        "status": "pending",
        "attempts": 0,
        "created_at": now,
    }
    if isinstance(ch, NoticeIssued):
        if ch.kind == "reminder":
            subject = f"Case {case.number}: {ch.obligation} due {ch.due:%Y-%m-%d %H:%M} UTC"
        else:
            subject = f"Case {case.number}: {ch.obligation} overdue (escalation level {ch.level})"
        body = (
            f"{subject}\n\nThe {ch.obligation} for case {case.number} (program {case.program}) "
            f"was due {ch.due.isoformat()}.\nYou are notified as {ch.notify.value}.\n"
        )
        return base | {
            "idempotency_key": f"{case.number}:{ch.key}",
            "kind": ch.kind,
            "level": ch.level,
            "recipient": ch.recipient,
            "recipient_role": ch.notify.value,
            "subject": subject,
            "body": body,
        }
    if isinstance(ch, c.Refer):
        referral = f"R{event.seq}"  # as domain.case names it
        subject = f"Referral request {case.number}/{referral}: {ch.service}"
        body = (
            f"Case {case.number} (program {case.program}) asks {ch.provider} for {ch.service}.\n"
            f"Reason: {ch.reason}\nReferred by {ch.actor.id}.\n"
        )
        return base | {
            "idempotency_key": f"{case.number}:referral:{referral}",
            "kind": "referral_request",
            "level": 0,
            "recipient": ch.provider,
            "recipient_role": Role.PROVIDER.value,
            "subject": subject,
            "body": body,
        }
    return None


class CaseRecorder:
    """Activities that need the database; constructed once per worker with its engine."""

    def __init__(self, engine: AsyncEngine) -> None:
        self.engine = engine

    @activity.defn(name="record_case_events")
    async def record(self, batch: RecordBatch) -> int:
        now = datetime.now(UTC)
        case = batch.case
        events = [event_row(case.number, e, now) for e in batch.events]
        messages = [m for e in batch.events if (m := outbox_row(case, e, now)) is not None]
        async with self.engine.begin() as conn:
            new = await insert_ignoring_duplicates(conn, case_events, events, ["case_number", "seq"])
            await insert_ignoring_duplicates(conn, outbox, messages, ["idempotency_key"])
            await self._project(conn, case, batch.case_seq, now)
        failpoint("record-committed")  # crash tests: committed, but Temporal never hears of it
        log.info(
            "recorded case events",
            case=case.number,
            received=len(events),
            new=new,
            seqs=f"{batch.events[0].seq}-{batch.events[-1].seq}" if batch.events else "",
        )
        return new

    @staticmethod
    async def _project(conn: Any, case: Case, seq: int, now: datetime) -> None:
        row = {
            "program": case.program,
            "stage": case.stage.value,
            "manager": case.manager,
            "supervisor": case.supervisor,
            "risk": case.risk.value,
            "opened_at": case.opened_at,
            "closed_at": case.closed_at,
            "outcome": case.outcome.value if case.outcome else None,
            "last_seq": seq,
            "state": case.model_dump(mode="json"),
            "updated_at": now,
        }
        inserted = await insert_ignoring_duplicates(conn, cases, [row | {"number": case.number}], ["number"])
        if not inserted:  # only move forward: an older retried batch must not overwrite a newer state
            await conn.execute(
                update(cases).where(cases.c.number == case.number, cases.c.last_seq < seq).values(**row)
            )


async def recorded_events(engine: AsyncEngine, number: str) -> list[dict[str, Any]]:
    async with engine.connect() as conn:
        result = await conn.execute(
            select(case_events).where(case_events.c.case_number == number).order_by(case_events.c.seq)
        )
        return [dict(r._mapping) for r in result]
