"""Reports from the SQL record match the same figures worked out independently from the cases."""

from __future__ import annotations

import asyncio
import itertools
import random
import statistics
from collections import Counter
from collections.abc import Awaitable
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest
from alembic import command
from alembic.config import Config
from sqlalchemy import delete, select
from sqlalchemy.engine import Connection
from sqlalchemy.ext.asyncio import AsyncEngine

from activities.contracts import RecordBatch
from activities.records import CaseRecorder
from domain import bounds
from domain import commands as c
from domain.access import Scope
from domain.models import Actor, Role, Stage
from domain.views import Report
from service.backfill import backfill_obligations
from service.reports import Reports, Snapshots, percentile, stage_chart, week_ends, week_of
from store.db import MIGRATIONS, engine, migrate
from store.keys import KeyRing
from store.tables import case_obligations, cases
from tests.keys import MASTER_TEXT, key_ring
from tests.processes import casework, environment
from tests.scenario import HAPPY_PATH, PROGRAMS, SAM, T0, Story, quiet_referral

SHELTER = Actor(id="shelter-north", role=Role.PROVIDER)
EVERYTHING = Scope(everything=True)


@pytest.fixture
def empty_store(empty_record: AsyncEngine) -> AsyncEngine:
    """An empty record of the test's own (tests/conftest.py `empty_record`)."""
    return empty_record


def generated_cases(seed: int = 7, count: int = 14) -> list[Story]:
    rng = random.Random(seed)
    stories = []
    for i in range(count):
        story = Story("general", now=T0 + timedelta(days=rng.randint(0, 40)))
        for _, change in HAPPY_PATH[: rng.randint(0, len(HAPPY_PATH))]:
            story.do(change, after=timedelta(hours=rng.randint(1, 200)))
            if isinstance(change, c.Refer) and rng.random() < 0.7:
                answer = rng.choice(["accepted", "declined"])
                story.do(
                    c.AnswerReferral(
                        actor=SHELTER,
                        referral_id=story.case.referrals[-1].id,
                        answer=answer,
                        reason="no capacity" if answer == "declined" else "",
                    ),
                    after=timedelta(hours=rng.randint(1, 72)),
                )
        if story.case.is_open and i % 4 == 0:
            story.do(c.Withdraw(actor=SAM, reason="moved away"), after=timedelta(days=rng.randint(1, 9)))
        if i % 3 == 0 and story.case.is_open:
            story.do(c.Transfer(actor=SAM, to_manager="bob", reason="caseload balance"))
        stories.append(story)
    return stories


