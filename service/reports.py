"""Caseload reporting from the SQL record (it outlives Temporal's history retention).

Each report is one or two aggregate queries the database answers from clear, indexed
projection columns (store/tables.py: cases, case_referrals, case_stage_spells,
case_obligations, kept by activities/records.py): no case's sealed state is opened and no
query returns a row per case, so a report costs the same memory at 100 cases and at
100,000. Every query is limited to the caller's caseload (`domain.access.Scope`, applied by
`within`). What comes back is a Report (columns + rows) that prints as a rich table, exports
as CSV, or serves as JSON; rounding is done here, in Python, so both databases round alike.

Reports over the caseload as it is now (caseload, overdue) are computed on every request.
Reports over a caseload's whole history (referral outcomes and days in stage: percentiles over
every referral and stage spell ever recorded; cases opened and closed in every week; the weekly
stage chart) read all of them, up to seconds at 100,000 cases, and move by a handful of cases a
minute: `Snapshots` keeps each scope's for five minutes, and every report says when it was
computed (`as_of`).
"""

from __future__ import annotations

import asyncio
import io
from collections import OrderedDict
from collections.abc import Awaitable, Callable, Sequence
from datetime import datetime, timedelta
from typing import Any, TypeVar, cast

from sqlalchemy import (
    ColumnElement,
    Select,
    Table,
    and_,
    case,
    false,
    func,
    or_,
    select,
    true,
)
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine

from domain.access import Scope
from domain.models import ReferralStatus, Stage, week_of
from domain.views import Report
from store.tables import case_obligations, case_referrals, case_stage_spells, cases

__all__ = [
    "Report",
    "Reports",
    "Snapshots",
    "percentile",
    "stage_chart",
    "stage_chart_png",
    "week_ends",
    "week_of",
    "within",
]

REPORTS = ("caseload", "overdue", "referrals", "stages", "weekly")
T = TypeVar("T")


StageSeries = tuple[dict[str, list[int]], list[datetime]]  # cases per stage at each week's end, the ends


class Snapshots:
    """Reports over a caseload's history, kept per scope for `max_age`.

    Percentiles over every referral and stage spell ever recorded are a sort of all of them:
    at 100,000 cases, 0.5 to 3 seconds of the database's time per request. Their figures move
    by a handful of cases a minute, so each scope's are computed at most once per `max_age` and
    served, stamped with their moment, until then. Requests arriving while one is computed
    wait for that computation rather than starting their own. At most `size` are kept (the
    least recently read go first); each is a few dozen rows."""

    def __init__(self, max_age: timedelta = timedelta(minutes=5), size: int = 1_000) -> None:
        self.max_age, self.size = max_age, size
        self._kept: OrderedDict[tuple[Scope, str], tuple[datetime, Any]] = OrderedDict()
        self._computing: dict[tuple[Scope, str], asyncio.Future[Any]] = {}

    async def get(self, scope: Scope, name: str, now: datetime, compute: Callable[[], Awaitable[T]]) -> T:
        key = (scope, name)
        kept = self._kept.get(key)
        if kept is not None and timedelta(0) <= now - kept[0] <= self.max_age:
            self._kept.move_to_end(key)
            return cast(T, kept[1])
        running = self._computing.get(key)
        if running is None:
            running = asyncio.ensure_future(self._compute(key, now, compute))
            self._computing[key] = running
            running.add_done_callback(lambda _: self._computing.pop(key, None))
        # shielded: a caller that gives up (a closed connection) does not cancel the others' answer
        return cast(T, await asyncio.shield(running))

    async def _compute(self, key: tuple[Scope, str], now: datetime, compute: Callable[[], Awaitable[T]]) -> T:
        value = await compute()
        self._kept[key] = (now, value)
        self._kept.move_to_end(key)
        while len(self._kept) > self.size:
            self._kept.popitem(last=False)
        return value


def within(scope: Scope, table: Table = cases) -> ColumnElement[bool]:
    """The scope's rule (domain/access.py: every field that is set must match) as a condition
    on `cases` (or on a table whose rows carry their case's program, manager and supervisor:
    `case_referrals`), so the database counts only the caller's caseload."""
    if scope.everything:
        return true()
    conditions: list[ColumnElement[bool]] = []
    if scope.manager is not None:
        conditions.append(table.c.manager == scope.manager)
    if scope.supervisor is not None:
        conditions.append(table.c.supervisor == scope.supervisor)
    if scope.programs is not None:
        conditions.append(table.c.program.in_(scope.programs) if scope.programs else false())
    return and_(true(), *conditions)


