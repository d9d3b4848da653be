"""The SQL record on SQLite and PostgreSQL: idempotent, ordered, complete."""

from __future__ import annotations

import asyncio
import itertools
from datetime import timedelta
from typing import Any

import pytest
from sqlalchemy import insert, select
from sqlalchemy.ext.asyncio import AsyncEngine

from activities.contracts import RecordBatch
from activities.records import CaseRecorder, Recorded, event_row
from domain import commands as c
from domain.case import notice_for
from domain.models import Stage
from domain.schedule import next_due
from store.db import migrate, write_together
from store.keys import Sealer, opened_message
from store.tables import case_events, case_stage_spells, cases, outbox
from tests.conftest import recorded_events
from tests.keys import key_ring
from tests.scenario import ALICE, SAM, TO_MONITORING, Story

pytestmark = pytest.mark.asyncio(loop_scope="session")


async def stage_and_last_seq(store: AsyncEngine, number: str) -> tuple[str, int]:
    """Where the record's projection of the case stands."""
    async with store.connect() as conn:
        row = (
            await conn.execute(select(cases.c.stage, cases.c.last_seq).where(cases.c.number == number))
        ).one()
    return row.stage, row.last_seq


def batch(story: Story, start: int, end: int) -> RecordBatch:
    return RecordBatch(case=story.case, case_seq=end, events=story.events[start - 1 : end])


async def test_recording_the_same_batch_twice_writes_it_once(record_store: AsyncEngine) -> None:
    story = Story("general").to(Stage.COORDINATION)
    story.do(
        c.Refer(actor=ALICE, provider="food-bank", service="income_benefits", reason="no food this week")
    )
    due = next_due(story.case, story.program, story.now)
    assert due is not None
    story.now = due.at
    story.do(notice_for(story.case, due, story.program))
    recorder = CaseRecorder(record_store)
    whole = batch(story, 1, len(story.events))

    first = await recorder.record(whole)
    again = await recorder.record(whole)  # a retried activity: nothing new, the same messages to deliver
    assert (first.new_events, again.new_events) == (len(story.events), 0)
    assert first.messages == again.messages

    rows = await recorded_events(record_store, story.case.number)
    assert [r["seq"] for r in rows] == list(range(1, len(story.events) + 1))
    assert rows[0]["change"]["client"]["family_name"] == "Okafor"  # the record keeps the full change
    async with record_store.connect() as conn:
        messages = (await conn.execute(select(outbox).where(outbox.c.case_number == story.case.number))).all()
    # two referral requests (the story's and this one), the home-visit invitation, the reminder
    assert sorted(m.kind for m in messages) == [
        "invitation",
        "referral_request",
        "referral_request",
        "reminder",
    ]


async def test_an_older_batch_never_rolls_the_case_back(record_store: AsyncEngine) -> None:
    story = Story("general").to(Stage.PLANNING)
    early = RecordBatch(
        case=Story("general").case.model_copy(update={"number": story.case.number}),
        case_seq=1,
        events=story.events[:1],
    )
    recorder = CaseRecorder(record_store)
    await recorder.record(batch(story, 1, len(story.events)))
    await recorder.record(early)  # arrives late, e.g. a retry after a timeout
    assert await stage_and_last_seq(record_store, story.case.number) == ("planning", len(story.events))


async def test_migrating_again_is_harmless(record_store: AsyncEngine) -> None:
    await migrate(record_store)
    await migrate(record_store)


async def test_the_cases_parts_are_rows_for_reporting_tools(record_store: AsyncEngine) -> None:
    from store.tables import case_follow_ups, case_goals, case_referrals

    story = Story("general").to(Stage.MONITORING)
    recorder = CaseRecorder(record_store)
    await recorder.record(batch(story, 1, len(story.events)))
    story.do(c.AnswerReferral(actor=SAM, referral_id=story.case.referrals[0].id, answer="accepted"))
    await recorder.record(batch(story, len(story.events), len(story.events)))
    await recorder.record(batch(story, 1, len(story.events) - 1))  # a stale retry changes nothing
    number = story.case.number
    async with record_store.connect() as conn:
        referrals = (
            await conn.execute(
                select(case_referrals.c.provider, case_referrals.c.status).where(
                    case_referrals.c.case_number == number
                )
            )
        ).all()
        goals = (
            (
                await conn.execute(
                    select(case_goals.c.goal_id)
                    .where(case_goals.c.case_number == number)
                    .order_by(case_goals.c.goal_id)
                )
            )
            .scalars()
            .all()
        )
        visits = (
            (
                await conn.execute(
                    select(case_follow_ups.c.kind).where(case_follow_ups.c.case_number == number)
                )
            )
            .scalars()
            .all()
        )
    assert [tuple(r) for r in referrals] == [("shelter-north", "accepted")]
    assert list(goals) == ["g1", "g2"]
    assert list(visits) == ["home_visit"]


