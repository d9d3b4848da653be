"""Benchmark: the caseload reports over a large record, on SQLite and PostgreSQL.

    .venv/bin/python -m bench.reports --cases 10000
    .venv/bin/python -m bench.reports --cases 100000 --database postgresql \\
        --postgres postgresql://postgres@127.0.0.1:5432/test

Fills a fresh record (the schema the migrations make) with synthetic cases, in bulk inserts:
30 managers under 6 supervisors, 3 programs, cases opened over two years, each with ~15
events, 2-3 referrals, 2 goals, 3 follow-ups, its stage spells and (open cases) obligations.
Then times each report and a page of the case list (newest 50 of a supervisor's cases)
`--runs` times (p50, p95) — the history reports both computed afresh and as the API serves
them (kept five minutes per scope: `service.reports.Snapshots`) — and the peak RSS of a
separate process that does what the API does for `casework report --csv --chart`: every
report, as JSON and CSV, and the stages chart.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import random
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Awaitable, Callable, Iterator
from datetime import UTC, date, datetime, timedelta
from pathlib import Path
from typing import Any

from sqlalchemy import insert, select, text
from sqlalchemy.ext.asyncio import AsyncEngine

from bench.record import with_database
from domain.access import Scope
from domain.models import Stage, week_of
from service.reports import Reports, Snapshots
from store.db import engine, migrate
from store.tables import (
    case_events,
    case_follow_ups,
    case_goals,
    case_obligations,
    case_referrals,
    case_stage_spells,
    cases,
)

NOW = datetime(2026, 11, 1, 12, 0, tzinfo=UTC)
YEARS = 2
PROGRAMS = ("general", "housing", "recovery")
MANAGERS = [f"cm-{i:02d}" for i in range(30)]
PROVIDERS = [f"provider-{i}" for i in range(12)]
SERVICES = ("housing", "medical", "legal_aid", "employment")
PATH = (Stage.INTAKE, Stage.ASSESSMENT, Stage.PLANNING, Stage.COORDINATION, Stage.MONITORING)
SEALED = "casework-sealed/1:bench:AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA"
CHUNK = 1000  # cases per bulk insert


def synthetic_case(i: int, rng: random.Random) -> dict[str, list[dict[str, Any]]]:
    """One case's rows in every table the reports read (and those they do not, for realism)."""
    number = f"B-{i:07d}"
    manager = MANAGERS[i % len(MANAGERS)]
    opened = NOW - timedelta(days=rng.uniform(1, 365 * YEARS))
    # the stages it went through, each stay 1-40 days, until now
    moves, at = [], opened
    for stage in PATH[: rng.randint(1, len(PATH))]:
        if at >= NOW:
            break
        moves.append((at, stage))
        at += timedelta(days=rng.uniform(1, 40))
    if rng.random() < 0.45 and at < NOW:
        moves.append((at, Stage.CLOSED))
    closed_at = moves[-1][0] if moves[-1][1] is Stage.CLOSED else None
    last_moved = moves[-1][0]
    events = []
    for seq in range(1, 16):
        if seq <= len(moves):
            at, stage = moves[seq - 1]
            before = moves[seq - 2][1].value if seq > 1 else None
        else:  # notes and other work in the last stage
            at = last_moved + timedelta(hours=rng.uniform(0, 200))
            before = stage = moves[-1][1]
            before = before.value
        events.append(
            {
                "case_number": number,
                "seq": seq,
                "at": at,
                "action": "move" if seq <= len(moves) else "add_note",
                "actor_id": manager,
                "actor_role": "case_manager",
                "stage_before": before,
                "stage_after": stage.value,
                "change": SEALED,
                "recorded_at": at,
            }
        )
    stage = moves[-1][1]
    return {
        "cases": [
            {
                "number": number,
                "program": PROGRAMS[i % len(PROGRAMS)],
                "stage": stage.value,
                "manager": manager,
                "supervisor": f"sup-{i % len(MANAGERS) // 5}",
                "risk": rng.choice(("low", "medium", "high")),
                "opened_at": opened,
                "closed_at": closed_at,
                "outcome": "goals_met" if closed_at else None,
                "last_seq": 15,
                "state": SEALED,
                "updated_at": last_moved,
                "opened_week": week_of(opened),
                "closed_week": week_of(closed_at) if closed_at else None,
            }
        ],
        "case_events": events,
        "case_referrals": [referral(number, n, opened, rng) for n in range(rng.randint(2, 3))],
        "case_goals": [
            {
                "case_number": number,
                "goal_id": f"g{n}",
                "description": SEALED,
                "objective": SEALED,
                "target_date": date(2027, 1, 1),
                "status": "open",
            }
            for n in (1, 2)
        ],
        "case_follow_ups": [
            {
                "case_number": number,
                "follow_up_id": f"F{n}",
                "kind": "home_visit",
                "due_at": opened + timedelta(days=10 * n),
                "status": "attended",
                "done_at": opened + timedelta(days=10 * n),
            }
            for n in (1, 2, 3)
        ],
        "case_stage_spells": spells(number, moves),
        "case_obligations": [] if closed_at else obligations(number, manager, last_moved, rng),
    }


