"""A thousand cases, as the workflow would record them: every report the database computes is
the figure a supervisor would get by going through the cases one by one, and each caller's
reports count their own caseload only.

The expected figures are worked out here in plain Python, from the generated cases and their
events (the way reports were computed before the database did it)."""

from __future__ import annotations

import asyncio
import itertools
import random
import statistics
from collections import Counter, defaultdict
from collections.abc import AsyncIterator, Callable
from datetime import datetime, timedelta
from typing import Any

import pytest
import pytest_asyncio
from sqlalchemy.ext.asyncio import AsyncEngine

from activities.contracts import RecordBatch
from activities.records import CaseRecorder
from domain import commands as c
from domain.access import may_see, scope_of
from domain.case import notice_for, open_case
from domain.events import Change
from domain.models import Actor, FollowUpKind, ReferralStatus, RiskLevel, Role, ServiceType, Stage
from domain.schedule import next_due, overdue
from service.reports import Reports, percentile, week_ends, week_of
from store.db import engine, migrate
from tests.conftest import PG_URL, fresh_postgres_database
from tests.scenario import ALICE, PROGRAMS, T0, Story, assessment, goals, opening

CASES = 1000
SUPERVISORS = ("sam", "sue")
MANAGERS = ("alice", "bob", "carol")
REFERRALS = (("shelter-north", ServiceType.HOUSING), ("clinic-east", ServiceType.MEDICAL))


class GeneratedCase(Story):
    """A case opened by alice in one of two programs under one of two supervisors, taken some
    way along its path with gaps of hours to days, notices issued as the workflow would."""

    def __init__(self, rng: random.Random, i: int) -> None:
        program = ("general", "housing")[i % 2]
        self.supervisor = Actor(id=SUPERVISORS[i % 3 % 2], role=Role.SUPERVISOR)
        self.rng = rng
        self.program = PROGRAMS[program]
        self.now = T0 + timedelta(days=rng.randint(0, 120), hours=rng.randint(0, 23))
        start = opening(program, RiskLevel.LOW).model_copy(update={"supervisor": self.supervisor.id})
        self.case, first = open_case(start, self.program, self.now)
        self.events = [first]
        self.states = [self.case]

    def later(self, change: Change) -> None:
        """The change after a while; the notices that fell due meanwhile are issued first."""
        self.now += timedelta(hours=self.rng.randint(1, 240))
        while (
            (due := next_due(self.case, self.program, self.now))
            and due.kind != "archive"
            and due.at <= self.now
        ):
            self.do(notice_for(self.case, due, self.program), after=timedelta(0))
        self.do(change, after=timedelta(0))

    def refer(self) -> None:
        provider, service = self.rng.choice(REFERRALS)
        self.later(
            c.Refer(actor=ALICE, provider=provider, service=service, reason="needs it", share=frozenset())
        )
        if self.rng.random() < 0.75:
            answer = self.rng.choice(["accepted", "declined"])
            self.later(
                c.AnswerReferral(
                    actor=Actor(id=provider, role=Role.PROVIDER),
                    referral_id=self.case.referrals[-1].id,
                    answer=answer,
                    reason="no capacity" if answer == "declined" else "",
                )
            )

    def tell(self) -> GeneratedCase:
        path: list[Callable[[], None]] = [
            lambda: self.later(c.Accept(actor=ALICE)),
            self.refer,
            lambda: self.later(
                c.ScheduleFollowUp(
                    actor=ALICE, kind=FollowUpKind.HOME_VISIT, at=self.now + timedelta(days=20)
                )
            ),
            lambda: self.later(c.CompleteAssessment(actor=ALICE, assessment=assessment(RiskLevel.LOW))),
            self.refer,
            lambda: self.later(c.SubmitPlan(actor=ALICE, goals=goals())),
            lambda: self.later(c.ApprovePlan(actor=ALICE)),
            lambda: self.later(c.StartMonitoring(actor=ALICE)),
            lambda: self.later(c.BeginEvaluation(actor=ALICE)),
            lambda: self.later(c.Close(actor=ALICE, outcome="goals_met", goals_met=["g1", "g2"])),
        ]
        for step in path[: self.rng.randint(0, len(path))]:
            step()
        if self.case.is_open and self.rng.random() < 0.1:
            self.later(c.Suspend(actor=ALICE, reason="client in hospital"))
            if self.rng.random() < 0.5:
                self.later(c.Resume(actor=ALICE))
        if self.case.is_open and self.rng.random() < 0.15:
            self.later(c.Withdraw(actor=ALICE, reason="moved away"))
        manager = self.rng.choice(MANAGERS)
        if self.case.is_open and manager != "alice":
            self.later(c.Transfer(actor=self.supervisor, to_manager=manager, reason="caseload balance"))
        return self