OPEN = cases.c.stage != Stage.CLOSED.value
ACCEPTED = {ReferralStatus.ACCEPTED, ReferralStatus.COMPLETED, ReferralStatus.NO_SHOW}


class Reports:
    """The reports over one caller's caseload at one moment; the history reports from
    `snapshots` when given (the API's), else computed afresh."""

    def __init__(
        self, engine: AsyncEngine, scope: Scope, now: datetime, snapshots: Snapshots | None = None
    ) -> None:
        self.engine, self.scope, self.now, self.snapshots = engine, scope, now, snapshots

    async def _history(self, name: str, compute: Callable[[], Awaitable[T]]) -> T:
        if self.snapshots is None:
            return await compute()
        return await self.snapshots.get(self.scope, name, self.now, compute)

    async def all(self) -> dict[str, Report]:
        return {name: await self.named(name) for name in REPORTS}

    async def named(self, name: str) -> Report:
        match name:
            case "caseload":
                return await self.caseload()
            case "overdue":
                return await self.overdue()
            case "referrals":
                return await self.referral_outcomes()
            case "stages":
                return await self.time_in_stage()
            case "weekly":
                return await self.opened_closed_per_week()
        raise KeyError(name)

    def _of_caseload(self, query: Select[Any], number: Any) -> Select[Any]:
        """The query limited to the caller's caseload: joined to `cases` and filtered by the
        scope, unless the caller may see everything (then the join would only cost time)."""
        if self.scope.everything:
            return query
        return query.join(cases, cases.c.number == number).where(within(self.scope))

    async def _rows(self, query: Select[Any]) -> list[Any]:
        async with self.engine.connect() as conn:
            return list((await conn.execute(query)).all())

    async def caseload(self) -> Report:
        query = (
            select(cases.c.manager, cases.c.stage, func.count())
            .where(OPEN, within(self.scope))
            .group_by(cases.c.manager, cases.c.stage)
            .order_by(cases.c.manager, cases.c.stage)
        )
        rows = [(m, s, n) for m, s, n in await self._rows(query)]
        return Report("Open caseload by manager and stage", ("manager", "stage", "cases"), rows, self.now)

    async def overdue(self) -> Report:
        """Each obligation past its due time, by the escalation rung it has reached."""
        o = case_obligations
        query = self._of_caseload(
            select(o.c.manager, o.c.level, o.c.notified, func.count())
            .where(o.c.due_at <= self.now)
            .group_by(o.c.manager, o.c.level, o.c.notified),
            o.c.case_number,
        )
        rows = sorted(
            (manager, "not yet escalated" if level is None else f"level {level} ({notified})", n)
            for manager, level, notified, n in await self._rows(query)
        )
        return Report(
            "Overdue items by manager and escalation level", ("manager", "level", "items"), rows, self.now
        )

    async def referral_outcomes(self) -> Report:
        return await self._history("referrals", self._referral_outcomes)

    async def _referral_outcomes(self) -> Report:
        r = case_referrals
        # A referral the provider accepted counts as accepted even once it was revoked (the case
        # withdrawn or closed): the rate is of the provider's answers, not of what became of them.
        took_it = or_(
            r.c.status.in_([s.value for s in ACCEPTED]),
            and_(r.c.status == ReferralStatus.REVOKED.value, r.c.answered_at.is_not(None)),
        )
        accepted = func.sum(case((took_it, 1), else_=0))
        declined = func.sum(case((r.c.status == ReferralStatus.DECLINED.value, 1), else_=0))
        # each referral row carries its case's scope columns: no join to `cases` (migration 0011)
        counts = (
            select(r.c.provider, r.c.service, func.count(), accepted, declined)
            .where(within(self.scope, r))
            .group_by(r.c.provider, r.c.service)
        )
        waits = select(
            r.c.provider.label("provider"),
            r.c.service.label("service"),
            r.c.hours_to_answer.label("value"),
        ).where(r.c.hours_to_answer.is_not(None), within(self.scope, r))
        async with self.engine.connect() as conn:
            by = {
                (p, s): (n, int(a or 0), int(d or 0)) for p, s, n, a, d in (await conn.execute(counts)).all()
            }
            medians = await quantiles(conn, waits, ("provider", "service"), (50,))
        rows = []
        for (provider, service), (n, yes, no) in sorted(by.items()):
            rate = round(yes / (yes + no), 3) if yes + no else None
            median = medians.get((provider, service))
            rows.append((provider, service, n, yes, no, rate, round(median[1][0], 1) if median else None))
        return Report(
            "Referral outcomes by provider and service",
            (
                "provider",
                "service",
                "referrals",
                "accepted",
                "declined",
                "acceptance_rate",
                "median_hours_to_answer",
            ),
            rows,
            self.now,
        )

    async def time_in_stage(self) -> Report:
        """How long cases stayed in each stage they left (or are still in, counted to now)."""
        return await self._history("stages", self._time_in_stage)

    async def _time_in_stage(self) -> Report:
        s = case_stage_spells
        still_there = (self.now.timestamp() - s.c.entered_epoch) / 86400.0
        # every spell the case left, and the one it is in if that is not `closed` (a case's
        # last spell is in `closed` exactly when the case is closed)
        counted = or_(s.c.days.is_not(None), s.c.stage != Stage.CLOSED.value)
        spells = self._of_caseload(
            select(s.c.stage.label("stage"), func.coalesce(s.c.days, still_there).label("value")).where(
                counted
            ),
            s.c.case_number,
        )
        async with self.engine.connect() as conn:
            found = await quantiles(conn, spells, ("stage",), (50, 90))
        rows = [
            (stage, n, round(median, 2), round(p90, 2))
            for (stage,), (n, (median, p90)) in sorted(found.items())
        ]
        return Report("Days in each stage", ("stage", "spells", "median_days", "p90_days"), rows, self.now)

    async def opened_closed_per_week(self) -> Report:
        """Every ISO week the record has: a history report, kept per scope like the others."""
        return await self._history("weekly", self._opened_closed_per_week)

    async def _opened_closed_per_week(self) -> Report:
        opened = (
            select(cases.c.opened_week, func.count()).where(within(self.scope)).group_by(cases.c.opened_week)
        )
        closed = (
            select(cases.c.closed_week, func.count())
            .where(cases.c.closed_week.is_not(None), within(self.scope))
            .group_by(cases.c.closed_week)
        )
        opened_in = dict(await self._rows(opened))
        closed_in = dict(await self._rows(closed))
        weeks = sorted(set(opened_in) | set(closed_in))
        return Report(
            "Cases opened and closed per week",
            ("week", "opened", "closed"),
            [(w, opened_in.get(w, 0), closed_in.get(w, 0)) for w in weeks],
            self.now,
        )

    async def stages_over_time(self, ends: Sequence[datetime]) -> dict[str, list[int]]:
        """For each week's end, how many cases were in each stage then (from their spells).

        In one pass over the spells, not one per week: a case is in a stage at a moment if its
        spell began by then and had not ended, so the count at each end is the spells begun by
        it less those ended by it, summed week by week from how many began and ended in each."""
        s = case_stage_spells
        began = await self._by_week_and_stage(s.c.entered_at, ends)
        ended = await self._by_week_and_stage(s.c.left_at, ends)
        series: dict[str, list[int]] = {}
        for stage in Stage:
            running = 0
            series[stage.value] = []
            for week in range(len(ends)):
                running += began.get((stage.value, week), 0) - ended.get((stage.value, week), 0)
                series[stage.value].append(running)
        return series

    async def _by_week_and_stage(self, moment: Any, ends: Sequence[datetime]) -> dict[tuple[str, int], int]:
        """How many spells have `moment` (their start or end) in each week: the first week
        whose end it is not after (week 0 takes everything before)."""
        s = case_stage_spells
        week = case(*[(moment <= end, i) for i, end in enumerate(ends)], else_=None)
        query = self._of_caseload(
            select(s.c.stage, week, func.count()).where(moment <= ends[-1]).group_by(s.c.stage, week),
            s.c.case_number,
        )
        return {(stage, i): n for stage, i, n in await self._rows(query)}

    async def stage_series(self) -> StageSeries:
        """Cases in each stage at the end of each of the last 12 weeks, and those ends: the chart's."""

        async def compute() -> StageSeries:
            ends = week_ends(self.now)
            return await self.stages_over_time(ends), ends

        return await self._history("stage-series", compute)

    async def stage_chart_png(self) -> bytes:
        return stage_chart_png(*await self.stage_series())