@pytest.mark.asyncio(loop_scope="session")
async def test_reports_match_an_independent_count(empty_store: AsyncEngine, tmp_path: Path) -> None:
    stories = generated_cases()
    recorder = CaseRecorder(empty_store, programs=PROGRAMS)
    for story in stories:
        await recorder.record(RecordBatch(case=story.case, case_seq=len(story.events), events=story.events))
    now = max(s.now for s in stories) + timedelta(days=1)
    reports = await Reports(empty_store, EVERYTHING, now).all()

    # caseload: open cases by manager and stage
    expected_load = Counter((s.case.manager, s.case.stage.value) for s in stories if s.case.is_open)
    assert {(m, st): n for m, st, n in reports["caseload"].rows} == dict(expected_load)

    # referrals: one provider and service here; accepted and declined counted from the cases
    referrals = [r for s in stories for r in s.case.referrals]
    # accepted counts the provider's answer: a referral accepted, then revoked as its case was
    # withdrawn, was accepted (the stories hold some)
    taken_then_revoked = sum(r.status.value == "revoked" and r.answered_at is not None for r in referrals)
    assert taken_then_revoked > 0
    accepted = sum(r.status.value == "accepted" for r in referrals) + taken_then_revoked
    declined = sum(r.status.value == "declined" for r in referrals)
    [row] = reports["referrals"].rows
    assert row[:5] == ("shelter-north", "housing", len(referrals), accepted, declined)
    assert row[5] == round(accepted / (accepted + declined), 3)
    waits = [(r.answered_at - r.requested_at).total_seconds() / 3600 for r in referrals if r.answered_at]
    assert row[6] == round(statistics.median(waits), 1)

    # weekly: opened and closed per ISO week
    opened = Counter(week_of(s.case.opened_at) for s in stories)
    closed = Counter(week_of(s.case.closed_at) for s in stories if s.case.closed_at)
    assert {w: (o, cl) for w, o, cl in reports["weekly"].rows} == {
        w: (opened[w], closed[w]) for w in set(opened) | set(closed)
    }

    # time in stage: from each story's own events
    spans: dict[str, list[float]] = {}
    for s in stories:
        moves = [(e.at, e.stage_after) for e in s.events if e.stage_before != e.stage_after]
        for (at, stage), (later, _) in itertools.pairwise(moves):
            spans.setdefault(stage.value, []).append((later - at).total_seconds() / 86400)
        if s.case.is_open:
            spans.setdefault(moves[-1][1].value, []).append((now - moves[-1][0]).total_seconds() / 86400)
    assert {row[0]: row[1:] for row in reports["stages"].rows} == {
        stage: (len(d), round(statistics.median(d), 2), round(percentile(d, 90), 2))
        for stage, d in spans.items()
    }

    # overdue: every open case past a deadline shows up once per overdue item
    assert sum(n for *_, n in reports["overdue"].rows) > 0

    # exports
    csv = reports["caseload"].csv().splitlines()
    assert csv[0] == "manager,stage,cases" and len(csv) == len(expected_load) + 1
    chart = tmp_path / "stages.png"
    ends = week_ends(now)
    stage_chart(await Reports(empty_store, EVERYTHING, now).stages_over_time(ends), ends, str(chart))
    assert chart.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_percentile_interpolates_between_ranks() -> None:
    assert percentile([1, 2, 3, 4], 50) == 2.5
    assert percentile([10], 90) == 10
    assert percentile([0, 10], 90) == 9


@pytest.mark.asyncio(loop_scope="session")
async def test_referral_outcomes_count_every_referral_a_long_case_ever_made(empty_store: AsyncEngine) -> None:
    """The live case forgets finished referrals beyond the newest few; the record does not."""
    story = Story("general").to(Stage.MONITORING)
    recorder = CaseRecorder(empty_store, programs=PROGRAMS)
    made = 0
    for _ in range(3):  # recorded in several batches, as the workflow does over the years
        first = len(story.events) + 1
        for _ in range(6):
            referral = story.do(quiet_referral())
            answer = c.AnswerReferral(
                actor=SHELTER, referral_id=f"R{referral.seq}", answer="declined", reason="no beds"
            )
            story.do(answer)
            made += 1
        await recorder.record(
            RecordBatch(case=story.case, case_seq=len(story.events), events=story.events[first - 1 :])
        )
    assert len(story.case.referrals) < made  # the live case kept only the newest
    [row] = (await Reports(empty_store, EVERYTHING, story.now).referral_outcomes()).rows
    assert row[:5] == ("shelter-north", "housing", made + 1, 0, made)  # + the happy path's own


@pytest.mark.asyncio(loop_scope="session")
@pytest.mark.parametrize("worker", ["the same worker", "another worker"])
async def test_a_transferred_case_brings_every_referral_it_ever_made_to_its_new_manager_report(
    empty_store: AsyncEngine, worker: str
) -> None:
    """The referral report reads each referral's own copy of its case's manager: a transfer
    moves them all, those the live case has forgotten too, whichever worker records it (one that
    remembers what it wrote of the case, or one that writes every part afresh)."""
    story = Story("general").to(Stage.MONITORING)
    recorder = CaseRecorder(empty_store, programs=PROGRAMS)
    made, recorded = bounds.KEEP_FINISHED_REFERRALS + 4, 0
    for _ in range(made):  # each recorded before the next, as the workflow records them
        referral = story.do(quiet_referral())
        answer = c.AnswerReferral(
            actor=SHELTER, referral_id=f"R{referral.seq}", answer="declined", reason="full"
        )
        story.do(answer)
        batch = story.events[recorded:]
        await recorder.record(RecordBatch(case=story.case, case_seq=len(story.events), events=batch))
        recorded = len(story.events)
    assert len(story.case.referrals) < made  # the live case kept the newest only

    def outcomes(manager: str) -> Awaitable[Report]:
        return Reports(empty_store, Scope(manager=manager), story.now).referral_outcomes()

    [before] = (await outcomes("alice")).rows
    assert before[2] == made + 1 and (await outcomes("bob")).rows == []  # + the happy path's
    story.do(c.Transfer(actor=SAM, to_manager="bob", reason="caseload balance"))
    if worker == "another worker":
        recorder = CaseRecorder(empty_store, programs=PROGRAMS)
    await recorder.record(
        RecordBatch(case=story.case, case_seq=len(story.events), events=story.events[recorded:])
    )
    assert (await outcomes("bob")).rows == [before]
    assert (await outcomes("alice")).rows == []


