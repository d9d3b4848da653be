"""The case's projection: the rows lists, reports and the FHIR API read instead of its sealed
state. The case row (stage, manager, dates, the list's sort key `next_due`), its referrals,
goals, follow-ups and what it owes (`case_obligations`, with the escalation issued for each).

Written by the recording activity at every recording (`Projector`), and by `casework
backfill-obligations` for cases recorded before the obligation rows existed.

Most recordings change little: a note changes the case row only (its state and seq). A worker
remembers what it last wrote of each case it records (`Written`), so the next recording writes
only the parts that changed: a note is one UPDATE. It trusts that memory only while the case
row is as it left it: the UPDATE says `WHERE last_seq = <the seq> AND updated_at = <the time
it wrote>`, in the same transaction as the parts (whatever else writes the row moves
`updated_at`: another worker's recording, `casework backfill-obligations`). If the row moved, or
a commit's outcome was lost, the UPDATE matches nothing and every part is written afresh, as on
a case's first recording. Before this, every recording rewrote every part: 9 to 13 statements for a note.
"""

from __future__ import annotations

import hashlib
from collections import OrderedDict
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sqlalchemy import delete, insert, select, update

from domain.models import Case, week_of
from domain.policy import Program
from domain.schedule import Standing, standings
from store.db import upsert, upsert_newer
from store.keys import Sealer
from store.tables import case_follow_ups, case_goals, case_obligations, case_referrals, cases

Row = dict[str, Any]


def next_due(owed: Sequence[Standing]) -> datetime | None:
    """The soonest due time of what the case owes (None: it owes nothing)."""
    return min((s.due for s in owed), default=None)


