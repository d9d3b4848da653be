"""Engines, migrations and the idempotent writes the recording activity needs."""

from __future__ import annotations

import asyncio
import contextlib
import functools
import os
from collections.abc import AsyncIterator, Callable, Coroutine, Sequence
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any, TypeVar, cast

from alembic import command
from alembic.config import Config
from sqlalchemy import Table, create_engine, event
from sqlalchemy.engine import URL, Connection, Engine, make_url
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine, create_async_engine
from sqlalchemy.pool import NullPool

try:
    import fcntl
except ImportError:  # not on Windows: SQLite's busy handler alone orders the writers
    fcntl = None  # type: ignore[assignment]

MIGRATIONS = Path(__file__).parent / "migrations"


def async_url(url: str) -> str:
    """Accept plain URLs (postgresql://, sqlite:///) and pick the async drivers."""
    parsed = make_url(url)
    driver = {"postgresql": "postgresql+asyncpg", "sqlite": "sqlite+aiosqlite"}.get(parsed.drivername)
    return parsed.set(drivername=driver).render_as_string(hide_password=False) if driver else url


def engine(url: str) -> AsyncEngine:
    url = async_url(url)
    parsed = make_url(url)
    if parsed.get_backend_name() == "sqlite" and parsed.database not in (None, "", ":memory:"):
        Path(parsed.database).parent.mkdir(parents=True, exist_ok=True)
        # SQLite allows one writer: wait for the lock rather than fail at once.
        sqlite = create_async_engine(url, connect_args={"timeout": 30})
        event.listen(sqlite.sync_engine, "connect", _write_ahead_log)
        return sqlite
    return create_async_engine(url, pool_pre_ping=True)


def _write_ahead_log(dbapi_connection: Any, _record: Any) -> None:
    """A record file in WAL mode: readers (views, reports, the worker's key lookups) never hold
    off the one writer, nor it them, so the worker's recording and the API's key creation
    interleave instead of queueing on the file lock (with the default rollback journal, 20
    cases opened at once waited up to 3 s for it). `synchronous` stays FULL: a committed
    record survives a power cut."""
    cursor = dbapi_connection.cursor()
    cursor.execute("PRAGMA journal_mode=WAL")
    cursor.close()


class _Turns:
    """Writers of one SQLite file take turns: within a process through an asyncio lock, across
    processes (the worker, the API, the CLI) through an advisory lock on a file beside it.

    SQLite alone makes a writer that finds the file locked sleep on a backoff that reaches 100 ms
    sleeps, so under load a writer waited seconds while the lock stood free between tries: the
    API making a client's key waited 140-540 ms for the worker's recordings. The kernel wakes a
    waiter on `flock` the moment the lock is let go. SQLite's own locking still decides who
    writes; this only orders the queue (a writer that does not take its turn here is merely slower)."""

    def __init__(self, database: str) -> None:
        self.gate = asyncio.Lock()
        self.path = f"{database}-writers"

    @asynccontextmanager
    async def turn(self) -> AsyncIterator[None]:
        async with self.gate:
            fd = self._open()
            if fd is None:
                yield
                return
            try:
                await self._lock(fd)
                yield
            finally:
                os.close(fd)  # lets the lock go (opened per turn: no descriptor outlives it)

    def _open(self) -> int | None:
        if fcntl is None:
            return None
        try:
            return os.open(self.path, os.O_RDWR | os.O_CREAT, 0o600)
        except OSError:  # a read-only folder: SQLite's busy handler alone orders the writers
            return None

    @staticmethod
    async def _lock(fd: int) -> None:
        waiting = asyncio.get_running_loop().run_in_executor(None, fcntl.flock, fd, fcntl.LOCK_EX)
        try:
            await asyncio.shield(waiting)
        except asyncio.CancelledError:
            # The thread may still get the lock; the descriptor is closed on the way out, which
            # lets it go, but never before the thread is done with it (closed under a thread
            # that has not yet called flock, the number could be another file's by then): a
            # second cancel waits too. The wait is the other writer's transaction.
            while not waiting.done():
                with contextlib.suppress(asyncio.CancelledError):
                    await asyncio.wait([waiting])
            raise


_TURNS: dict[tuple[str, asyncio.AbstractEventLoop], _Turns] = {}


@asynccontextmanager
async def writing(eng: AsyncEngine) -> AsyncIterator[AsyncConnection]:
    """A write transaction. On SQLite, writers to a file take turns (`_Turns`): the file has one
    writer at a time. One queue per file and event loop: the worker and the API of `casework
    dev` have engines of their own."""
    if not _sqlite_file(eng):
        async with eng.begin() as conn:
            yield conn
        return
    async with _turns_at(str(eng.url.database)).turn(), eng.begin() as conn:
        yield conn


def _sqlite_file(eng: AsyncEngine) -> bool:
    """Whether `eng` writes a SQLite file: one writer at a time, writers taking turns."""
    return eng.dialect.name == "sqlite" and eng.url.database not in (None, "", ":memory:")


def _turns_at(database: str) -> _Turns:
    """The queue of this event loop's writers to a SQLite file."""
    key = (database, asyncio.get_running_loop())
    return _TURNS.get(key) or _TURNS.setdefault(key, _Turns(database))


T = TypeVar("T")


