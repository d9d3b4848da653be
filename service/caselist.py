"""The case list staff page through: from the SQL record, a page at a time.

Read from `cases` (clear columns only: no case's sealed state is opened), limited in SQL to the
caller's caseload by the same rule `may_see` answers (`service.reports.within`, from
`domain.access.Scope`). Two orders:

- `next_due`: soonest due first (the least due time of what the case owes, `cases.next_due`,
  kept by the recording activity), cases with nothing due after them, ties and the undated
  cases by case number;
- `newest`: newest opened first, ties by case number (descending).

Paging is keyset, never OFFSET: a page ends at its last row's sort key (a `Position`), and the
next page is the rows after that key along an index (store/tables.py names them). So page 500
costs what page 1 costs, and cases opened or moved between pages never make a page repeat or
skip one that stayed where it was.

Why not Temporal's visibility, which listed cases before: it has no sort by next due (only by
start or close time), and its filter cannot join the caller's scope to anything, so every
list of a program lead's caseload was a filter spelled out in its query language.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from sqlalchemy import ColumnElement, Select, select, tuple_
from sqlalchemy.ext.asyncio import AsyncEngine

from domain.access import Scope
from domain.errors import Refusal
from domain.models import RiskLevel, Stage
from domain.views import ORDERS, CaseSummary, ListedStatus, Order
from service.refusals import CaseError
from service.reports import within
from store.tables import cases

MAX_PAGE = 100


@dataclass(frozen=True)
class CaseFilter:
    """What a caller asks to narrow their list to; every field that is set must match."""

    stage: Stage | None = None
    program: str | None = None
    manager: str | None = None
    risk: RiskLevel | None = None
    overdue: bool | None = None
    next_due_before: datetime | None = None
    closed: bool = False  # closed cases too (erased ones included); a stage filter of `closed` implies it

    @property
    def needs_a_due_date(self) -> bool:
        """Only cases with something due can match (so the undated ones need not be read)."""
        return self.overdue is True or self.next_due_before is not None


@dataclass(frozen=True)
class Position:
    """Where a page ended: its last row's sort key. `key` is that row's next due (None: the page
    ended among the cases with nothing due) or, in the newest order, its opening time."""

    order: Order
    key: datetime | None
    number: str

    def encode(self) -> bytes:
        key = self.key.astimezone(UTC).isoformat() if self.key else None
        return json.dumps({"order": self.order, "key": key, "number": self.number}).encode()

    @classmethod
    def decode(cls, raw: bytes) -> Position:
        """The position a page token carries; a token of another shape (one from before lists
        were read from the record, say) is a bad request, not a server error."""
        try:
            data = json.loads(raw)
            key = datetime.fromisoformat(data["key"]) if data["key"] is not None else None
            order, number = data["order"], data["number"]
        except (ValueError, TypeError, KeyError):
            raise CaseError(Refusal.BAD_REQUEST, "page_token is not a case list position") from None
        if order not in ORDERS or not isinstance(number, str) or (key is None and order == "newest"):
            raise CaseError(Refusal.BAD_REQUEST, "page_token is not a case list position")
        return cls(order, _aware(key), number)


@dataclass(frozen=True)
class CaseListPage:
    items: list[CaseSummary]
    following: Position | None  # where the next page starts; None at the end


LISTED = (
    cases.c.number,
    cases.c.stage,
    cases.c.manager,
    cases.c.supervisor,
    cases.c.program,
    cases.c.risk,
    cases.c.opened_at,
    cases.c.next_due,
    cases.c.erased_at,
)


class CaseList:
    """The cases one caller may see, at one moment (which decides what is overdue)."""

    def __init__(self, engine: AsyncEngine, scope: Scope, now: datetime) -> None:
        self.engine, self.scope, self.now = engine, scope, now

    async def page(
        self, filt: CaseFilter, order: Order = "next_due", size: int = 50, after: Position | None = None
    ) -> CaseListPage:
        """Up to `size` cases (at most MAX_PAGE) after `after`, in `order`."""
        size = max(1, min(size, MAX_PAGE))
        if after is not None and after.order != order:
            raise CaseError(Refusal.BAD_REQUEST, f"page_token belongs to a list sorted by {after.order}")
        # one row more than the page: whether there is a next page, without counting
        read = self._soonest_due if order == "next_due" else self._newest
        rows = await read(filt, size + 1, after)
        items = [self._summary(row) for row in rows[:size]]
        following = self._position(order, rows[size - 1]) if len(rows) > size else None
        return CaseListPage(items, following)

    def _matching(self, filt: CaseFilter) -> Select[Any]:
        """The caller's cases that match the filter, unordered."""
        query = select(*LISTED).where(within(self.scope))
        equal: list[tuple[Any, str | None]] = [
            (cases.c.stage, filt.stage.value if filt.stage else None),
            (cases.c.program, filt.program),
            (cases.c.manager, filt.manager),
            (cases.c.risk, filt.risk.value if filt.risk else None),
        ]
        for column, value in equal:
            if value is not None:
                query = query.where(column == value)
        if not filt.closed and filt.stage is not Stage.CLOSED:
            query = query.where(cases.c.stage != Stage.CLOSED.value)
        return query.where(*self._due_conditions(filt))

    def _due_conditions(self, filt: CaseFilter) -> list[ColumnElement[bool]]:
        found: list[ColumnElement[bool]] = []
        if filt.overdue is True:
            found.append(cases.c.next_due <= self.now)
        if filt.overdue is False:  # nothing due yet, or nothing due at all
            found.append((cases.c.next_due > self.now) | cases.c.next_due.is_(None))
        if filt.next_due_before is not None:
            found.append(cases.c.next_due < filt.next_due_before)
        return found

    async def _soonest_due(self, filt: CaseFilter, limit: int, after: Position | None) -> list[Any]:
        """Soonest due first, then the cases with nothing due. Read as two ranges of the index,
        one after the other: the dated cases from the position on, then (if the page is not full)
        the undated ones by number. One ORDER BY with NULLS LAST would need an OR in the keyset
        condition, which the databases cannot walk an index by."""
        rows: list[Any] = []
        if after is None or after.key is not None:
            dated = self._matching(filt).where(cases.c.next_due.is_not(None))
            if after is not None:
                dated = dated.where(
                    tuple_(cases.c.next_due, cases.c.number) > tuple_(after.key, after.number)
                )
            rows += await self._read(dated.order_by(cases.c.next_due, cases.c.number).limit(limit))
        if len(rows) < limit and not filt.needs_a_due_date:
            undated = self._matching(filt).where(cases.c.next_due.is_(None))
            if after is not None and after.key is None:
                undated = undated.where(cases.c.number > after.number)
            rows += await self._read(undated.order_by(cases.c.number).limit(limit - len(rows)))
        return rows

    async def _newest(self, filt: CaseFilter, limit: int, after: Position | None) -> list[Any]:
        query = self._matching(filt)
        if after is not None:
            query = query.where(tuple_(cases.c.opened_at, cases.c.number) < tuple_(after.key, after.number))
        return await self._read(query.order_by(cases.c.opened_at.desc(), cases.c.number.desc()).limit(limit))

    async def _read(self, query: Select[Any]) -> list[Any]:
        async with self.engine.connect() as conn:
            return list((await conn.execute(query)).all())

    def _summary(self, row: Any) -> CaseSummary:
        next_due = _aware(row.next_due)
        status: ListedStatus = (
            "erased" if row.erased_at else "closed" if row.stage == Stage.CLOSED else "open"
        )
        return CaseSummary(
            number=row.number,
            stage=row.stage,
            manager=row.manager,
            supervisor=row.supervisor,
            program=row.program,
            risk=row.risk,
            opened_at=_aware(row.opened_at),
            next_due=next_due,
            overdue=next_due is not None and next_due <= self.now,
            status=status,
            running=status == "open",
        )

    @staticmethod
    def _position(order: Order, row: Any) -> Position:
        key = row.next_due if order == "next_due" else row.opened_at
        return Position(order, _aware(key), row.number)


def _aware(at: datetime | None) -> datetime | None:
    """SQLite hands datetimes back without their zone; they were written in UTC."""
    return at.replace(tzinfo=UTC) if at is not None and at.tzinfo is None else at