def obligation_rows(case: Case, owed: Sequence[Standing]) -> list[Row]:
    return [
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


async def rewrite_obligations(conn: Any, case: Case, owed: Sequence[Standing], now: datetime) -> None:
    """The case's obligations and next due written outside a recording (`casework
    backfill-obligations`). The case row's `updated_at` moves with them: a worker that remembers
    what it last wrote of the case no longer finds the row as it left it, and writes every part
    at its next recording."""
    await _replace_obligations(conn, case.number, obligation_rows(case, owed))
    await conn.execute(
        update(cases).where(cases.c.number == case.number).values(next_due=next_due(owed), updated_at=now)
    )


async def _replace_obligations(conn: Any, number: str, rows: list[Row]) -> None:
    """Replace the case's obligation rows with what it owes now (none once it is closed)."""
    await conn.execute(delete(case_obligations).where(case_obligations.c.case_number == number))
    if rows:
        await conn.execute(insert(case_obligations), rows)


@dataclass(frozen=True)
class Written:
    """What a worker last wrote of one case's projection: the clear facts the record keeps in
    clear columns, and of the goals (sealed in the record) only a digest, so no client's words
    stay in the worker's memory after the case moves on or its client is erased."""

    seq: int
    at: datetime  # the case row's updated_at as written: with `seq`, how the row is known unchanged
    scope: Row  # the case's program, manager and supervisor, as its referral rows carry them
    goals: bytes  # digest of the goals as written
    referrals: dict[str, Row]  # by referral id, as written (with its updated_at)
    follow_ups: dict[str, Row]  # by follow-up id
    obligations: tuple[Row, ...] | None  # None: not written (the case's program is unknown here)


@dataclass(frozen=True)
class Parts:
    """A case's projection rows as its live state gives them (referrals without updated_at)."""

    goals: tuple[tuple[Any, ...], ...]
    scope: Row
    referrals: dict[str, Row]
    follow_ups: dict[str, Row]
    obligations: tuple[Row, ...] | None

    @classmethod
    def of(cls, case: Case, owed: Sequence[Standing] | None) -> Parts:
        goals = tuple(
            (g.id, g.description, g.objective, g.target_date, g.status.value)
            for g in (case.plan.goals if case.plan else [])
        )
        scope = {"program": case.program, "manager": case.manager, "supervisor": case.supervisor}
        referrals = {
            r.id: scope
            | {
                "case_number": case.number,
                "referral_id": r.id,
                "provider": r.provider,
                "service": r.service,
                "status": r.status.value,
                "requested_at": r.requested_at,
                "answered_at": r.answered_at,
                "hours_to_answer": (
                    (r.answered_at - r.requested_at).total_seconds() / 3600 if r.answered_at else None
                ),
            }
            for r in case.referrals
        }
        follow_ups = {
            f.id: {
                "case_number": case.number,
                "follow_up_id": f.id,
                "kind": f.kind.value,
                "due_at": f.due_at,
                "status": f.status.value,
                "done_at": f.done_at,
            }
            for f in case.follow_ups
        }
        obligations = None if owed is None else tuple(obligation_rows(case, owed))
        return cls(goals, scope, referrals, follow_ups, obligations)


class Projector:
    """Writes cases' projections; remembers what it wrote of the `size` cases recorded last."""

    def __init__(self, size: int = 2_000) -> None:
        self.size = size
        self._written: OrderedDict[str, Written] = OrderedDict()

    def remember(self, number: str, written: Written | None) -> None:
        """Call after the transaction that wrote `written` committed (None: it wrote nothing)."""
        if written is None:
            return
        self._written[number] = written
        self._written.move_to_end(number)
        while len(self._written) > self.size:
            self._written.popitem(last=False)

    async def write(
        self, conn: Any, case: Case, seq: int, now: datetime, sealer: Sealer, program: Program | None
    ) -> Written | None:
        """Project the case as of `seq`, unless the record already holds a newer seq (a late or
        retried batch): then nothing is written and None is returned."""
        owed = standings(case, program) if program is not None else None
        row = _case_row(case, seq, now, sealer, owed)
        parts = Parts.of(case, owed)
        known = self._written.get(case.number)
        if known is not None and known.seq < seq:
            as_left = (cases.c.last_seq == known.seq) & (cases.c.updated_at == known.at)
            still_ours = (cases.c.number == case.number) & as_left
            moved = await conn.execute(update(cases).where(still_ours).values(**row))
            if moved.rowcount == 1:
                return await _write_changes(conn, case, seq, now, sealer, parts, known)
        if not await upsert_newer(conn, cases, row | {"number": case.number}, "number", "last_seq"):
            return None
        return await _write_all(conn, case, seq, now, sealer, parts)


def _case_row(case: Case, seq: int, now: datetime, sealer: Sealer, owed: Sequence[Standing] | None) -> Row:
    row = {
        "program": case.program,
        "stage": case.stage.value,
        "manager": case.manager,
        "supervisor": case.supervisor,
        "risk": case.risk.value,
        "opened_at": case.opened_at,
        "closed_at": case.closed_at,
        "outcome": case.outcome.value if case.outcome else None,
        "last_seq": seq,
        "state": sealer.value(case.model_dump(mode="json"), "cases.state"),
        "updated_at": now,
        "opened_week": week_of(case.opened_at),
        "closed_week": week_of(case.closed_at) if case.closed_at else None,
    }
    if owed is not None:  # the list's sort key, from the same standings as the obligation rows
        row["next_due"] = next_due(owed)
    return row


async def _write_all(conn: Any, case: Case, seq: int, now: datetime, sealer: Sealer, parts: Parts) -> Written:
    """Every part afresh. Referrals and follow-ups are upserted, never deleted: the live case
    forgets finished ones (domain/bounds.py) but the record keeps every one, each with the case's
    program, manager and supervisor (all of them rewritten when the record's differ). Goals are
    the current plan's."""
    r = case_referrals
    scoped = [r.c.program, r.c.manager, r.c.supervisor]
    query = select(r.c.referral_id, r.c.status, r.c.updated_at, *scoped).where(r.c.case_number == case.number)
    before = (await conn.execute(query)).all()
    seen = {row.referral_id: (row.status, row.updated_at) for row in before}
    referrals = {
        rid: row | {"updated_at": _since(row, *seen.get(rid, (None, None)), now)}
        for rid, row in parts.referrals.items()
    }
    if any({c.name: getattr(row, c.name) for c in scoped} != parts.scope for row in before):
        await _rescope_referrals(conn, case.number, parts.scope)
    await _replace_goals(conn, case.number, parts.goals, sealer)
    await upsert(conn, case_referrals, list(referrals.values()), ["case_number", "referral_id"])
    await upsert(conn, case_follow_ups, list(parts.follow_ups.values()), ["case_number", "follow_up_id"])
    if parts.obligations is not None:
        await _replace_obligations(conn, case.number, list(parts.obligations))
    goals = _digest(parts.goals)
    return Written(seq, now, parts.scope, goals, referrals, parts.follow_ups, parts.obligations)


async def _write_changes(
    conn: Any, case: Case, seq: int, now: datetime, sealer: Sealer, parts: Parts, known: Written
) -> Written:
    """Only the parts that differ from what this worker wrote at `known.seq` (still the record's)."""
    goals = _digest(parts.goals)
    if goals != known.goals:
        await _replace_goals(conn, case.number, parts.goals, sealer)
    if parts.scope != known.scope:  # transferred, say: the referrals it no longer holds too
        await _rescope_referrals(conn, case.number, parts.scope)
    referrals, changed = {}, []
    for rid, row in parts.referrals.items():
        old = known.referrals.get(rid)
        old_status, old_since = (old["status"], old["updated_at"]) if old is not None else (None, None)
        referrals[rid] = row | {"updated_at": _since(row, old_status, old_since, now)}
        if referrals[rid] != old:
            changed.append(referrals[rid])
    await upsert(conn, case_referrals, changed, ["case_number", "referral_id"])
    follow_ups = [row for fid, row in parts.follow_ups.items() if known.follow_ups.get(fid) != row]
    await upsert(conn, case_follow_ups, follow_ups, ["case_number", "follow_up_id"])
    if parts.obligations is not None and parts.obligations != known.obligations:
        await _replace_obligations(conn, case.number, list(parts.obligations))
    return Written(seq, now, parts.scope, goals, referrals, parts.follow_ups, parts.obligations)


async def _rescope_referrals(conn: Any, number: str, scope: Row) -> None:
    """Every referral row of the case, the finished ones its live state has forgotten too
    (domain/bounds.py), given the case's program, manager and supervisor."""
    await conn.execute(update(case_referrals).where(case_referrals.c.case_number == number).values(**scope))


def _digest(goals: tuple[tuple[Any, ...], ...]) -> bytes:
    return hashlib.blake2b(repr(goals).encode(), digest_size=16).digest()


def _since(row: Row, old_status: str | None, old_since: datetime | None, now: datetime) -> datetime:
    """When the record first saw the referral in its current status (now, if it just changed)."""
    return old_since if old_status == row["status"] and old_since is not None else now


async def _replace_goals(conn: Any, number: str, goals: tuple[tuple[Any, ...], ...], sealer: Sealer) -> None:
    await conn.execute(delete(case_goals).where(case_goals.c.case_number == number))
    if goals:
        rows = [
            {
                "case_number": number,
                "goal_id": goal_id,
                "description": sealer.text(description, "case_goals.description"),
                "objective": sealer.text(objective, "case_goals.objective"),
                "target_date": target_date,
                "status": status,
            }
            for goal_id, description, objective, target_date, status in goals
        ]
        await conn.execute(insert(case_goals), rows)
