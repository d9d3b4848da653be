"""Each client's data key, wrapped by the master key, on SQLite and PostgreSQL: sealed values
open only for their own case and column, a master key is rotated without touching what was
sealed, and a destroyed key leaves nothing that opens."""

from __future__ import annotations

import asyncio
import base64
import os
import uuid
from datetime import UTC, datetime

import pytest
from sqlalchemy import event, select
from sqlalchemy.ext.asyncio import AsyncEngine

from store.db import engine, migrate
from store.keys import ClientErased, KeyRing, KeyUnavailable, LocalMasterKey, Opener
from store.tables import client_keys
from tests.processes import casework, environment

pytestmark = pytest.mark.asyncio(loop_scope="session")


def new_master() -> bytes:
    return os.urandom(32)


def case_number() -> str:
    return "K-" + uuid.uuid4().hex[:10].upper()


async def test_a_sealed_value_opens_for_its_own_case_and_column_only(record_store: AsyncEngine) -> None:
    keys = KeyRing(record_store, LocalMasterKey([new_master()]))
    mine, other = case_number(), case_number()
    sealed = (await keys.sealer(mine)).value({"family_name": "Okafor"}, "cases.state")
    assert "Okafor" not in sealed and sealed.startswith("casework-sealed/1:")
    assert (await keys.opener(mine)).value(sealed, "cases.state") == {"family_name": "Okafor"}
    await keys.sealer(other)
    with pytest.raises(KeyUnavailable):  # moved to another case's row
        (await keys.opener(other)).value(sealed, "cases.state")
    with pytest.raises(KeyUnavailable):  # moved to another column of the same case
        (await keys.opener(mine)).value(sealed, "case_events.change")
    assert (await keys.opener(mine)).value({"clear": "from before keys"}, "cases.state") == {
        "clear": "from before keys"
    }


async def test_two_processes_making_the_same_clients_key_agree_on_one(record_store: AsyncEngine) -> None:
    master = LocalMasterKey([new_master()])
    number = case_number()
    first, second = KeyRing(record_store, master), KeyRing(record_store, master)
    a, b = await first.data_key(number), await second.data_key(number)
    assert a.id == b.id
    sealed = (await first.sealer(number)).text("a note", "outbox.body")
    assert (await second.opener(number)).text(sealed, "outbox.body") == "a note"


async def test_cases_opened_together_have_their_keys_made_in_few_writes(record_store: AsyncEngine) -> None:
    """Twenty cases opened at once: each gets its own key, and the keys asked for while one write
    waits are made by the next (on SQLite each write queues for the file)."""
    keys = KeyRing(record_store, LocalMasterKey([new_master()]))
    numbers = [case_number() for _ in range(20)]
    writes: list[str] = []

    def count(conn: object, cursor: object, statement: str, *args: object) -> None:
        if statement.lstrip().upper().startswith("INSERT INTO CLIENT_KEYS"):
            writes.append(statement)

    event.listen(record_store.sync_engine, "before_cursor_execute", count)
    try:
        made = await asyncio.gather(*(keys.data_key(n) for n in numbers))
    finally:
        event.remove(record_store.sync_engine, "before_cursor_execute", count)
    assert [k.case for k in made] == numbers and len({k.id for k in made}) == 20
    assert 1 <= len(writes) < 20
    fresh = KeyRing(record_store, keys.master)  # another process reads the very same keys
    assert [(await fresh.data_key(n, create=False)).id for n in numbers] == [k.id for k in made]


async def test_a_process_lets_go_of_keys_it_has_not_needed_for_their_time(record_store: AsyncEngine) -> None:
    """A worker opens thousands of cases a day: it holds only the keys it used lately."""
    now = [0.0]
    keys = KeyRing(record_store, LocalMasterKey([new_master()]), ttl=60, clock=lambda: now[0])
    for _ in range(30):
        await keys.data_key(case_number())
    assert keys.held == 30
    now[0] += 61
    latest = case_number()
    await keys.data_key(latest)
    assert keys.held == 1
    assert (await keys.data_key(latest)).case == latest  # and what it holds it still uses