@pytest_asyncio.fixture(
    scope="module", loop_scope="session", params=["sqlite", *(["postgresql"] if PG_URL else [])]
)
async def record_of_a_thousand(
    request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory
) -> AsyncIterator[tuple[AsyncEngine, list[GeneratedCase]]]:
    """Recorded once per database for all the scenarios (they only read)."""
    stories = [GeneratedCase(random.Random(i), i).tell() for i in range(CASES)]
    if request.param == "sqlite":
        eng = engine(f"sqlite+aiosqlite:///{tmp_path_factory.mktemp('reports') / 'reports.db'}")
        yield await recorded(eng, stories), stories
        await eng.dispose()
    else:
        assert PG_URL is not None
        async with fresh_postgres_database(PG_URL) as url:
            eng = engine(url)
            yield await recorded(eng, stories), stories
            await eng.dispose()


async def recorded(eng: AsyncEngine, stories: list[GeneratedCase]) -> AsyncEngine:
    """Each case recorded as the workflow does: its events in two batches, with its program;
    every case's first batch at once, then every second one, as a busy worker records (written
    together, activities.records.RecordingTurns)."""
    await migrate(eng)
    recorder = CaseRecorder(eng)
    halves: tuple[list[RecordBatch], list[RecordBatch]] = ([], [])
    for story in stories:
        cut = len(story.events) // 2 or 1
        for half, (first, last) in zip(halves, ((0, cut), (cut, len(story.events))), strict=True):
            if first < last:
                events = story.events[first:last]
                seq = len(story.events)
                half.append(RecordBatch(case=story.case, case_seq=seq, events=events, program=story.program))
    for half in halves:
        await asyncio.gather(*(recorder.record(batch) for batch in half))
    return eng


# --- the same figures, worked out case by case ------------------------------------------------


def moves(story: Story) -> list[tuple[datetime, Stage]]:
    return [(e.at, e.stage_after) for e in story.events if e.stage_before != e.stage_after]


def expected(stories: list[GeneratedCase], now: datetime) -> dict[str, list[tuple[Any, ...]]]:
    load = Counter((s.case.manager, s.case.stage.value) for s in stories if s.case.is_open)
    late: Counter[tuple[str, str]] = Counter()
    for s in stories:
        for item in overdue(s.case, s.program, now):
            level = "not yet escalated" if item.level is None else f"level {item.level} ({item.notified})"
            late[(s.case.manager, level)] += 1
    referrals: dict[tuple[str, str], list[Any]] = defaultdict(list)
    for s in stories:
        for r in s.case.referrals:
            referrals[(r.provider, r.service)].append(r)
    spans: dict[str, list[float]] = defaultdict(list)
    for s in stories:
        stays = moves(s)
        for (at, stage), (later, _) in itertools.pairwise(stays):
            spans[stage.value].append((later - at).total_seconds() / 86400)
        if s.case.is_open:
            spans[stays[-1][1].value].append((now - stays[-1][0]).total_seconds() / 86400)
    opened = Counter(week_of(s.case.opened_at) for s in stories)
    closed = Counter(week_of(s.case.closed_at) for s in stories if s.case.closed_at)
    return {
        "caseload": sorted((m, st, n) for (m, st), n in load.items()),
        "overdue": sorted((m, level, n) for (m, level), n in late.items()),
        "referrals": [referral_row(key, rows) for key, rows in sorted(referrals.items())],
        "stages": [
            (stage, len(d), round(statistics.median(d), 2), round(percentile(d, 90), 2))
            for stage, d in sorted(spans.items())
        ],
        "weekly": [(w, opened[w], closed[w]) for w in sorted(set(opened) | set(closed))],
    }


