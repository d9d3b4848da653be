"""Caseload reporting from the SQL record (it outlives Temporal's history retention).

Each report is a pure function of the recorded cases and events, returning a Table
(columns + rows) that prints as a rich table, exports as CSV, or serves as JSON.
"""

from __future__ import annotations

import csv
import io
import itertools
import statistics
from collections import Counter, defaultdict
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncEngine

from domain.models import Case, ReferralStatus, Stage, erased_case
from domain.policy import Program
from domain.schedule import overdue
from store.keys import ClientErased, KeyRing, Opener
from store.tables import case_events, case_referrals, cases


@dataclass(frozen=True)
class Report:
    title: str
    columns: tuple[str, ...]
    rows: list[tuple[Any, ...]]

    def csv(self) -> str:
        out = io.StringIO()
        writer = csv.writer(out)
        writer.writerow(self.columns)
        writer.writerows(self.rows)
        return out.getvalue()

    def as_json(self) -> dict[str, Any]:
        return {"title": self.title, "columns": list(self.columns), "rows": [list(r) for r in self.rows]}


@dataclass(frozen=True)
class StageChange:
    case: str
    at: datetime
    stage: Stage  # the stage entered


@dataclass(frozen=True)
class ReferralRow:
    """A referral as the record keeps it: every one ever made (a case's live state keeps only
    the open ones and the newest finished ones)."""

    case: str
    provider: str
    service: str
    status: ReferralStatus
    requested_at: datetime
    answered_at: datetime | None


@dataclass
class Record:
    cases: list[Case]
    moves: list[StageChange]
    referrals: list[ReferralRow]

    def only(self, numbers: set[str]) -> Record:
        """The record of these cases alone (a caller's scope)."""
        return Record(
            cases=[c for c in self.cases if c.number in numbers],
            moves=[m for m in self.moves if m.case in numbers],
            referrals=[r for r in self.referrals if r.case in numbers],
        )


async def load_record(engine: AsyncEngine, keys: KeyRing | None = None) -> Record:
    """The record as reports need it: each case's state opened with its client's key (an erased
    client's case is its facts, which is all a report needs of a closed case)."""
    async with engine.connect() as conn:
        rows = (await conn.execute(select(cases))).all()
        moves = (
            await conn.execute(
                select(
                    case_events.c.case_number,
                    case_events.c.at,
                    case_events.c.stage_after,
                    case_events.c.stage_before,
                ).order_by(case_events.c.case_number, case_events.c.seq)
            )
        ).all()
        referrals = (await conn.execute(select(case_referrals))).all()
    openers = await (keys or KeyRing(engine, None)).openers(r.number for r in rows)
    return Record(
        cases=[_case(r._mapping, openers[r.number]) for r in rows],
        referrals=[
            ReferralRow(
                r.case_number,
                r.provider,
                r.service,
                ReferralStatus(r.status),
                _aware(r.requested_at),
                _aware(r.answered_at) if r.answered_at else None,
            )
            for r in referrals
        ],
        moves=[
            StageChange(m.case_number, _aware(m.at), Stage(m.stage_after))
            for m in moves
            if m.stage_before != m.stage_after
        ],
    )


def _case(row: Any, opener: Opener) -> Case:
    try:
        return Case.model_validate(opener.value(row["state"], "cases.state"))
    except ClientErased:
        return erased_case(dict(row))


def _aware(at: datetime) -> datetime:
    """SQLite hands datetimes back without their zone; they were written in UTC."""
    return at if at.tzinfo else at.replace(tzinfo=UTC)


def caseload(record: Record) -> Report:
    counts = Counter((c.manager, c.stage.value) for c in record.cases if c.is_open)
    rows = sorted((manager, stage, n) for (manager, stage), n in counts.items())
    return Report("Open caseload by manager and stage", ("manager", "stage", "cases"), rows)


def overdue_by_level(record: Record, programs: dict[str, Program], now: datetime) -> Report:
    counts: Counter[tuple[str, str]] = Counter()
    for case in record.cases:
        program = programs.get(case.program)
        if program is None:
            continue
        for item in overdue(case, program, now):
            level = "not yet escalated" if item.level is None else f"level {item.level} ({item.notified})"
            counts[(case.manager, level)] += 1
    rows = sorted((manager, level, n) for (manager, level), n in counts.items())
    return Report("Overdue items by manager and escalation level", ("manager", "level", "items"), rows)