@pytest.mark.asyncio(loop_scope="session")
async def test_history_reports_are_kept_five_minutes_and_say_when_they_were_computed(
    empty_store: AsyncEngine,
) -> None:
    """A referral declined meanwhile shows in the referral outcomes once the kept figures are five
    minutes old; the caseload, about today, is never kept; the weekly counts, over every week, are."""
    snapshots = Snapshots(timedelta(minutes=5))
    story = Story("general").to(Stage.MONITORING)
    recorder = CaseRecorder(empty_store, programs=PROGRAMS)
    await recorder.record(RecordBatch(case=story.case, case_seq=len(story.events), events=story.events))
    then = story.now

    def reports(at: timedelta, scope: Scope = EVERYTHING, kept: Snapshots | None = snapshots) -> Reports:
        return Reports(empty_store, scope, then + at, kept)

    first = await reports(timedelta(0)).referral_outcomes()
    weekly = await reports(timedelta(0)).opened_closed_per_week()
    assert first.as_of == then == weekly.as_of
    recorded = len(story.events)
    referral = story.do(quiet_referral())
    answer = c.AnswerReferral(actor=SHELTER, referral_id=f"R{referral.seq}", answer="declined", reason="full")
    story.do(answer)
    await recorder.record(
        RecordBatch(case=story.case, case_seq=len(story.events), events=story.events[recorded:])
    )

    four, six = timedelta(minutes=4), timedelta(minutes=6)
    fresh = await reports(four, kept=None).referral_outcomes()
    assert fresh.rows != first.rows  # the new referral counts at once, computed afresh
    assert await reports(four).referral_outcomes() == first  # kept: the same figures, the same moment
    later = await reports(six).referral_outcomes()
    assert later.rows == fresh.rows and later.as_of == then + six
    mine = await reports(four, Scope(manager=story.case.manager)).referral_outcomes()
    assert mine.rows == fresh.rows and mine.as_of == then + four  # another scope: its own figures
    assert (await reports(four).caseload()).as_of == then + four  # about today: never kept
    assert await reports(four).opened_closed_per_week() == weekly  # every week ever: kept
    assert (await reports(four).stage_series())[1][-1] == then + four


def _to_revision(connection: Connection, revision: str, up: bool) -> None:
    config = Config()
    config.set_main_option("script_location", str(MIGRATIONS))
    config.attributes["connection"] = connection
    (command.upgrade if up else command.downgrade)(config, revision)


