"""Writers to a SQLite record take turns across processes (store/db.py `writing`): a writer
waits while another process writes, goes the moment it is done, and one that gives up waiting
does not keep the turn."""

from __future__ import annotations

import asyncio
import sys
from collections.abc import AsyncIterator
from pathlib import Path

import pytest
import pytest_asyncio
from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncEngine

from store.db import engine, writing

pytestmark = pytest.mark.asyncio(loop_scope="session")

# Another process taking its turn to write: holds it until told to let go on stdin.
HOLDER = """
import fcntl, os, sys
fd = os.open(sys.argv[1], os.O_RDWR | os.O_CREAT, 0o600)
fcntl.flock(fd, fcntl.LOCK_EX)
print("holding", flush=True)
sys.stdin.readline()
"""


@pytest_asyncio.fixture(loop_scope="session")
async def record(tmp_path: Path) -> AsyncIterator[AsyncEngine]:
    eng = engine(f"sqlite+aiosqlite:///{tmp_path / 'record.db'}")
    async with writing(eng) as conn:
        await conn.execute(text("CREATE TABLE notes (n INTEGER)"))
    yield eng
    await eng.dispose()


async def another_process_writing(eng: AsyncEngine) -> asyncio.subprocess.Process:
    holder = await asyncio.create_subprocess_exec(
        sys.executable,
        "-c",
        HOLDER,
        f"{eng.url.database}-writers",
        stdin=asyncio.subprocess.PIPE,
        stdout=asyncio.subprocess.PIPE,
    )
    assert holder.stdout is not None
    assert await asyncio.wait_for(holder.stdout.readline(), 30) == b"holding\n"
    return holder


async def done_with(holder: asyncio.subprocess.Process) -> None:
    assert holder.stdin is not None
    holder.stdin.write(b"done\n")
    await holder.stdin.drain()
    assert await asyncio.wait_for(holder.wait(), 30) == 0


async def write_note(eng: AsyncEngine, n: int) -> None:
    async with writing(eng) as conn:
        await conn.execute(text("INSERT INTO notes VALUES (:n)"), {"n": n})


async def notes(eng: AsyncEngine) -> list[int]:
    async with eng.connect() as conn:
        return list((await conn.execute(text("SELECT n FROM notes ORDER BY n"))).scalars())


async def test_a_writer_waits_for_another_process_and_goes_when_it_is_done(record: AsyncEngine) -> None:
    holder = await another_process_writing(record)
    writer = asyncio.create_task(write_note(record, 1))
    await asyncio.sleep(0.5)
    assert not writer.done()  # the other process has its turn
    await done_with(holder)
    await asyncio.wait_for(writer, 10)
    assert await notes(record) == [1]


async def test_a_writer_that_gives_up_waiting_leaves_the_turn_free(record: AsyncEngine) -> None:
    holder = await another_process_writing(record)
    writer = asyncio.create_task(write_note(record, 1))
    await asyncio.sleep(0.2)
    writer.cancel()
    await done_with(holder)  # the cancelled writer's thread gets the turn now, and lets it go
    with pytest.raises(asyncio.CancelledError):
        await writer
    await asyncio.wait_for(write_note(record, 2), 10)
    assert await notes(record) == [2]  # the cancelled writer wrote nothing


async def test_a_writer_cancelled_twice_still_waits_for_its_thread(record: AsyncEngine) -> None:
    """Its thread is blocked on the lock file's descriptor: closing that under it could leave the
    thread locking another file later. The second cancel waits for the thread like the first."""
    holder = await another_process_writing(record)
    writer = asyncio.create_task(write_note(record, 1))
    await asyncio.sleep(0.2)
    writer.cancel()
    await asyncio.sleep(0.1)
    writer.cancel()
    await asyncio.sleep(0.3)
    assert not writer.done()  # still waiting for its thread, which waits for the other process
    await done_with(holder)
    with pytest.raises(asyncio.CancelledError):
        await asyncio.wait_for(writer, 10)
    await asyncio.wait_for(write_note(record, 2), 10)
    assert await notes(record) == [2]
