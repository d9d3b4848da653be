"""The case list from the record, on SQLite and PostgreSQL: each caller's list holds their cases
and no others, soonest due first, paged without repeating or skipping a case while cases are
opened between pages, filtered as asked; through the API (no Temporal needed: the list reads the
record) and the CLI.

Cases are told in memory (tests/scenario.py) and recorded as the workflow records them; what
each list should hold is worked out here from the cases themselves (`domain.schedule`)."""

from __future__ import annotations

import asyncio
import json
import random
import re
from collections.abc import Callable, Iterable
from datetime import UTC, datetime, timedelta

import httpx
import pytest
from alembic import command
from alembic.config import Config
from sqlalchemy import select
from sqlalchemy.engine import Connection
from sqlalchemy.ext.asyncio import AsyncEngine
from temporalio.client import Client

from activities.contracts import RecordBatch
from activities.records import CaseRecorder
from api.app import PageTokens, create_app
from domain import commands as c
from domain.access import Scope, may_see, scope_of
from domain.case import open_case
from domain.models import Actor, RiskLevel, Role, Stage
from domain.schedule import next_deadline
from domain.views import Order
from service.caselist import CaseFilter, CaseList, Position
from service.facade import CaseOps
from service.refusals import CaseError
from store.db import MIGRATIONS
from store.tables import cases
from tests.integration.test_callback import DIRECTORY, serving
from tests.processes import casework, environment, free_port
from tests.scenario import ALICE, BOB, LEAD, PROGRAMS, SAM, T0, Story, assessment, opening
from tests.terminal import KEYS

pytestmark = pytest.mark.asyncio(loop_scope="session")
SUE = Actor(id="sue", role=Role.SUPERVISOR)
NOW = T0 + timedelta(days=30)  # when the lists are asked for: some cases overdue by then, some not
SECRET = b"the API's page token secret, for this test"


@pytest.fixture
def store(empty_record: AsyncEngine) -> AsyncEngine:
    """An empty record of the test's own (tests/conftest.py `empty_record`)."""
    return empty_record


class ListedCase(Story):
    """A case opened at `opened` under `supervisor`, taken some way along the happy path; some are
    moved to bob, some put on hold (nothing is due while held), some withdrawn (closed)."""

    def __init__(self, rng: random.Random, opened: datetime, program: str, manager: str, supervisor: Actor):
        self.program = PROGRAMS[program]
        self.now = opened
        command = opening(program, rng.choice(list(RiskLevel))).model_copy(
            update={"supervisor": supervisor.id}
        )
        self.case, first = open_case(command, self.program, opened)
        self.events = [first]
        self.states = [self.case]
        for change in (c.Accept(actor=ALICE), c.CompleteAssessment(actor=ALICE, assessment=assessment())):
            if rng.random() < 0.4:
                break
            self.do(change, after=timedelta(hours=rng.randint(1, 90)))
        if manager != "alice":
            self.do(c.Transfer(actor=supervisor, to_manager=manager, reason="caseload balance"))
        theirs = Actor(id=manager, role=Role.CASE_MANAGER)
        if rng.random() < 0.15:
            self.do(c.Suspend(actor=theirs, reason="client in hospital"))
        elif rng.random() < 0.15:
            self.do(c.Withdraw(actor=theirs, reason="moved away"))


def a_case(
    rng: random.Random,
    program: str = "general",
    manager: str = "alice",
    supervisor: Actor = SAM,
    opened: datetime | None = None,
) -> ListedCase:
    """A case opened in the month before NOW (or when `opened`)."""
    at = opened or T0 + timedelta(days=rng.uniform(0, 25))
    return ListedCase(rng, at, program, manager, supervisor)


def caseload(seed: int = 3, count: int = 24) -> list[ListedCase]:
    """alice's and bob's cases under sam, and alice's under sue, in the general and housing programs."""
    rng = random.Random(seed)
    people = [("alice", SAM), ("bob", SAM), ("alice", SUE)]
    return [a_case(rng, ("general", "housing")[i % 2], *people[i % len(people)]) for i in range(count)]


async def record(store: AsyncEngine, stories: Iterable[Story]) -> None:
    recorder = CaseRecorder(store, programs=PROGRAMS)
    for story in stories:
        await recorder.record(RecordBatch(case=story.case, case_seq=len(story.events), events=story.events))