@pytest.mark.asyncio(loop_scope="session")
async def test_a_record_from_before_the_projection_gets_its_reports_by_migration(
    empty_store: AsyncEngine,
) -> None:
    """Cases recorded before 0007: the migration fills in the weeks, the hours to answer and the
    stage spells from the rows already there (the obligations wait for each case's next recording)."""
    stories = generated_cases()
    recorder = CaseRecorder(empty_store, programs=PROGRAMS)
    for story in stories:
        await recorder.record(RecordBatch(case=story.case, case_seq=len(story.events), events=story.events))
    now = max(s.now for s in stories) + timedelta(days=1)
    before = await Reports(empty_store, EVERYTHING, now).all()

    async with empty_store.begin() as conn:
        await conn.run_sync(_to_revision, "0006_keys", False)
    async with empty_store.begin() as conn:
        await conn.run_sync(_to_revision, "head", True)
    after = await Reports(empty_store, EVERYTHING, now).all()

    for name in ("caseload", "weekly"):
        assert after[name].rows == before[name].rows
    assert after["overdue"].rows == []  # until each open case is recorded again, or the backfill
    done = await backfill_obligations(empty_store, KeyRing(empty_store, None), PROGRAMS)
    assert done.projected == sum(s.case.is_open for s in stories) and not done.skipped
    assert (await Reports(empty_store, EVERYTHING, now).overdue()).rows == before["overdue"].rows
    again = await backfill_obligations(empty_store, KeyRing(empty_store, None), PROGRAMS)
    assert again.projected == sum(s.case.is_open for s in stories) - done.owing  # those owing nothing
    # times subtracted by the database: equal to the millisecond, so to the rounding's last digit
    for then, now_row in zip(before["referrals"].rows, after["referrals"].rows, strict=True):
        assert now_row[:6] == then[:6] and abs(now_row[6] - then[6]) <= 0.1
    for then, now_row in zip(before["stages"].rows, after["stages"].rows, strict=True):
        assert now_row[:2] == then[:2]
        assert abs(now_row[2] - then[2]) <= 0.01 and abs(now_row[3] - then[3]) <= 0.01


@pytest.mark.asyncio(loop_scope="session")
async def test_referrals_recorded_before_they_carried_their_case_manager_get_it_by_migration(
    empty_store: AsyncEngine,
) -> None:
    """Referrals recorded before 0011 have no program, manager or supervisor of their own; the
    migration copies their case's, so each case manager's referral report is as it was."""
    stories = generated_cases()
    recorder = CaseRecorder(empty_store, programs=PROGRAMS)
    for story in stories:
        await recorder.record(RecordBatch(case=story.case, case_seq=len(story.events), events=story.events))
    now = max(s.now for s in stories) + timedelta(days=1)
    managers = sorted({s.case.manager for s in stories})
    assert len(managers) > 1  # some were transferred

    async def by_manager() -> dict[str, list[tuple[Any, ...]]]:
        reports = {m: Reports(empty_store, Scope(manager=m), now) for m in managers}
        return {m: (await r.referral_outcomes()).rows for m, r in reports.items()}

    before = await by_manager()
    assert all(before.values())
    async with empty_store.begin() as conn:
        await conn.run_sync(_to_revision, "0010_open_caseload_index", False)
    async with empty_store.begin() as conn:
        await conn.run_sync(_to_revision, "head", True)
    assert await by_manager() == before


@pytest.mark.asyncio(loop_scope="session")
async def test_casework_backfill_obligations_opens_sealed_cases_and_names_those_it_cannot(
    sqlite_url: str,
) -> None:
    """The operator's command after an upgrade: sealed open cases get their rows; a case of a
    program this installation does not have is named, and the command fails so it is seen."""
    store = engine(sqlite_url)
    await migrate(store)
    recorder = CaseRecorder(store, programs=PROGRAMS, keys=key_ring(store))
    stories = [Story("general").to(Stage.MONITORING) for _ in range(3)] + [Story("weekly")]
    for story in stories:
        await recorder.record(RecordBatch(case=story.case, case_seq=len(story.events), events=story.events))
    async with store.begin() as conn:  # as a record from before the projection
        await conn.execute(delete(case_obligations))
    env = environment(database_url=sqlite_url, payload_key=MASTER_TEXT)
    ran = await asyncio.to_thread(casework, "backfill-obligations", env=env)
    assert ran.returncode == 1, ran.stdout + ran.stderr
    assert "3 cases given their obligation rows (3 owe something now)" in ran.stdout
    assert f"left 1: its program 'weekly' is not among this installation's: {stories[3].case.number}" in (
        ran.stdout
    )
    async with store.connect() as conn:
        owing = set((await conn.execute(select(case_obligations.c.case_number))).scalars())
        due = dict((await conn.execute(select(cases.c.number, cases.c.next_due))).all())
    assert owing == {s.case.number for s in stories[:3]}
    assert all(due[s.case.number] is not None for s in stories[:3])  # the list sorts them by it again
    await store.dispose()
