"""Obligation rows, and the list's next due, for open cases recorded before the projection
existed (migration 0007 could not write them: they come from each case's sealed state and its
program, which a migration has neither of). Until a case's next recording the overdue report
would not count it, nor the list sort it by what it owes; an operator runs `casework
backfill-obligations` once after upgrading instead of waiting for that."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from sqlalchemy import Row, Select, exists, select
from sqlalchemy.ext.asyncio import AsyncEngine

from domain.models import Case
from domain.policy import Program
from domain.schedule import standings
from store.db import writing
from store.keys import ClientErased, KeyRing, KeyUnavailable, Opener
from store.projection import rewrite_obligations
from store.tables import case_obligations, cases

BATCH = 500  # cases read per query: memory stays flat however large the record


@dataclass
class Backfilled:
    """What a backfill did: cases given their obligation rows, and those it left, with why."""

    projected: int = 0
    owing: int = 0  # of those, cases that owe something now
    skipped: dict[str, list[str]] = field(default_factory=dict)  # reason -> case numbers

    def skip(self, number: str, reason: str) -> None:
        self.skipped.setdefault(reason, []).append(number)


def _without_obligations(after: str) -> Select[Any]:
    """Open, not erased cases with no obligation row, in case-number order after `after`."""
    owed = exists().where(case_obligations.c.case_number == cases.c.number)
    return (
        select(cases.c.number, cases.c.state, cases.c.last_seq)
        .where(cases.c.closed_at.is_(None), cases.c.erased_at.is_(None), ~owed, cases.c.number > after)
        .order_by(cases.c.number)
        .limit(BATCH)
    )


async def backfill_obligations(
    record: AsyncEngine,
    keys: KeyRing,
    programs: dict[str, Program],
    progress: Callable[[int], None] | None = None,
) -> Backfilled:
    """Project the obligations of every open case that has none, from its recorded state and its
    program; `progress(cases seen)` after each batch. A case recorded again meanwhile is left to
    that recording (its rows are newer)."""
    done, seen, after = Backfilled(), 0, ""
    while True:
        async with record.connect() as conn:
            rows = (await conn.execute(_without_obligations(after))).all()
        if not rows:
            return done
        openers = await keys.openers([row.number for row in rows])
        for row in rows:
            await _backfill_one(record, row, openers[row.number], programs, done)
        seen, after = seen + len(rows), rows[-1].number
        if progress is not None:
            progress(seen)


async def _backfill_one(
    record: AsyncEngine, row: Row[Any], opener: Opener, programs: dict[str, Program], done: Backfilled
) -> None:
    try:
        case = Case.model_validate(opener.value(row.state, "cases.state"))
    except (ClientErased, KeyUnavailable):
        done.skip(row.number, "its state does not open (no key for it here)")
        return
    program = programs.get(case.program)
    if program is None:
        done.skip(row.number, f"its program {case.program!r} is not among this installation's")
        return
    owed = standings(case, program)
    async with writing(record) as conn:
        latest = await conn.execute(select(cases.c.last_seq).where(cases.c.number == row.number))
        if latest.scalar_one() != row.last_seq:  # recorded meanwhile, obligations included
            return
        await rewrite_obligations(conn, case, owed, datetime.now(UTC))
    done.projected += 1
    done.owing += bool(owed)