async def test_recordings_waiting_together_share_one_transaction(record_store: AsyncEngine) -> None:
    """A busy worker has a recording in flight for every busy case; they are written together
    (one transaction, one turn at SQLite's single writer) and each gets its own result."""
    recorder = CaseRecorder(record_store)
    stories = [Story("general").to(Stage.COORDINATION) for _ in range(5)]
    sealers = [await recorder.keys.sealer(s.case.number) for s in stories]

    recorded = await asyncio.gather(
        *(
            recorder.turns.record(batch(story, 1, len(story.events)), sealer)
            for story, sealer in zip(stories, sealers, strict=True)
        )
    )

    assert [r.together for r in recorded] == [5] * 5
    assert [r.new for r in recorded] == [len(s.events) for s in stories]
    for story, one in zip(stories, recorded, strict=True):  # each its own referral request
        assert {m["case_number"] for m in one.messages} == {story.case.number}
        rows = await recorded_events(record_store, story.case.number)
        assert [r["seq"] for r in rows] == list(range(1, len(story.events) + 1))


async def test_a_batch_that_cannot_be_written_fails_alone(record_store: AsyncEngine) -> None:
    """The group's transaction fails; each batch is then tried alone: the others are written and
    only the bad one's activity fails (Temporal retries it)."""

    class Broken(Sealer):
        def value(self, value: Any, column: str) -> Any:
            raise ValueError("this batch cannot be sealed")

    recorder = CaseRecorder(record_store)
    good, bad = Story("general").to(Stage.PLANNING), Story("general").to(Stage.PLANNING)
    sealer = await recorder.keys.sealer(good.case.number)

    written, failed = await asyncio.gather(
        recorder.turns.record(batch(good, 1, len(good.events)), sealer),
        recorder.turns.record(batch(bad, 1, len(bad.events)), Broken(bad.case.number, None)),
        return_exceptions=True,
    )

    assert isinstance(failed, ValueError)
    assert isinstance(written, Recorded) and written.together == 1  # written again, alone
    assert len(await recorded_events(record_store, good.case.number)) == len(good.events)
    assert await recorded_events(record_store, bad.case.number) == []


async def test_a_case_has_one_batch_in_a_transaction(record_store: AsyncEngine) -> None:
    """A retried batch of a case (its first attempt still waiting) and the case's next batch go
    in separate transactions, in the order they came: the projection never steps back."""
    recorder = CaseRecorder(record_store)
    story = Story("general").to(Stage.MONITORING)
    sealer = await recorder.keys.sealer(story.case.number)
    middle = len(story.events) - 2
    early = RecordBatch(case=story.states[middle - 1], case_seq=middle, events=story.events[:middle])

    first, second = await asyncio.gather(
        recorder.turns.record(early, sealer),
        recorder.turns.record(batch(story, middle + 1, len(story.events)), sealer),
    )

    assert (first.together, second.together) == (1, 1)
    assert await stage_and_last_seq(record_store, story.case.number) == ("monitoring", len(story.events))


async def test_a_write_together_on_sqlite_may_await_only_its_statements(sqlite_store: AsyncEngine) -> None:
    """On a SQLite file the group runs in a thread in one go, so it cannot wait for anything
    but its own statements: one that does is refused, and what it wrote is rolled back."""
    story = Story("general")
    row = event_row(story.case.number, story.events[0], story.now, Sealer(story.case.number, None))

    async def writes_then_waits(conn: Any) -> None:
        await conn.execute(insert(case_events).values(row))
        await asyncio.sleep(0)

    with pytest.raises(RuntimeError, match="awaited something other than its statements"):
        await write_together(sqlite_store, writes_then_waits)
    assert await recorded_events(sqlite_store, story.case.number) == []

    async def writes(conn: Any) -> int:
        return int((await conn.execute(insert(case_events).values(row))).rowcount)

    assert await write_together(sqlite_store, writes) == 1
    assert len(await recorded_events(sqlite_store, story.case.number)) == 1