def due_order(stories: Iterable[Story]) -> list[str]:
    """Open cases soonest due first (ties by number), then those with nothing due, by number."""
    open_ones = [s for s in stories if s.case.is_open]
    dated = sorted(
        (due, s.case.number) for s in open_ones if (due := next_deadline(s.case, s.program)) is not None
    )
    undated = sorted(s.case.number for s in open_ones if next_deadline(s.case, s.program) is None)
    return [number for _, number in dated] + undated


async def every_page(
    listed: CaseList, filt: CaseFilter | None = None, order: Order = "next_due", size: int = 4
) -> list[str]:
    """Every case of the list, read `size` at a time."""
    filt = filt or CaseFilter()
    numbers: list[str] = []
    page = await listed.page(filt, order, size)
    numbers += [row.number for row in page.items]
    while page.following is not None:
        page = await listed.page(filt, order, size, page.following)
        assert 0 < len(page.items) <= size
        numbers += [row.number for row in page.items]
    return numbers


async def test_a_caseworkers_list_holds_only_her_cases(store: AsyncEngine) -> None:
    stories = caseload()
    await record(store, stories)
    for reader in (ALICE, BOB, SAM, SUE, LEAD, Actor(id="lead-housing", role=Role.PROGRAM_LEAD)):
        scope = scope_of(reader, PROGRAMS)
        assert scope is not None
        listed = await every_page(CaseList(store, scope, NOW), CaseFilter(closed=True))
        theirs = {s.case.number for s in stories if may_see(reader, s.case, PROGRAMS)}
        assert sorted(listed) == sorted(theirs), reader.id
        assert 0 < len(theirs) < len(stories)
    nobodys = Scope(programs=())  # a lead of no program sees nothing
    assert (await CaseList(store, nobodys, NOW).page(CaseFilter(closed=True))).items == []


async def test_cases_come_soonest_due_first_and_those_with_nothing_due_last(store: AsyncEngine) -> None:
    stories = caseload()
    await record(store, stories)
    everyone = CaseList(store, Scope(everything=True), NOW)

    assert await every_page(everyone) == due_order(stories)
    assert any(next_deadline(s.case, s.program) is None for s in stories if s.case.is_open)  # on hold
    for row in (await everyone.page(CaseFilter(), size=100)).items:
        story = next(s for s in stories if s.case.number == row.number)
        due = next_deadline(story.case, story.program)
        assert (row.next_due, row.overdue) == (due, due is not None and due <= NOW)
        assert (row.stage, row.manager, row.status) == (story.case.stage, story.case.manager, "open")
    newest = sorted(stories, key=lambda s: (s.case.opened_at, s.case.number), reverse=True)
    assert await every_page(everyone, CaseFilter(closed=True), "newest") == [s.case.number for s in newest]


def sort_key(order: Order, story: Story) -> tuple[object, ...]:
    """Where a case sorts in a list: the order the list is expected to keep, worked out here."""
    if order == "newest":  # newest first: the later opening, then the greater number, sorts first
        return (-story.case.opened_at.timestamp(), tuple(-ord(ch) for ch in story.case.number))
    due = next_deadline(story.case, story.program)
    return (0, due, story.case.number) if due is not None else (1, story.case.number)


@pytest.mark.parametrize("order", ["next_due", "newest"])
async def test_pages_do_not_repeat_or_skip_a_case_while_cases_are_opened_between_pages(
    store: AsyncEngine, order: Order
) -> None:
    rng = random.Random(11)
    there = [a_case(rng, opened=NOW - timedelta(days=rng.uniform(0, 8))) for _ in range(8)]
    # and four imported at one moment: ties in both orders, which the case number breaks
    there += [a_case(random.Random(5), opened=NOW - timedelta(days=4)) for _ in range(4)]
    await record(store, there)
    listed = CaseList(store, Scope(manager="alice"), NOW)
    everything = CaseFilter(closed=True)
    page = await listed.page(everything, order, 6)
    seen = [row.number for row in page.items]
    # while she reads the first page, cases are opened (the newest of all, due at any time): those
    # that sort before where she is are not shown, those after are, and nothing moves under her
    opened = [a_case(rng, opened=NOW - timedelta(hours=i)) for i in range(8)]
    await record(store, opened)
    while page.following is not None:
        page = await listed.page(everything, order, 6, page.following)
        seen += [row.number for row in page.items]

    stories = {s.case.number: s for s in there + opened}
    boundary = sort_key(order, stories[seen[5]])
    after_her = [s for s in opened if sort_key(order, s) > boundary]
    expected = sorted(there + after_her, key=lambda s: sort_key(order, s))
    assert seen == [s.case.number for s in expected]  # each case once, none skipped, in order
    if order == "newest":
        assert not after_her  # all newer than the first page: a list by OFFSET would repeat 8 cases
    else:
        assert 0 < len(after_her) < len(opened)