def referral(number: str, n: int, opened: datetime, rng: random.Random) -> dict[str, Any]:
    requested = opened + timedelta(hours=rng.uniform(1, 500))
    answered = requested + timedelta(hours=rng.uniform(1, 120)) if rng.random() < 0.8 else None
    return {
        "case_number": number,
        "referral_id": f"R{n}",
        "provider": rng.choice(PROVIDERS),
        "service": rng.choice(SERVICES),
        "status": rng.choice(("accepted", "declined", "completed")) if answered else "sent",
        "requested_at": requested,
        "answered_at": answered,
        "updated_at": answered or requested,
        "hours_to_answer": (answered - requested).total_seconds() / 3600 if answered else None,
    }


def spells(number: str, moves: list[tuple[datetime, Stage]]) -> list[dict[str, Any]]:
    rows = []
    for n, (entered, stage) in enumerate(moves):
        left = moves[n + 1][0] if n + 1 < len(moves) else None
        rows.append(
            {
                "case_number": number,
                "seq": n + 1,
                "stage": stage.value,
                "entered_at": entered,
                "left_at": left,
                "entered_epoch": entered.timestamp(),
                "days": (left - entered).total_seconds() / 86400 if left else None,
            }
        )
    return rows


def obligations(number: str, manager: str, since: datetime, rng: random.Random) -> list[dict[str, Any]]:
    rows = []
    for n in range(rng.randint(1, 3)):
        level = rng.choice((None, None, 0, 1))
        rows.append(
            {
                "case_number": number,
                "obligation_key": f"stage_deadline:work {n}@{since.isoformat()}",
                "what": f"work {n}",
                "manager": manager,
                "due_at": since + timedelta(days=rng.uniform(1, 60)),
                "level": level,
                "notified": {None: None, 0: "supervisor", 1: "program_lead"}[level],
            }
        )
    return rows


TABLES = {
    t.name: t
    for t in (
        cases,
        case_events,
        case_referrals,
        case_goals,
        case_follow_ups,
        case_stage_spells,
        case_obligations,
    )
}


def chunks(count: int) -> Iterator[dict[str, list[dict[str, Any]]]]:
    rng = random.Random(2026)
    for start in range(0, count, CHUNK):
        rows: dict[str, list[dict[str, Any]]] = {name: [] for name in TABLES}
        for i in range(start, min(start + CHUNK, count)):
            for name, part in synthetic_case(i, rng).items():
                rows[name] += part
        yield rows


async def fill(store: AsyncEngine, count: int) -> float:
    started = time.perf_counter()
    for rows in chunks(count):
        async with store.begin() as conn:
            for name, table in TABLES.items():
                if rows[name]:
                    await conn.execute(insert(table), rows[name])
    if store.dialect.name == "postgresql":
        async with store.connect() as conn:
            await conn.execute(text("ANALYZE"))
    else:
        async with store.begin() as conn:
            await conn.execute(text("ANALYZE"))
    return time.perf_counter() - started


async def list_page(store: AsyncEngine) -> None:
    """The newest 50 of a supervisor's cases (case numbers sort in opening order)."""
    async with store.connect() as conn:
        query = (
            select(cases.c.number, cases.c.stage, cases.c.manager, cases.c.opened_at)
            .where(cases.c.supervisor == "sup-2")
            .order_by(cases.c.number.desc())
            .limit(50)
        )
        (await conn.execute(query)).all()


