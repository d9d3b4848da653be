"""Projection rows the reports and lists read that come from a case's live state and its
program: what it owes, the escalation issued for each, and the soonest due time (`cases.next_due`,
the list's sort key). Written by the recording activity at every recording, and by `casework
backfill-obligations` for cases recorded before the projection existed."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime
from typing import Any

from sqlalchemy import delete, insert

from domain.models import Case
from domain.schedule import Standing
from store.tables import case_obligations


def next_due(owed: Sequence[Standing]) -> datetime | None:
    """The soonest due time of what the case owes (None: it owes nothing)."""
    return min((s.due for s in owed), default=None)


async def write_obligations(conn: Any, case: Case, owed: Sequence[Standing]) -> None:
    """Replace the case's obligation rows with what it owes now (none once it is closed)."""
    await conn.execute(delete(case_obligations).where(case_obligations.c.case_number == case.number))
    rows = [
        {
            "case_number": case.number,
            "obligation_key": s.obligation.key,
            "what": s.obligation.what,
            "manager": case.manager,
            "due_at": s.due,
            "level": s.level,
            "notified": s.notified.value if s.notified else None,
        }
        for s in owed
    ]
    if rows:
        await conn.execute(insert(case_obligations), rows)
