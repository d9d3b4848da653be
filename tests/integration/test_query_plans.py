"""No list or report query reads a whole table: on PostgreSQL, over 10,000 synthetic cases
(bench/synthetic.py, analysed), the plan of every statement the case list, the reports and a
case's events and notes run has no sequential scan on cases, case_events or case_referrals.

The statements are the product's own: captured from the engine (`before_cursor_execute`) while
the real `CaseList.page`, `Reports` methods and `CaseOps.events` / `notes` run, then explained
with the parameters they ran with. Reports are checked for the scopes that are a small part of
the record (a supervisor's, a case manager's): a reader who sees everything counts every row,
and reading the whole table is then the right plan. The referral outcomes read each referral's
own copy of its case's scope (migration 0011): joined to `cases` instead, PostgreSQL read all of
`case_referrals` even for a case manager's 3 % of the record.

Dropping any of the list's indexes (store/migrations/versions/0008_case_list.py) makes this fail.
The record is analysed first, as autovacuum would have it: without statistics PostgreSQL guesses
how many rows a filter keeps, and plans differ."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from contextlib import asynccontextmanager
from dataclasses import dataclass
from datetime import timedelta
from typing import Any

import pytest
import pytest_asyncio
from sqlalchemy import event
from sqlalchemy.ext.asyncio import AsyncEngine
from temporalio.client import Client

from activities.contracts import AppliedKey, RecordBatch
from activities.records import CaseRecorder
from bench.synthetic import NOW, fill
from domain import commands as c
from domain.access import Scope
from domain.models import RiskLevel, Stage
from domain.views import ORDERS
from service.caselist import CaseFilter, CaseList, Position
from service.facade import CaseOps
from service.reports import Reports, week_ends
from store.db import engine, migrate
from tests.conftest import PG_URL, fresh_postgres_database
from tests.processes import free_port
from tests.scenario import ALICE, PROGRAMS, Story

pytestmark = [
    pytest.mark.asyncio(loop_scope="session"),
    pytest.mark.skipif(
        not (PG_URL or "").startswith("postgresql"),
        reason="query plans are PostgreSQL's: set CASEWORK_TEST_DATABASE_URL to a PostgreSQL server",
    ),
]
CASES = 10_000
# the tables that grow with the caseload
WATCHED = ("cases", "case_events", "case_referrals", "case_command_keys")


@dataclass(frozen=True)
class Ran:
    """A statement as the product ran it, and what ran it."""

    what: str
    sql: str
    parameters: Any


@pytest_asyncio.fixture(scope="module", loop_scope="session")
async def caseload() -> AsyncIterator[tuple[AsyncEngine, str]]:
    """10,000 synthetic cases, and one real case with a long history (its events and notes)."""
    assert PG_URL is not None
    async with fresh_postgres_database(PG_URL) as url:
        eng = engine(url)
        await migrate(eng)
        await fill(eng, CASES)  # ends with ANALYZE
        yield eng, await a_long_case(eng)
        await eng.dispose()


async def a_long_case(eng: AsyncEngine) -> str:
    """A case with 300 notes, recorded as the workflow records it (in clear: no master key)."""
    story = Story("general").to(Stage.MONITORING)
    for i in range(300):
        story.do(c.AddNote(actor=ALICE, text=f"call {i}"), after=timedelta(minutes=5))
    await CaseRecorder(eng, programs=PROGRAMS).record(
        RecordBatch(
            case=story.case,
            case_seq=len(story.events),
            events=story.events,
            keys=[
                AppliedKey(key=f"alice:call-{e.seq}", seq=e.seq)
                for e in story.events
                if e.action == "add_note"
            ],
        )
    )
    return story.case.number


@asynccontextmanager
async def capturing(eng: AsyncEngine, what: str) -> AsyncIterator[list[Ran]]:
    """Every statement the engine runs inside the block, as `what` ran it."""
    ran: list[Ran] = []

    def remember(conn: Any, cursor: Any, sql: str, parameters: Any, context: Any, many: bool) -> None:
        ran.append(Ran(what, sql, parameters))

    event.listen(eng.sync_engine, "before_cursor_execute", remember)
    try:
        yield ran
    finally:
        event.remove(eng.sync_engine, "before_cursor_execute", remember)


async def captured(eng: AsyncEngine, what: str, run: Callable[..., Awaitable[Any]], *args: Any) -> list[Ran]:
    """The statements on the watched tables that `run(*args)` runs."""
    async with capturing(eng, what) as ran:
        await run(*args)
    return [r for r in ran if any(table in r.sql for table in WATCHED)]


def nodes(plan: dict[str, Any]) -> Iterator[dict[str, Any]]:
    yield plan
    for child in plan.get("Plans", []):
        yield from nodes(child)


async def sequential_scans(eng: AsyncEngine, ran: Ran) -> list[str]:
    """The watched tables the statement's plan reads whole."""
    async with eng.connect() as conn:
        result = await conn.exec_driver_sql(f"EXPLAIN (FORMAT JSON) {ran.sql}", ran.parameters)
        found = result.scalar_one()
    [explained] = json.loads(found) if isinstance(found, str) else found
    return [
        node["Relation Name"]
        for node in nodes(explained["Plan"])
        if node["Node Type"] == "Seq Scan" and node.get("Relation Name") in WATCHED
    ]