async def test_rotating_the_master_key_rewraps_every_data_key_and_nothing_else(
    record_store: AsyncEngine,
) -> None:
    old, new = new_master(), new_master()
    before = KeyRing(record_store, LocalMasterKey([old]))
    numbers = [case_number() for _ in range(5)]
    sealed = {
        n: (await before.sealer(n)).value({"note": f"note of {n}"}, "case_events.change") for n in numbers
    }

    rotating = KeyRing(record_store, LocalMasterKey([new, old]))  # the new key first, the old still read
    told: list[tuple[int, int]] = []
    done = await rotating.rewrap(lambda d, t: told.append((d, t)))
    # (the record may hold other tests' keys, under master keys this one was not given)
    assert done.done >= len(numbers) and told and told[-1][0] == told[-1][1]
    assert (await rotating.rewrap()).done == 0  # nothing left to do

    after = KeyRing(record_store, LocalMasterKey([new]))  # the old key is gone
    openers = await after.openers(numbers)
    for n in numbers:
        assert openers[n].value(sealed[n], "case_events.change") == {"note": f"note of {n}"}
    with pytest.raises(KeyUnavailable):  # and the old key alone no longer unwraps them
        await KeyRing(record_store, LocalMasterKey([old])).data_key(numbers[0])


async def test_a_destroyed_key_opens_nothing_in_any_process(record_store: AsyncEngine) -> None:
    master = LocalMasterKey([new_master()])
    number = case_number()
    erasing, elsewhere = KeyRing(record_store, master), KeyRing(record_store, master, ttl=0)
    sealed = (await erasing.sealer(number)).value({"family_name": "Okafor"}, "cases.state")
    async with record_store.begin() as conn:
        await erasing.destroy(conn, number, datetime.now(UTC))
    async with record_store.connect() as conn:
        row = (await conn.execute(select(client_keys).where(client_keys.c.case_number == number))).one()
    assert row.wrapped is None and row.erased_at is not None
    for keys in (erasing, elsewhere):
        with pytest.raises(ClientErased):
            (await keys.opener(number)).value(sealed, "cases.state")
        with pytest.raises(ClientErased):  # and no new key is made in its place
            await keys.data_key(number)
    assert await erasing.erased(number)


async def test_a_master_key_must_be_32_bytes_of_base64() -> None:
    with pytest.raises(ValueError, match="32 bytes"):
        LocalMasterKey.from_text(base64.b64encode(b"short").decode())
    with pytest.raises(ValueError, match="not base64"):
        LocalMasterKey.from_text("not base64!")
    two = LocalMasterKey.from_text(",".join(base64.b64encode(new_master()).decode() for _ in range(2)))
    assert len(two.raw) == 2


async def test_without_a_master_key_nothing_is_sealed_and_clear_values_read_as_they_are() -> None:
    opener = Opener("K-1", None, erased=False)
    assert opener.value({"a": 1}, "cases.state") == {"a": 1}


async def test_casework_rotate_master_key_rewraps_and_says_what_it_did(sqlite_url: str) -> None:
    old, new = (base64.b64encode(new_master()).decode() for _ in range(2))
    store = engine(sqlite_url)
    await migrate(store)
    numbers = [case_number() for _ in range(3)]
    before = KeyRing(store, LocalMasterKey.from_text(old))
    sealed = {n: (await before.sealer(n)).text(f"note of {n}", "outbox.body") for n in numbers}

    only_new = environment(database_url=sqlite_url, payload_key=new)
    stranded = await asyncio.to_thread(casework, "rotate-master-key", env=only_new)
    assert stranded.returncode == 1 and "wrapped by master keys not given: 3 by" in stranded.stderr

    rotating = environment(database_url=sqlite_url, payload_key=f"{new},{old}")
    done = await asyncio.to_thread(casework, "rotate-master-key", env=rotating)
    assert done.returncode == 0, done.stderr
    assert "re-wrapped 3 of 3" in done.stdout and "3 data keys now wrapped" in done.stdout
    after = await KeyRing(store, LocalMasterKey.from_text(new)).openers(numbers)
    assert {n: after[n].text(sealed[n], "outbox.body") for n in numbers} == {
        n: f"note of {n}" for n in numbers
    }
    await store.dispose()