async def test_filters_narrow_the_list_as_asked(store: AsyncEngine) -> None:
    stories = caseload(seed=5, count=30)
    await record(store, stories)
    everyone = CaseList(store, Scope(everything=True), NOW)
    soon = NOW + timedelta(days=3)

    def due(s: Story) -> datetime | None:
        return next_deadline(s.case, s.program)

    asked: dict[str, tuple[CaseFilter, Callable[[Story], bool]]] = {
        "stage": (CaseFilter(stage=Stage.ASSESSMENT), lambda s: s.case.stage is Stage.ASSESSMENT),
        "program": (CaseFilter(program="housing"), lambda s: s.case.is_open and s.case.program == "housing"),
        "manager": (CaseFilter(manager="bob"), lambda s: s.case.is_open and s.case.manager == "bob"),
        "risk": (CaseFilter(risk=RiskLevel.HIGH), lambda s: s.case.is_open and s.case.risk is RiskLevel.HIGH),
        "overdue": (CaseFilter(overdue=True), lambda s: (d := due(s)) is not None and d <= NOW),
        "not overdue": (
            CaseFilter(overdue=False),
            lambda s: s.case.is_open and ((d := due(s)) is None or d > NOW),
        ),
        "due before": (CaseFilter(next_due_before=soon), lambda s: (d := due(s)) is not None and d < soon),
        "on hold": (CaseFilter(stage=Stage.ON_HOLD), lambda s: s.case.stage is Stage.ON_HOLD),
        "closed too": (CaseFilter(closed=True), lambda s: True),
        "closed only": (CaseFilter(stage=Stage.CLOSED), lambda s: not s.case.is_open),
        "two at once": (
            CaseFilter(manager="alice", overdue=True),
            lambda s: s.case.manager == "alice" and (d := due(s)) is not None and d <= NOW,
        ),
    }
    for name, (filt, wanted) in asked.items():
        expected = [s for s in stories if wanted(s)]
        assert sorted(await every_page(everyone, filt)) == sorted(s.case.number for s in expected), name
        assert 0 < len(expected) < len(stories) or name == "closed too", f"no case tells {name} apart"


async def test_a_page_token_is_a_position_and_nothing_else(store: AsyncEngine) -> None:
    listed = CaseList(store, Scope(everything=True), NOW)
    for raw in (b"", b"not json", b'{"order": "by whim", "key": null, "number": "X"}', b"[1, 2]"):
        with pytest.raises(CaseError, match="not a case list position") as refused:
            await listed.page(CaseFilter(), "next_due", 10, Position.decode(raw))
        assert refused.value.kind == "bad_request"
    with pytest.raises(CaseError, match="sorted by newest"):
        await listed.page(CaseFilter(), "next_due", 10, Position("newest", NOW, "X"))


# --- through the API and the CLI: only the record is needed ---------------------------------


async def an_api(store: AsyncEngine) -> CaseOps:
    """The case service with a Temporal that is not there: a list must not need it."""
    nowhere = await Client.connect(f"127.0.0.1:{free_port()}", lazy=True)
    return CaseOps(nowhere, PROGRAMS, "nowhere", record=store)