def referral_row(key: tuple[str, str], referrals: list[Any]) -> tuple[Any, ...]:
    # what the provider answered: accepted, even if the case's end revoked it since
    revoked = ReferralStatus.REVOKED
    accepted = sum(
        r.status is ReferralStatus.ACCEPTED or (r.status is revoked and r.answered_at is not None)
        for r in referrals
    )
    declined = sum(r.status is ReferralStatus.DECLINED for r in referrals)
    waits = [(r.answered_at - r.requested_at).total_seconds() / 3600 for r in referrals if r.answered_at]
    rate = round(accepted / (accepted + declined), 3) if accepted + declined else None
    median = round(statistics.median(waits), 1) if waits else None
    return (*key, len(referrals), accepted, declined, rate, median)


def stages_at(stories: list[GeneratedCase], ends: list[datetime]) -> dict[str, list[int]]:
    series: dict[str, list[int]] = {s.value: [] for s in Stage}
    for end in ends:
        counts = Counter(
            stays[-1][1].value for s in stories if (stays := [m for m in moves(s) if m[0] <= end])
        )
        for stage, values in series.items():
            values.append(counts[stage])
    return series


# --- the scenarios -------------------------------------------------------------------------------


@pytest.mark.asyncio(loop_scope="session")
async def test_every_report_over_a_thousand_cases_is_the_count_a_person_would_make(
    record_of_a_thousand: tuple[AsyncEngine, list[GeneratedCase]],
) -> None:
    store, stories = record_of_a_thousand
    now = max(s.now for s in stories) + timedelta(days=3)
    system = Actor(id="casework", role=Role.SYSTEM)
    reports = Reports(store, scope_of(system, PROGRAMS) or pytest.fail("system sees all"), now)

    found = {name: report.rows for name, report in (await reports.all()).items()}

    assert found == expected(stories, now)
    assert sum(n for *_, n in found["overdue"]) > 0 and any("level" in row[1] for row in found["overdue"])
    ends = week_ends(now - timedelta(days=60))
    assert await reports.stages_over_time(ends) == stages_at(stories, ends)


@pytest.mark.asyncio(loop_scope="session")
@pytest.mark.parametrize(
    "reader",
    [
        Actor(id="sam", role=Role.SUPERVISOR),
        Actor(id="sue", role=Role.SUPERVISOR),
        Actor(id="lead-housing", role=Role.PROGRAM_LEAD),
        Actor(id="lead-of-nothing", role=Role.PROGRAM_LEAD),
        Actor(id="bob", role=Role.CASE_MANAGER),
    ],
    ids=lambda a: a.id,
)
async def test_each_reader_counts_the_cases_they_may_see_and_no_others(
    record_of_a_thousand: tuple[AsyncEngine, list[GeneratedCase]], reader: Actor
) -> None:
    store, stories = record_of_a_thousand
    now = max(s.now for s in stories) + timedelta(days=3)
    scope = scope_of(reader, PROGRAMS)
    assert scope is not None
    theirs = [s for s in stories if may_see(reader, s.case, PROGRAMS)]

    found = {name: report.rows for name, report in (await Reports(store, scope, now).all()).items()}

    assert found == expected(theirs, now)
    if reader.id == "lead-of-nothing":
        assert not theirs and all(rows == [] for rows in found.values())
    else:
        assert 0 < len(theirs) < len(stories)