async def write_together(eng: AsyncEngine, work: Callable[[Any], Coroutine[Any, Any, T]]) -> T:
    """`work(conn)` in one write transaction, for a write of many statements (a group of
    recordings). On a SQLite file it runs in a thread with the synchronous driver, all of it in
    one hop: through the async driver every statement is a few hops between the event loop and
    the connection's thread, which cost the worker more CPU than SQLite's own work (recording a
    case: ~26 ms of CPU that way, ~11 ms this way, bench/recording.py). `work` is written against an async
    connection and must await nothing but its statements (`_AtOnce` runs each at once; a
    `work` that suspends on anything else is refused). Elsewhere (PostgreSQL, whose driver
    has no thread to hop to; an in-memory SQLite) it is simply `writing(eng)`."""
    if not _sqlite_file(eng):
        async with writing(eng) as conn:
            return await work(conn)
    database = str(eng.url.database)
    plain = _plain_engine(database)

    def run() -> T:
        with plain.begin() as conn:
            return _at_once(work(_AtOnce(conn)))

    async with _turns_at(database).turn():
        return await asyncio.to_thread(run)


def sync_engines(eng: AsyncEngine) -> list[Engine]:
    """Every engine a statement through `eng` may run on (`write_together` has one of its own
    on SQLite): where an event listener must hear all of them."""
    return [eng.sync_engine, *([_plain_engine(str(eng.url.database))] if _sqlite_file(eng) else [])]


@functools.cache
def _plain_engine(database: str) -> Engine:
    """The synchronous driver's engine for a SQLite file; no pool (a connection per write
    together: opening one is far cheaper than the write, and none outlives it)."""
    plain = create_engine(
        URL.create("sqlite", database=database),
        poolclass=NullPool,
        connect_args={"timeout": 30, "check_same_thread": False},
    )
    event.listen(plain, "connect", _write_ahead_log)
    return plain


class _AtOnce:
    """A synchronous connection with an async connection's `execute`: the statement runs when
    called, and the await that follows completes without suspending."""

    def __init__(self, conn: Connection) -> None:
        self.conn, self.dialect = conn, conn.dialect

    async def execute(self, statement: Any, parameters: Any = None) -> Any:
        return self.conn.execute(statement, parameters)


def _at_once(work: Coroutine[Any, Any, T]) -> T:
    """The result of a coroutine that never suspends, run to its end here."""
    try:
        work.send(None)
    except StopIteration as done:
        return cast(T, done.value)
    work.close()
    raise RuntimeError("a write together awaited something other than its statements")


def _upgrade(connection: Connection) -> None:
    config = Config()
    config.set_main_option("script_location", str(MIGRATIONS))
    config.attributes["connection"] = connection
    command.upgrade(config, "head")


async def migrate(eng: AsyncEngine) -> None:
    """Bring the schema to the newest migration. Safe to run at every start."""
    async with eng.begin() as conn:
        await conn.run_sync(_upgrade)


async def migrate_url(url: str) -> None:
    """`migrate` the record store at `url`, through an engine of its own (disposed after)."""
    record = engine(url)
    try:
        await migrate(record)
    finally:
        await record.dispose()


def _dialect_insert(conn: AsyncConnection, table: Table) -> Any:
    if conn.dialect.name == "postgresql":
        from sqlalchemy.dialects.postgresql import insert as pg_insert

        return pg_insert(table)
    if conn.dialect.name == "sqlite":
        from sqlalchemy.dialects.sqlite import insert as sqlite_insert

        return sqlite_insert(table)
    raise RuntimeError(f"unsupported database {conn.dialect.name}")  # pragma: no cover


async def upsert(
    conn: AsyncConnection, table: Table, rows: Sequence[dict[str, Any]], keys: Sequence[str]
) -> None:
    """Insert rows, or update the existing row with the same key."""
    if not rows:
        return
    stmt = _dialect_insert(conn, table)
    changed = {c.name: stmt.excluded[c.name] for c in table.columns if c.name not in keys}
    await conn.execute(stmt.on_conflict_do_update(index_elements=list(keys), set_=changed), list(rows))


async def upsert_newer(
    conn: AsyncConnection, table: Table, row: dict[str, Any], key: str, version: str
) -> bool:
    """Insert the row, or replace the row with the same key if its `version` is lower: one
    statement either way. Returns whether it wrote (False: the record holds a newer version)."""
    stmt = _dialect_insert(conn, table).values(row)
    changed = {name: stmt.excluded[name] for name in row if name != key}
    stmt = stmt.on_conflict_do_update(
        index_elements=[key], set_=changed, where=table.c[version] < stmt.excluded[version]
    )
    return bool((await conn.execute(stmt)).rowcount)


async def insert_ignoring_duplicates(
    conn: AsyncConnection, table: Table, rows: Sequence[dict[str, Any]], keys: Sequence[str]
) -> int:
    """Insert rows, skipping those whose key already exists. Returns how many were new.

    The rows go as parameters of one statement, never as its VALUES: a statement with the rows
    in it is compiled afresh for every call (SQLAlchemy caches by statement, and each list of
    rows made a new one: a fifth of a recording's time), while this one is compiled once per
    process and sent in batches of rows ("insertmanyvalues"); the keys it returns are the rows
    that were new."""
    if not rows:
        return 0
    stmt = _dialect_insert(conn, table).on_conflict_do_nothing(index_elements=list(keys))
    result = await conn.execute(stmt.returning(table.c[keys[0]]), list(rows))
    return len(result.all())