async def test_the_api_lists_the_callers_cases_a_page_at_a_time(store: AsyncEngine) -> None:
    stories = caseload()
    await record(store, stories)
    app = create_app(await an_api(store), DIRECTORY, KEYS, store, token_secret=SECRET)
    async with serving(app) as base, httpx.AsyncClient(base_url=base, timeout=30) as http:

        async def listed(who: str, **params: str | int) -> list[str]:
            numbers: list[str] = []
            token = None
            while True:
                asked = params | ({"page_token": token} if token else {})
                answer = await http.get(
                    "/cases", params=asked, headers={"Authorization": f"Bearer key-{who}"}
                )
                assert answer.status_code == 200, answer.text
                numbers += [row["number"] for row in answer.json()["items"]]
                if (token := answer.json()["next_page_token"]) is None:
                    return numbers

        assert await listed("alice", page_size=3) == due_order(
            s for s in stories if s.case.manager == "alice"
        )
        archived = await listed("sam", page_size=5, archived="true", sort="newest")
        assert sorted(archived) == sorted(s.case.number for s in stories if s.case.supervisor == "sam")

        def problem(answer: httpx.Response) -> str:
            assert answer.status_code == 400, answer.text
            assert answer.headers["content-type"] == "application/problem+json"
            return str(answer.json()["detail"])

        sam = {"Authorization": "Bearer key-sam"}
        assert "not one this API gave out" in problem(await http.get("/cases?page_token=!!", headers=sam))
        forged = PageTokens(b"another secret").seal(Position("next_due", None, "A").encode())
        assert "not one this API gave out" in problem(
            await http.get(f"/cases?page_token={forged}", headers=sam)
        )
        temporal_token = PageTokens(SECRET).seal(b"\x0a\x10a token Temporal once gave out")
        assert "not a case list position" in problem(
            await http.get(f"/cases?page_token={temporal_token}", headers=sam)
        )
        newest = (await http.get("/cases", params={"sort": "newest", "page_size": 2}, headers=sam)).json()
        assert "sorted by newest" in problem(
            await http.get("/cases", params={"page_token": newest["next_page_token"]}, headers=sam)
        )
        assert (await http.get("/cases", headers={"Authorization": "Bearer key-provider"})).status_code == 403


async def test_casework_list_shows_next_due_soonest_first(store: AsyncEngine) -> None:
    stories = caseload()
    await record(store, stories)
    app = create_app(await an_api(store), DIRECTORY, KEYS, store)
    async with serving(app) as base:
        env = environment(api_url=base, api_key="key-alice")
        table = await asyncio.to_thread(casework, "list", env=env)
        listed = await asyncio.to_thread(casework, "list", "--json", "--limit", "5", env=env)
        newest = await asyncio.to_thread(casework, "list", "--sort", "newest", "--closed", "--json", env=env)
    assert table.returncode == 0, table.stderr
    assert "next due" in table.stdout
    alices = [s for s in stories if s.case.manager == "alice"]
    expected = due_order(alices)
    assert re.findall(r"T-[0-9A-F]{10}", table.stdout) == expected
    assert [row["number"] for row in json.loads(listed.stdout)] == expected[:5]
    by_opening = sorted(alices, key=lambda s: (s.case.opened_at, s.case.number), reverse=True)
    assert [row["number"] for row in json.loads(newest.stdout)] == [s.case.number for s in by_opening]


# --- the record keeps the sort key ------------------------------------------------------------


def _to_revision(connection: Connection, revision: str, up: bool) -> None:
    config = Config()
    config.set_main_option("script_location", str(MIGRATIONS))
    config.attributes["connection"] = connection
    (command.upgrade if up else command.downgrade)(config, revision)


async def next_dues(store: AsyncEngine) -> dict[str, datetime | None]:
    async with store.connect() as conn:
        rows = (await conn.execute(select(cases.c.number, cases.c.next_due))).all()
    # SQLite hands times back without their zone; they were written in UTC
    return {number: due.replace(tzinfo=UTC) if due else None for number, due in rows}


async def test_a_record_from_before_the_list_gets_its_next_due_by_migration(store: AsyncEngine) -> None:
    stories = caseload()
    await record(store, stories)
    expected = {s.case.number: next_deadline(s.case, s.program) for s in stories}
    assert await next_dues(store) == expected

    async with store.begin() as conn:
        await conn.run_sync(_to_revision, "0007_report_projection", False)
    async with store.begin() as conn:
        await conn.run_sync(_to_revision, "head", True)
    assert await next_dues(store) == expected  # from the obligations the record had
