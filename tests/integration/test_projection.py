"""The case's projection rows, written only where they changed.

A worker remembers what it last wrote of a case and writes only the parts that changed; the
record must come out the same as when every part is written afresh, whichever worker records
which batch (on SQLite and PostgreSQL)."""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import timedelta
from typing import Any

import pytest
from sqlalchemy import event, select
from sqlalchemy.ext.asyncio import AsyncEngine

from activities.contracts import RecordBatch
from activities.records import CaseRecorder
from domain import commands as c
from domain.case import notice_for
from domain.models import FollowUpKind, Stage
from domain.schedule import next_due, standings
from store.db import sync_engines, writing
from store.projection import rewrite_obligations
from store.tables import case_follow_ups, case_goals, case_obligations, case_referrals, cases
from tests.scenario import ALICE, PLAN_REVISION, PROGRAMS, SAM, Story, quiet_referral

pytestmark = pytest.mark.asyncio(loop_scope="session")

PARTS = {
    cases: ("number",),
    case_goals: ("case_number", "goal_id"),
    case_referrals: ("case_number", "referral_id"),
    case_follow_ups: ("case_number", "follow_up_id"),
    case_obligations: ("case_number", "obligation_key"),
}
# written with the time of the recording, which differs between the runs compared, and the
# case's whole state, which names its number (the rest of the row is compared)
WHEN_RECORDED = {"updated_at", "recorded_at", "state"}


def a_long_story() -> Story:
    """A case that moves, plans, refers, is answered, visits, misses a deadline, revises its plan."""
    story = Story("general").to(Stage.MONITORING)
    story.do(c.AddNote(actor=ALICE, text="called the landlord"))
    story.do(quiet_referral("food-bank"))
    story.do(c.AnswerReferral(actor=SAM, referral_id=story.case.referrals[0].id, answer="accepted"))
    story.do(c.ScheduleFollowUp(actor=ALICE, kind=FollowUpKind.PHONE_CALL, at=story.now + timedelta(days=3)))
    story.do(c.AddNote(actor=ALICE, text="no answer at the door"))
    due = next_due(story.case, story.program, story.now)
    assert due is not None
    story.now = due.at
    story.do(notice_for(story.case, due, story.program))  # a reminder or an escalation
    for step in PLAN_REVISION:
        story.do(step)
    story.do(c.AddNote(actor=ALICE, text="new plan agreed"))
    return story


async def projection(store: AsyncEngine, number: str) -> dict[str, list[dict[str, Any]]]:
    """The case's projection rows, without the case number or the times of recording."""
    found = {}
    async with store.connect() as conn:
        for table, key in PARTS.items():
            rows = await conn.execute(
                select(table).where(table.c[key[0]] == number).order_by(*(table.c[k] for k in key))
            )
            found[table.name] = [
                {k: v for k, v in row._mapping.items() if k not in {key[0], *WHEN_RECORDED}} for row in rows
            ]
    return found


async def test_recording_only_what_changed_leaves_the_record_as_writing_everything_does(
    record_store: AsyncEngine,
) -> None:
    told = a_long_story()
    warm, alternating, cold = (f"P-{uuid.uuid4().hex[:10]}" for _ in range(3))
    remembering, first, second = (CaseRecorder(record_store, programs=PROGRAMS) for _ in range(3))
    for upto in range(1, len(told.events) + 1):
        await remembering.record(batch_of(told, warm, upto))
        # two workers taking turns: each finds the record moved on since it last wrote
        await (first if upto % 3 else second).record(batch_of(told, alternating, upto))
        await CaseRecorder(record_store, programs=PROGRAMS).record(batch_of(told, cold, upto))
        expected = await projection(record_store, cold)
        assert await projection(record_store, warm) == expected, f"after event {upto}"
        assert await projection(record_store, alternating) == expected, f"after event {upto}"
    final = await projection(record_store, cold)
    assert sorted(r["status"] for r in final["case_referrals"]) == ["accepted", "pending"]
    assert [g["goal_id"] for g in final["case_goals"]] == ["g1", "g2"]
    assert final["cases"][0]["stage"] == "monitoring"


@contextmanager
def statements(store: AsyncEngine) -> Iterator[list[str]]:
    """The SQL statements the store runs meanwhile (the first word of each)."""
    seen: list[str] = []

    def count(_conn: Any, _cursor: Any, statement: str, *_: Any) -> None:
        words = statement.split()
        table = words[2] if words[0] in ("INSERT", "DELETE") else words[1] if words[0] == "UPDATE" else ""
        seen.append(f"{words[0]} {table}".strip())

    for each in sync_engines(store):
        event.listen(each, "before_cursor_execute", count)
    try:
        yield seen
    finally:
        for each in sync_engines(store):
            event.remove(each, "before_cursor_execute", count)


async def test_a_note_is_one_update_of_the_case_row(record_store: AsyncEngine) -> None:
    told = a_long_story()
    number = f"P-{uuid.uuid4().hex[:10]}"
    recorder = CaseRecorder(record_store, programs=PROGRAMS)
    for upto in range(1, len(told.events)):
        await recorder.record(batch_of(told, number, upto))
    with statements(record_store) as run:
        await recorder.record(batch_of(told, number, len(told.events)))  # the last note
    assert run == ["INSERT case_events", "UPDATE cases"]
    with statements(record_store) as again:  # a worker that did not record the case before
        await CaseRecorder(record_store, programs=PROGRAMS).record(batch_of(told, number, len(told.events)))
    assert again == ["INSERT case_events", "INSERT cases"]  # a retry: the record has it, writes nothing


def batch_of(story: Story, number: str, upto: int) -> RecordBatch:
    """Events 1..`upto`'s last one as a batch of its own, for case `number` as it stood then."""
    return RecordBatch(
        case=story.states[upto - 1].model_copy(update={"number": number}),
        case_seq=upto,
        events=story.events[upto - 1 : upto],
        program=PROGRAMS["general"],
    )


async def test_a_row_written_by_someone_else_makes_the_next_recording_write_every_part(
    record_store: AsyncEngine,
) -> None:
    """`casework backfill-obligations` writes a case's obligations outside any recording, by an
    installation's program that may not be the batch's. The worker's memory then no longer
    describes the row: its next recording writes every part, as a worker that never saw the
    case would."""
    told = a_long_story()
    remembered, fresh = (f"P-{uuid.uuid4().hex[:10]}" for _ in range(2))
    recorder = CaseRecorder(record_store, programs=PROGRAMS)
    last = len(told.events)
    for number in (remembered, fresh):
        for upto in range(1, last):
            await recorder.record(batch_of(told, number, upto))
    stale = told.states[last - 2]
    other = standings(stale, PROGRAMS["fast"])  # another program's deadlines, as a backfill might
    assert other
    async with writing(record_store) as conn:
        for number in (remembered, fresh):
            await rewrite_obligations(conn, stale.model_copy(update={"number": number}), other, told.now)
    await recorder.record(batch_of(told, remembered, last))
    await CaseRecorder(record_store, programs=PROGRAMS).record(batch_of(told, fresh, last))  # never saw it
    assert await projection(record_store, remembered) == await projection(record_store, fresh)