async def quantiles(
    conn: AsyncConnection, values: Select[Any], keys: tuple[str, ...], ps: tuple[int, ...]
) -> dict[tuple[Any, ...], tuple[int, list[float]]]:
    """Per group of `keys`, the number of values and their ps-th percentiles (`percentile`'s
    linear interpolation). `values` selects the key columns and a `value` column.

    The database numbers each group's values in order (a window function) and hands back the
    two values around each percentile's rank; they are interpolated here. Not PostgreSQL's
    percentile_cont: it takes the rank as 0.9 * (n - 1) where `percentile` takes (n - 1) * 90
    / 100, and the last bit of difference turns an exact half (127.375 days) into 127.38 on one
    database and 127.37 on the other. Same SQL on both, same arithmetic as `percentile`."""
    source = values.subquery()
    groups = [source.c[k] for k in keys]
    ranked = select(
        *groups,
        source.c.value,
        (func.row_number().over(partition_by=groups, order_by=source.c.value) - 1).label("i"),
        func.count().over(partition_by=groups).label("n"),
    ).subquery()
    picks = []
    for p in ps:
        low = (ranked.c.n - 1) * p // 100  # the rank's whole part, as int() takes it in `percentile`
        high = case((low + 1 < ranked.c.n, low + 1), else_=low)
        picks += [
            func.max(case((ranked.c.i == low, ranked.c.value))),
            func.max(case((ranked.c.i == high, ranked.c.value))),
        ]
    by = [ranked.c[k] for k in keys]
    query = select(*by, func.max(ranked.c.n), *picks).group_by(*by)
    found = {}
    for row in await conn.execute(query):
        n = row[len(keys)]
        around = row[len(keys) + 1 :]
        found[tuple(row[: len(keys)])] = (
            n,
            [between(around[2 * i], around[2 * i + 1], n, p) for i, p in enumerate(ps)],
        )
    return found