class Served:
    """Reports as the API serves them: from its `Snapshots`, the requests a second apart (so
    within five minutes, all but the first of each report are served from the kept figures)."""

    def __init__(self, store: AsyncEngine) -> None:
        self.store, self.snapshots, self.asked = store, Snapshots(), 0

    def reports(self) -> Reports:
        self.asked += 1
        now = NOW + timedelta(seconds=self.asked)
        return Reports(self.store, Scope(everything=True), now, self.snapshots)


async def timed(run: Callable[[], Awaitable[Any]], runs: int) -> tuple[float, float]:
    await run()  # warm the caches once
    took = []
    for _ in range(runs):
        started = time.perf_counter()
        await run()
        took.append((time.perf_counter() - started) * 1000)
    took.sort()
    return statistics.median(took), took[min(len(took) - 1, round(0.95 * (len(took) - 1)))]


async def measure(url: str, count: int, runs: int) -> dict[str, Any]:
    store = engine(url)
    await migrate(store)
    filled = await fill(store, count)
    reports = Reports(store, Scope(everything=True), NOW)
    supervised = Reports(store, Scope(supervisor="sup-2"), NOW)
    served = Served(store)
    jobs: dict[str, Callable[[], Awaitable[Any]]] = {
        "caseload": reports.caseload,
        "overdue": reports.overdue,
        "referrals": reports.referral_outcomes,
        "stages": reports.time_in_stage,
        "weekly": reports.opened_closed_per_week,
        "chart series": reports.stage_series,
        "stages (one supervisor)": supervised.time_in_stage,
        "referrals, as served": lambda: served.reports().referral_outcomes(),
        "stages, as served": lambda: served.reports().time_in_stage(),
        "chart series, as served": lambda: served.reports().stage_series(),
        "list page": lambda: list_page(store),
    }
    times = {name: await timed(job, runs) for name, job in jobs.items()}
    await store.dispose()
    return {"fill_s": filled, "times": times, "report_process": report_process(url)}


def report_process(url: str) -> dict[str, float]:
    """Peak RSS (MB) and wall time of a fresh process doing `casework report --csv --chart`'s work."""
    started = time.perf_counter()
    child = subprocess.Popen([sys.executable, "-m", "bench.reports", "--report-once", url])
    _, status, usage = os.wait4(child.pid, 0)
    child.returncode = os.waitstatus_to_exitcode(status)
    if child.returncode:
        raise RuntimeError(f"the report process failed ({child.returncode})")
    return {"peak_rss_mb": usage.ru_maxrss / 1024, "wall_s": time.perf_counter() - started}


async def report_once(url: str) -> None:
    """What the API answers `casework report --csv --chart` with (five reports, JSON and CSV,
    then the chart), in this process alone."""
    store = engine(url)
    reports = Reports(store, Scope(everything=True), NOW)
    for report in (await reports.all()).values():
        json.dumps(report.as_json())
        report.csv()
    await reports.stage_chart_png()
    await store.dispose()


async def main(count: int, databases: list[str], postgres: str, runs: int) -> None:
    for kind in databases:
        with tempfile.TemporaryDirectory() as tmp:
            url, drop = await with_database(kind, postgres, Path(tmp))
            try:
                result = await measure(url, count, runs)
            finally:
                await drop()
        print(f"\n{kind}, {count:,} cases: filled in {result['fill_s']:.1f} s")
        print(f"{'':26} {'p50 ms':>8} {'p95 ms':>8}")
        for name, (p50, p95) in result["times"].items():
            print(f"{name:26} {p50:8.1f} {p95:8.1f}")
        process = result["report_process"]
        print(f"report process: peak RSS {process['peak_rss_mb']:.0f} MB, {process['wall_s']:.1f} s")


if __name__ == "__main__":
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--cases", type=int, default=1000)
    parser.add_argument("--database", choices=["sqlite", "postgresql", "both"], default="both")
    parser.add_argument("--postgres", default="postgresql://postgres@127.0.0.1:5432/test")
    parser.add_argument("--runs", type=int, default=20)
    parser.add_argument("--report-once", metavar="URL", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.report_once:
        asyncio.run(report_once(args.report_once))
    else:
        kinds = ["sqlite", "postgresql"] if args.database == "both" else [args.database]
        asyncio.run(main(args.cases, kinds, args.postgres, args.runs))