ACCEPTED = {ReferralStatus.ACCEPTED, ReferralStatus.COMPLETED, ReferralStatus.NO_SHOW}


def referral_outcomes(record: Record) -> Report:
    by: dict[tuple[str, str], list[ReferralRow]] = defaultdict(list)
    for r in record.referrals:
        by[(r.provider, r.service)].append(r)
    rows = []
    for (provider, service), referrals in sorted(by.items()):
        accepted = sum(r.status in ACCEPTED for r in referrals)
        declined = sum(r.status is ReferralStatus.DECLINED for r in referrals)
        waits = [
            (r.answered_at - r.requested_at).total_seconds() / 3600
            for r in referrals
            if r.answered_at is not None
        ]
        rate = round(accepted / (accepted + declined), 3) if accepted + declined else None
        rows.append(
            (
                provider,
                service,
                len(referrals),
                accepted,
                declined,
                rate,
                round(statistics.median(waits), 1) if waits else None,
            )
        )
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
    )


def time_in_stage(record: Record, now: datetime) -> Report:
    """How long cases stayed in each stage they left (or are still in, counted to now)."""
    spans: dict[str, list[float]] = defaultdict(list)
    by_case: dict[str, list[StageChange]] = defaultdict(list)
    for move in record.moves:
        by_case[move.case].append(move)
    open_cases = {c.number for c in record.cases if c.is_open}
    for number, moves in by_case.items():
        for here, following in itertools.pairwise(moves):
            spans[here.stage.value].append((following.at - here.at).total_seconds() / 86400)
        if moves and number in open_cases and moves[-1].stage is not Stage.CLOSED:
            spans[moves[-1].stage.value].append((now - moves[-1].at).total_seconds() / 86400)
    rows = [
        (stage, len(days), round(statistics.median(days), 2), round(percentile(days, 90), 2))
        for stage, days in sorted(spans.items())
    ]
    return Report("Days in each stage", ("stage", "spells", "median_days", "p90_days"), rows)


def percentile(values: Sequence[float], p: float) -> float:
    """The p-th percentile by linear interpolation between closest ranks."""
    ordered = sorted(values)
    if len(ordered) == 1:
        return ordered[0]
    rank = (len(ordered) - 1) * p / 100
    low = int(rank)
    high = min(low + 1, len(ordered) - 1)
    return ordered[low] + (ordered[high] - ordered[low]) * (rank - low)


def week_of(at: datetime) -> str:
    year, week, _ = at.isocalendar()
    return f"{year}-W{week:02d}"


def opened_closed_per_week(record: Record) -> Report:
    opened = Counter(week_of(c.opened_at) for c in record.cases)
    closed = Counter(week_of(c.closed_at) for c in record.cases if c.closed_at is not None)
    weeks = sorted(set(opened) | set(closed))
    return Report(
        "Cases opened and closed per week",
        ("week", "opened", "closed"),
        [(w, opened[w], closed[w]) for w in weeks],
    )


def stages_over_time(record: Record, weeks: Iterable[datetime]) -> dict[str, list[int]]:
    """For each week's end, how many cases were in each stage then (from the stage moves)."""
    by_case: dict[str, list[StageChange]] = defaultdict(list)
    for move in record.moves:
        by_case[move.case].append(move)
    series: dict[str, list[int]] = {s.value: [] for s in Stage}
    for end in weeks:
        counts = Counter(
            last.stage.value
            for moves in by_case.values()
            if (last := next((m for m in reversed(moves) if m.at <= end), None)) is not None
        )
        for stage in series:
            series[stage].append(counts[stage])
    return series


def stage_chart_png(record: Record, now: datetime, weeks: int = 12) -> bytes:
    """A PNG of cases by stage over the last weeks, for a supervisor's weekly review."""
    image = io.BytesIO()
    stage_chart(record, now, image, weeks)
    return image.getvalue()


def stage_chart(record: Record, now: datetime, path: str | io.BytesIO, weeks: int = 12) -> None:
    """Draw the chart of `stage_chart_png` into a file."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    ends = [now - timedelta(weeks=weeks - 1 - i) for i in range(weeks)]
    series = stages_over_time(record, ends)
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


def all_reports(record: Record, programs: dict[str, Program], now: datetime) -> dict[str, Report]:
    return {
        "caseload": caseload(record),
        "overdue": overdue_by_level(record, programs, now),
        "referrals": referral_outcomes(record),
        "stages": time_in_stage(record, now),
        "weekly": opened_closed_per_week(record),
    }
