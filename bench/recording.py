"""Benchmark: the CPU the recording activity's writes cost per case, by the way they reach the record.

    .venv/bin/python -m bench.recording --cases 300 [--database postgresql]

Records `--cases` cases, each in two batches as `bench/lifecycle.py`'s cases are (the opening,
then the rest of a case driven to monitoring: ~9 events, a referral, a follow-up, a plan), all
cases at once, through the worker's `RecordingTurns` (recordings waiting are written together).
Twice, in a fresh record each: the way the worker writes now (`store.db.write_together`: on a
SQLite file, a group's statements in one hop to a thread running the synchronous driver), and
the way it wrote before (`store.db.writing`: the async driver, a few hops per statement).
Prints CPU (this process, every thread) and wall time per case. On PostgreSQL the two are the
same path (its server's CPU is not counted here).
"""

from __future__ import annotations

import argparse
import asyncio
import os
import tempfile
import time
from collections.abc import Callable, Coroutine
from pathlib import Path
from typing import Any

import activities.records
from activities.contracts import RecordBatch
from activities.records import CaseRecorder
from bench.ending import run_and_leave
from bench.record import with_database
from domain.models import Stage
from store.db import engine, migrate, write_together, writing
from tests.scenario import Story

Write = Callable[[Any, Callable[[Any], Coroutine[Any, Any, Any]]], Coroutine[Any, Any, Any]]


async def through_async_driver(eng: Any, work: Callable[[Any], Coroutine[Any, Any, Any]]) -> Any:
    """How a group was written before `write_together`: every statement through the async driver."""
    async with writing(eng) as conn:
        return await work(conn)


def cpu_seconds() -> float:
    times = os.times()
    return times.user + times.system


async def run(cases: int, database: str, postgres: str, write: Write) -> tuple[float, float, int]:
    stories = [Story("general").to(Stage.MONITORING) for _ in range(cases)]
    activities.records.write_together = write  # type: ignore[attr-defined,assignment]  # how the recorder writes, swapped
    with tempfile.TemporaryDirectory() as tmp:
        url, drop = await with_database(database, postgres, Path(tmp))
        store = engine(url)
        try:
            await migrate(store)
            recorder = CaseRecorder(store)
            sealers = [await recorder.keys.sealer(s.case.number) for s in stories]
            events = sum(len(s.events) for s in stories)

            async def record(story: Story, sealer: Any) -> None:
                first = RecordBatch(
                    case=story.states[0], case_seq=1, events=story.events[:1], program=story.program
                )
                await recorder.turns.record(first, sealer)
                rest = RecordBatch(
                    case=story.case,
                    case_seq=len(story.events),
                    events=story.events[1:],
                    program=story.program,
                )
                await recorder.turns.record(rest, sealer)

            cpu, wall = cpu_seconds(), time.perf_counter()
            await asyncio.gather(*(record(s, sealer) for s, sealer in zip(stories, sealers, strict=True)))
            return cpu_seconds() - cpu, time.perf_counter() - wall, events
        finally:
            await store.dispose()
            await drop()


async def main(cases: int, database: str, postgres: str) -> None:
    print(f"{cases} cases recorded in two batches each, all at once, record on {database}")
    print("| writes | CPU ms per case | wall ms per case | events per case |")
    print("|---|---|---|---|")
    ways: dict[str, Write] = {"together, one hop": write_together, "async driver": through_async_driver}
    for name, write in ways.items():
        cpu, wall, events = await run(cases, database, postgres, write)
        print(f"| {name} | {cpu * 1000 / cases:.1f} | {wall * 1000 / cases:.1f} | {events / cases:.0f} |")


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--cases", type=int, default=300)
    parser.add_argument("--database", choices=["sqlite", "postgresql"], default="sqlite")
    parser.add_argument("--postgres", default="postgresql://postgres@127.0.0.1:5432/test")
    args = parser.parse_args()
    run_and_leave(main(args.cases, args.database, args.postgres))
