"""Benchmark: the caseload reports over a large record, on SQLite and PostgreSQL.

    .venv/bin/python -m bench.reports --cases 10000
    .venv/bin/python -m bench.reports --cases 100000 --database postgresql \\
        --postgres postgresql://postgres@127.0.0.1:5432/test

Fills a fresh record (the schema the migrations make) with synthetic cases (bench/synthetic.py),
in bulk inserts: 30 managers under 6 supervisors, 3 programs, cases opened over two years, each
with ~15 events, 2-3 referrals, 2 goals, 3 follow-ups, its stage spells and (open cases)
obligations. Then times each report and the case list as `casework list` reads it (a
supervisor's first and second page of 50, soonest due first; a second page newest first)
`--runs` times (p50, p95) — the history reports both computed afresh and as the API serves them
(kept five minutes per scope: `service.reports.Snapshots`) — and the peak RSS of a separate
process that does what the API does for `casework report --csv --chart`: every report, as JSON
and CSV, and the stages chart.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Awaitable, Callable
from datetime import timedelta
from pathlib import Path
from typing import Any

from sqlalchemy.ext.asyncio import AsyncEngine

from bench.ending import run_and_leave
from bench.record import with_database
from bench.synthetic import NOW, fill
from domain.access import Scope
from service.reports import Reports, Snapshots
from store.db import engine, migrate


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
    managed = Reports(store, Scope(manager="cm-07"), NOW)
    served = Served(store)
    jobs: dict[str, Callable[[], Awaitable[Any]]] = {
        "caseload": reports.caseload,
        "overdue": reports.overdue,
        "referrals": reports.referral_outcomes,
        "stages": reports.time_in_stage,
        "weekly": reports.opened_closed_per_week,
        "chart series": reports.stage_series,
        "stages (one supervisor)": supervised.time_in_stage,
        "referrals (one supervisor)": supervised.referral_outcomes,
        "referrals (one case manager)": managed.referral_outcomes,
        "referrals, as served": lambda: served.reports().referral_outcomes(),
        "stages, as served": lambda: served.reports().time_in_stage(),
        "chart series, as served": lambda: served.reports().stage_series(),
        "weekly, as served": lambda: served.reports().opened_closed_per_week(),
    }
    times = {name: await timed(job, runs) for name, job in jobs.items()}
    times |= await list_times(store, runs)
    await store.dispose()
    return {"fill_s": filled, "times": times, "report_process": report_process(url)}


async def list_times(store: AsyncEngine, runs: int) -> dict[str, tuple[float, float]]:
    """The list as `casework list` reads it for a supervisor: pages of 50 (the API's default)."""
    # imported here: it brings the case service (Temporal's SDK), which the report process needs not
    from service.caselist import CaseFilter, CaseList

    listed = CaseList(store, Scope(supervisor="sup-2"), NOW)
    due_next = (await listed.page(CaseFilter(), "next_due", 50)).following
    newest_next = (await listed.page(CaseFilter(), "newest", 50)).following
    jobs: dict[str, Callable[[], Awaitable[Any]]] = {
        "list page 1, next due": lambda: listed.page(CaseFilter(), "next_due", 50),
        "list page 2, next due": lambda: listed.page(CaseFilter(), "next_due", 50, due_next),
        "list page 2, newest": lambda: listed.page(CaseFilter(), "newest", 50, newest_next),
    }
    return {name: await timed(job, runs) for name, job in jobs.items()}


def report_process(url: str) -> dict[str, float]:
    """Peak RSS (MB) and wall time of a fresh process doing `casework report --csv --chart`'s work.

    The child says its own peak (VmHWM): the rusage `wait4` gives counts at least what this
    process held when it started the child (Linux keeps the parent's peak across exec), and this
    process grows with the record it filled and what it imported."""
    started = time.perf_counter()
    child = subprocess.run(
        [sys.executable, "-m", "bench.reports", "--report-once", url], capture_output=True, text=True
    )
    if child.returncode:
        raise RuntimeError(f"the report process failed ({child.returncode}): {child.stderr[-2000:]}")
    peak_kb = int(child.stdout.split("peak_rss_kb=")[1].split()[0])
    return {"peak_rss_mb": peak_kb / 1024, "wall_s": time.perf_counter() - started}


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


def own_peak_rss_kb() -> int:
    """This process's peak RSS since it was started (exec), in KB (Linux)."""
    return int(Path("/proc/self/status").read_text().split("VmHWM:")[1].split()[0])


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
        print(f"peak_rss_kb={own_peak_rss_kb()}")  # read by report_process
    else:
        kinds = ["sqlite", "postgresql"] if args.database == "both" else [args.database]
        run_and_leave(main(args.cases, kinds, args.postgres, args.runs))