async def no_sequential_scans(eng: AsyncEngine, statements: list[Ran]) -> None:
    assert statements, "no statement on the watched tables was captured"
    failures = [
        f"Seq Scan on {', '.join(tables)} in {ran.what}:\n{ran.sql}\nparameters: {ran.parameters}"
        for ran in statements
        if (tables := await sequential_scans(eng, ran))
    ]
    assert not failures, f"{len(failures)} of {len(statements)} statements read a whole table:\n\n" + (
        "\n\n".join(failures)
    )


# Scopes as domain.access gives them to people of the synthetic caseload (bench/synthetic.py).
SCOPES = {
    "case manager": Scope(manager="cm-07"),
    "supervisor": Scope(supervisor="sup-2"),
    "lead of a program": Scope(programs=("housing",)),
    "lead of two programs": Scope(programs=("housing", "recovery")),
    "everyone": Scope(everything=True),
}
FILTERS = {
    "none": CaseFilter(),
    "stage": CaseFilter(stage=Stage.MONITORING),
    "program": CaseFilter(program="housing"),
    "manager": CaseFilter(manager="cm-12"),
    "risk": CaseFilter(risk=RiskLevel.HIGH),
    "overdue": CaseFilter(overdue=True),
    "not overdue": CaseFilter(overdue=False),
    "due before": CaseFilter(next_due_before=NOW - timedelta(days=200)),
    "closed too": CaseFilter(closed=True),
    "closed only": CaseFilter(stage=Stage.CLOSED),
}


@pytest.mark.parametrize("scope", SCOPES, ids=str)
async def test_every_page_of_a_case_list_reads_by_index(
    caseload: tuple[AsyncEngine, str], scope: str
) -> None:
    eng, _ = caseload
    listed = CaseList(eng, SCOPES[scope], NOW)
    statements: list[Ran] = []
    for order in ORDERS:
        for name, filt in FILTERS.items():
            first = await listed.page(filt, order, 50)
            what = f"{scope}'s list by {order}, filter {name}"
            statements += await captured(eng, f"{what}, first page", listed.page, filt, order, 50)
            if first.following is not None:
                statements += await captured(
                    eng, f"{what}, next page", listed.page, filt, order, 50, first.following
                )
    # a page among the cases with nothing due (they come after the dated ones)
    tail = Position("next_due", None, "B-0005000")
    statements += await captured(
        eng, f"{scope}'s list, among the undated", listed.page, FILTERS["closed too"], "next_due", 50, tail
    )
    await no_sequential_scans(eng, statements)


@pytest.mark.parametrize("scope", ["case manager", "supervisor"], ids=str)
async def test_the_reports_over_a_small_caseload_read_by_index(
    caseload: tuple[AsyncEngine, str], scope: str
) -> None:
    eng, _ = caseload
    reports = Reports(eng, SCOPES[scope], NOW)
    statements: list[Ran] = []
    for name in ("caseload", "overdue", "stages", "weekly"):
        statements += await captured(eng, f"{scope}'s {name} report", reports.named, name)
    statements += await captured(eng, f"{scope}'s stages chart", reports.stages_over_time, week_ends(NOW))
    await no_sequential_scans(eng, statements)


@pytest.mark.parametrize("scope", ["case manager", "supervisor"], ids=str)
async def test_referral_outcomes_over_a_small_caseload_read_by_index(
    caseload: tuple[AsyncEngine, str], scope: str
) -> None:
    eng, _ = caseload
    reports = Reports(eng, SCOPES[scope], NOW)
    await no_sequential_scans(
        eng, await captured(eng, f"{scope}'s referrals report", reports.named, "referrals")
    )


async def test_a_cases_events_and_notes_are_paged_by_index(caseload: tuple[AsyncEngine, str]) -> None:
    eng, number = caseload
    nowhere = await Client.connect(f"127.0.0.1:{free_port()}", lazy=True)  # the record is enough
    ops = CaseOps(nowhere, PROGRAMS, "nowhere", record=eng)
    statements = await captured(eng, "events, first page", ops.events, number)
    statements += await captured(eng, "events, a later page", ops.events, number, 150)
    statements += await captured(eng, "notes, newest", ops.notes, number)
    statements += await captured(eng, "notes, older", ops.notes, number, 100)
    statements += await captured(eng, "command keys, read to restore", ops._recorded_keys, number)
    await no_sequential_scans(eng, statements)


async def test_the_caseload_of_everything_counts_open_cases_from_their_own_index(
    caseload: tuple[AsyncEngine, str],
) -> None:
    """More than half the record is open, so without the partial index on open cases (migration
    0010) PostgreSQL reads the whole table. Last in this module: it vacuums, as autovacuum would
    (an index-only scan needs the visibility map), which the plans above were taken without."""
    eng, _ = caseload
    async with eng.connect() as conn:
        await conn.execution_options(isolation_level="AUTOCOMMIT")
        await conn.exec_driver_sql("VACUUM ANALYZE cases")
    reports = Reports(eng, SCOPES["everyone"], NOW)
    [ran] = await captured(eng, "the caseload of everything", reports.named, "caseload")
    async with eng.connect() as conn:
        found = (await conn.exec_driver_sql(f"EXPLAIN (FORMAT JSON) {ran.sql}", ran.parameters)).scalar_one()
    [explained] = json.loads(found) if isinstance(found, str) else found
    assert "ix_cases_open_manager_stage" in {node.get("Index Name") for node in nodes(explained["Plan"])}