def between(low_value: float, high_value: float, n: int, p: float) -> float:
    """The p-th percentile of n values, from the two values around its rank."""
    if p == 50:  # the median as statistics.median takes it: the mean of the middle two
        return low_value if n % 2 else (low_value + high_value) / 2
    rank = (n - 1) * p / 100
    return low_value + (high_value - low_value) * (rank - int(rank))


def percentile(values: Sequence[float], p: float) -> float:
    """The p-th percentile by linear interpolation between closest ranks."""
    ordered = sorted(values)
    if len(ordered) == 1:
        return ordered[0]
    rank = (len(ordered) - 1) * p / 100
    low = int(rank)
    high = min(low + 1, len(ordered) - 1)
    return ordered[low] + (ordered[high] - ordered[low]) * (rank - low)


def week_ends(now: datetime, weeks: int = 12) -> list[datetime]:
    return [now - timedelta(weeks=weeks - 1 - i) for i in range(weeks)]


def stage_chart_png(series: dict[str, list[int]], ends: Sequence[datetime]) -> bytes:
    """A PNG of cases by stage over the last weeks, for a supervisor's weekly review."""
    image = io.BytesIO()
    stage_chart(series, ends, image)
    return image.getvalue()


def stage_chart(series: dict[str, list[int]], ends: Sequence[datetime], path: str | io.BytesIO) -> None:
    """Draw the stages-over-time series (`Reports.stages_over_time`) into a file."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(10, 5))
    shown = [s for s in Stage if s is not Stage.CLOSED]
    days: Any = [e.date() for e in ends]  # matplotlib plots dates; its stubs say numbers
    ax.stackplot(days, *[series[s.value] for s in shown], labels=[s.value for s in shown])
    ax.set_title("Open cases by stage, week by week")
    ax.set_ylabel("cases")
    ax.legend(loc="upper left", fontsize="small")
    fig.autofmt_xdate()
    fig.tight_layout()
    fig.savefig(path, dpi=100, format="png")
    plt.close(fig)
