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
from sqlalchemy import delete, insert, update
from sqlalchemy.ext.asyncio import AsyncEngine
from temporalio import activity

from activities.contracts import MessageRef, RecordBatch, RecordResult
from activities.failpoints import failpoint
from activities.messages import messages_for, shown_recipient
from domain.events import Event
from domain.models import Case
from store.db import insert_ignoring_duplicates, upsert
from store.tables import case_events, case_follow_ups, case_goals, case_referrals, cases, outbox

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


class CaseRecorder:
    """Activities that need the database; constructed once per worker with its engine."""

    def __init__(self, engine: AsyncEngine, callback_url: str = "") -> None:
        self.engine, self.callback_url = engine, callback_url

    @activity.defn(name="record_case_events")
    async def record(self, batch: RecordBatch) -> RecordResult:
        now = datetime.now(UTC)
        case = batch.case
        events = [event_row(case.number, e, now) for e in batch.events]
        messages = [m for e in batch.events for m in messages_for(case, e, now, self.callback_url)]
        async with self.engine.begin() as conn:
            new = await insert_ignoring_duplicates(conn, case_events, events, ["case_number", "seq"])
            await insert_ignoring_duplicates(conn, outbox, messages, ["idempotency_key"])
            if batch.events and batch.events[-1].seq == batch.case_seq:  # the batch reaches the case
                await self._project(conn, case, batch.case_seq, now)
        failpoint("record-committed")  # crash tests: committed, but Temporal never hears of it
        log.info(
            "recorded case events",
            case=case.number,
            received=len(events),
            new=new,
            seqs=f"{batch.events[0].seq}-{batch.events[-1].seq}" if batch.events else "",
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
            result = await conn.execute(
                update(cases).where(cases.c.number == case.number, cases.c.last_seq < seq).values(**row)
            )
            if not result.rowcount:
                return
        await _project_parts(conn, case)


async def _project_parts(conn: Any, case: Case) -> None:
    """Write the case's referral, goal and follow-up rows (same transaction as the case row).

    Referrals and follow-ups are upserted, never deleted: the live case forgets finished ones
    (domain/bounds.py) but the record keeps every one. Goals are the current plan's."""
    await conn.execute(delete(case_goals).where(case_goals.c.case_number == case.number))
    referrals = [
        {
            "case_number": case.number,
            "referral_id": r.id,
            "provider": r.provider,
            "service": r.service.value,
            "status": r.status.value,
            "requested_at": r.requested_at,
            "answered_at": r.answered_at,
        }
        for r in case.referrals
    ]
    goals = [
        {
            "case_number": case.number,
            "goal_id": g.id,
            "description": g.description,
            "objective": g.objective,
            "target_date": g.target_date,
            "status": g.status.value,
        }
        for g in (case.plan.goals if case.plan else [])
    ]
    follow_ups = [
        {
            "case_number": case.number,
            "follow_up_id": f.id,
            "kind": f.kind.value,
            "due_at": f.due_at,
            "status": f.status.value,
            "done_at": f.done_at,
        }
        for f in case.follow_ups
    ]
    if goals:
        await conn.execute(insert(case_goals), goals)
    await upsert(conn, case_referrals, referrals, ["case_number", "referral_id"])
    await upsert(conn, case_follow_ups, follow_ups, ["case_number", "follow_up_id"])
