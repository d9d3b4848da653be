"""Projection rows the reports read that come from a case's live state and its program: what it
owes and the escalation issued for each. Written by the recording activity at every recording,
and by `casework backfill-obligations` for cases recorded before the projection existed."""

from __future__ import annotations

from typing import Any

from sqlalchemy import delete, insert

from domain.models import Case
from domain.policy import Program
from domain.schedule import standings
from store.tables import case_obligations


async def write_obligations(conn: Any, case: Case, program: Program) -> int:
    """Replace the case's obligation rows (none once it is closed); returns how many it owes."""
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
        for s in standings(case, program)
    ]
    if rows:
        await conn.execute(insert(case_obligations), rows)
    return len(rows)