async def spells_of(store: AsyncEngine, number: str) -> list[tuple[int, str, float, float | None]]:
    """The case's stays in each stage as the record has them: seq, stage, when entered (epoch
    seconds) and days (None: still there), to the millisecond."""
    s = case_stage_spells
    query = select(s.c.seq, s.c.stage, s.c.entered_epoch, s.c.days).where(s.c.case_number == number)
    async with store.connect() as conn:
        rows = (await conn.execute(query.order_by(s.c.seq))).all()
    return [(r.seq, r.stage, round(r.entered_epoch, 3), _ms(r.days)) for r in rows]


def _ms(days: float | None) -> float | None:
    return None if days is None else round(days * 86_400, 3)


async def test_a_cases_stays_in_each_stage_are_the_same_however_its_events_are_recorded(
    record_store: AsyncEngine,
) -> None:
    """One event at a time, all at once, or in batches with one retried after the next: each
    stay in a stage begins at the move into it and ends at the next move, once."""
    story = Story("general").to(Stage.ON_HOLD)
    story.do(c.Resume(actor=ALICE), after=timedelta(days=9))
    story.do(c.AddNote(actor=ALICE, text="back from hospital"))  # moves nothing
    for step in TO_MONITORING[1:]:  # back in assessment, on to monitoring
        story.do(step)
    n = len(story.events)
    twins = [story.case.model_copy(update={"number": f"{story.case.number}-{i}"}) for i in range(3)]

    def of(i: int, start: int, end: int) -> RecordBatch:
        return RecordBatch(case=twins[i], case_seq=end, events=story.events[start - 1 : end])

    recorder = CaseRecorder(record_store)
    for seq in range(1, n + 1):
        await recorder.record(of(0, seq, seq))
    await recorder.record(of(1, 1, n))
    await recorder.record(of(2, 1, 4))
    await recorder.record(of(2, 5, n))
    await recorder.record(of(2, 1, 4))  # a retry of the first batch, arriving after the second

    one_at_a_time, at_once, retried = [await spells_of(record_store, t.number) for t in twins]
    moves = [e for e in story.events if e.stage_before != e.stage_after]
    assert [stage for _, stage, _, _ in at_once] == [e.stage_after.value for e in moves]
    assert [days for _, _, _, days in at_once] == [
        *(round((b.at - a.at).total_seconds(), 3) for a, b in itertools.pairwise(moves)),
        None,
    ]
    assert one_at_a_time == at_once and retried == at_once


async def test_a_rescheduled_visit_is_called_off_in_every_calendar_it_was_sent_to(
    record_store: AsyncEngine,
) -> None:
    """The new time gets an invitation of its own (another UID): the old one must be cancelled,
    or the visit stays in the calendars at a time it will not happen."""
    story = Story("general").to(Stage.COORDINATION)
    story.do(c.ScheduleFollowUp(actor=ALICE, kind="home_visit", at=story.now + timedelta(days=3)))
    visit = story.case.follow_ups[-1]
    recorder = CaseRecorder(record_store, keys=key_ring(record_store))
    await recorder.record(batch(story, 1, len(story.events)))
    moved_to = visit.due_at + timedelta(days=7)
    story.do(
        c.RecordFollowUpOutcome(
            actor=ALICE, follow_up_id=visit.id, outcome="rescheduled", rescheduled_to=moved_to
        )
    )
    await recorder.record(batch(story, len(story.events), len(story.events)))
    opener = await key_ring(record_store).opener(story.case.number)
    async with record_store.connect() as conn:
        sent = (await conn.execute(select(outbox).where(outbox.c.case_number == story.case.number))).all()
    messages = [opened_message(dict(m._mapping), opener) for m in sent]
    invited = [m for m in messages if m["kind"] == "invitation" and f":{visit.id}:" in m["idempotency_key"]]
    called_off = [m for m in messages if m["kind"] == "invitation_cancellation"]
    assert invited and len(called_off) == len(invited)  # each invitation of the old time, cancelled
    assert {m["recipient"] for m in called_off} == {m["recipient"] for m in invited}
    for cancel in called_off:
        assert f"UID:{story.case.number}-{visit.id}@casework" in cancel["attachment"]
        assert "METHOD:CANCEL" in cancel["attachment"]
    assert f"it was moved to {moved_to:%Y-%m-%d %H:%M} UTC" in next(
        m["body"] for m in called_off if m["recipient_role"] != "client"
    )
    # and the new time has its invitation
    new_visit = story.case.follow_ups[-1]
    assert new_visit.id != visit.id
    assert any(m["kind"] == "invitation" and f":{new_visit.id}:" in m["idempotency_key"] for m in messages)
