"""Benchmark: cases opened and driven through the lifecycle, casework against bare Temporal.

    .venv/bin/python -m bench.lifecycle --cases 200 --concurrency 20

Each case: open (start the workflow, then query its view) + 6 updates (accept, assess, submit
plan, approve, start monitoring, add note), each recorded by an activity (casework: to SQLite).
The bare-Temporal twin (bench/bare.py) gets the same calls with the same payloads; with
`--publishing-twin` a third system runs beside them, the twin showing its stage in the Temporal
UI's list as casework does (its seven search attributes at start, an upsert at each change of
stage), and the ratio to it is printed too: what casework costs beyond that list. casework runs
sealed, as installed by default (bench/sealing.py); `--clear` measures it without. The record is
a SQLite file (as `casework dev` keeps it), or with `--database postgresql` a new database on the
`--postgres` server (as a deployment keeps it). Each worker
runs in a process of its own; this process is the load generator. Three rounds, the order
alternating (casework, bare / bare, casework / casework, bare); every case stays open, so each
round runs with the open cases of the rounds before it (with three systems, rounds alternate
the order of all three). Reports cases/s, updates/s, opening and update latency per round and
system, and casework's ratio to each twin.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import secrets
import statistics
import tempfile
import time
import uuid
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

from sqlalchemy import func, select
from sqlalchemy.ext.asyncio import AsyncEngine
from temporalio.client import Client

from bench.bare import BareCase
from bench.devserver import start_dev_server
from bench.ending import run_and_leave
from bench.record import with_database
from bench.sealing import in_clear, sealed
from bench.worker import WorkerProcess, child_named, cpu_seconds, cpu_seconds_of_all
from domain import commands as c
from domain.case import apply, apply_open, decide, open_case
from service.facade import CaseOps, starting_attributes
from store import tables
from store.db import engine, migrate
from tests.processes import free_port
from tests.scenario import ALICE, PROGRAMS, TO_MONITORING, opening

# The benchmark signs its own commands (workflows/identity.py); the worker inherits the key.
os.environ.setdefault("CASEWORK_ACTOR_KEY", secrets.token_urlsafe(32))

STEPS = (*TO_MONITORING, c.AddNote(actor=ALICE, text="benchmark note"))
ROUNDS = 3
PUBLISHING = "publishing twin"
CaseRun = Callable[[list[float], list[float]], Awaitable[None]]


@dataclass
class Result:
    cases: int
    seconds: float  # until the last update was answered
    latencies: list[float]  # of the updates
    openings: list[float]  # of opening a case (start, then its first view)
    lag: float = 0.0  # then until the record held every case's last event (casework)

    @property
    def rate(self) -> float:
        """Cases done: every update answered and (casework) recorded."""
        return self.cases / (self.seconds + self.lag)

    @property
    def answered_rate(self) -> float:
        """Cases whose updates were answered, the record's lag not counted (how this bench
        measured before 2026-11-26 13:00)."""
        return self.cases / self.seconds


def casework_case(ops: CaseOps) -> CaseRun:
    async def run(latencies: list[float], openings: list[float]) -> None:
        started = time.perf_counter()
        number = (await ops.open_case(opening("general", number=f"B-{uuid.uuid4().hex[:10]}"))).case.number
        openings.append(time.perf_counter() - started)
        for step in STEPS:
            started = time.perf_counter()
            await ops.act(number, step)
            latencies.append(time.perf_counter() - started)

    return run


def bare_case(client: Client, queue: str, publishing: bool = False) -> CaseRun:
    """The twin's case; `publishing`: the publishing twin's (its stage in the search attributes)."""
    stages = stages_after() if publishing else [None] * len(STEPS)

    async def run(latencies: list[float], openings: list[float]) -> None:
        command = opening("general", number=f"B-{uuid.uuid4().hex[:10]}")
        started = time.perf_counter()
        handle = await client.start_workflow(
            BareCase.run,
            command.model_dump(mode="json"),
            id=f"bare-{command.number}",
            task_queue=queue,
            search_attributes=starting_attributes(apply_open(command, datetime.now(UTC)), PROGRAMS["general"])
            if publishing
            else None,
        )
        await handle.query(BareCase.view)
        openings.append(time.perf_counter() - started)
        for step, stage in zip(STEPS, stages, strict=True):
            sent = step.model_dump(mode="json") | ({"stage_after": stage} if stage else {})
            started = time.perf_counter()
            await handle.execute_update(BareCase.act, sent, id=uuid.uuid4().hex)
            latencies.append(time.perf_counter() - started)

    return run


def stages_after() -> list[str]:
    """The stage each of STEPS leads the case to (by casework's lifecycle, worked out here so the
    twin needs none of it)."""
    program = PROGRAMS["general"]
    case, event = open_case(opening("general", number="B-STAGES"), program, datetime.now(UTC))
    stages = []
    for step in STEPS:
        event = decide(case, step, program, event.at, seq=event.seq + 1)
        case = apply(case, event, program)
        stages.append(case.stage.value)
    return stages


async def drive(case: CaseRun, cases: int, concurrency: int) -> Result:
    latencies: list[float] = []
    openings: list[float] = []
    gate = asyncio.Semaphore(concurrency)

    async def gated() -> None:
        async with gate:
            await case(latencies, openings)

    started = time.perf_counter()
    await asyncio.gather(*(gated() for _ in range(cases)))
    return Result(cases, time.perf_counter() - started, latencies, openings)


async def record_caught_up(store: AsyncEngine, expected: int, within: float = 300) -> float:
    """Seconds until the record holds the last event of every one of the `expected` casework
    cases opened so far. casework answers an update once the workflow has applied it and
    records it afterwards, by an activity; under load the recordings fall behind the answers,
    and a round that ended at the last answer would leave its recordings to the next round (the
    other system's). A case whose first recording is still queued has no row yet: the count is
    of cases recorded to the end, not of rows still short. The bare twin's activity records
    nothing: its round ends at its last answer."""
    started = time.perf_counter()
    recorded = select(func.count()).select_from(tables.cases).where(tables.cases.c.last_seq >= 1 + len(STEPS))
    while True:
        async with store.connect() as db:
            done = await db.scalar(recorded) or 0
        if done >= expected:
            return time.perf_counter() - started
        if time.perf_counter() - started > within:
            raise RuntimeError(
                f"the record holds {done} of {expected} cases after {within:.0f} s: is the worker stuck?"
            )
        await asyncio.sleep(0.05)


def line(round_: int, system: str, result: Result, rss_kb: int) -> str:
    q = statistics.quantiles(result.latencies, n=100)
    opened = statistics.median(result.openings)
    lag = f"{result.lag:.1f} s" if system == "casework" else "–"
    return (
        f"| {round_} | {system} | {result.rate:.1f} | {result.answered_rate:.1f} | {lag} "
        f"| {opened * 1000:.0f} ms | {q[49] * 1000:.0f} ms | {q[94] * 1000:.0f} ms | {rss_kb / 1024:.0f} MB |"
    )


async def main(
    cases: int, concurrency: int, verbose: bool, clear: bool, database: str, postgres: str, publishing: bool
) -> None:
    with tempfile.TemporaryDirectory() as tmp:
        env = await start_dev_server(tmp)
        url, drop = await with_database(database, postgres, Path(tmp))
        store = engine(url)
        await migrate(store)
        address = env.client.service_client.config.target_host

        def counters() -> list[str]:  # the SDK's cache counters, in the -v lines
            return ["--metrics", f"127.0.0.1:{free_port()}"] if verbose else []

        workers = {
            "casework": await WorkerProcess.start(
                "--address",
                address,
                "--store",
                url,
                "--queue",
                "bench",
                *(["--clear"] if clear else []),
                *counters(),
            ),
            "bare": await WorkerProcess.start("--address", address, "--queue", "bare", "--bare", *counters()),
        }
        ours = in_clear(env.client) if clear else sealed(env.client, url)
        runs = {
            "casework": casework_case(CaseOps(ours, PROGRAMS, "bench")),
            "bare": bare_case(env.client, "bare"),
        }
        if publishing:  # a worker of its own: each system's worker CPU and cache are its own
            workers[PUBLISHING] = await WorkerProcess.start(
                "--address", address, "--queue", "publishing", "--bare", *counters()
            )
            runs[PUBLISHING] = bare_case(env.client, "publishing", publishing=True)
        server = child_named("temporal")
        try:
            warm_up = 2
            for system in runs:  # warm up: the first cases load what every case uses
                await drive(runs[system], warm_up, 1)
            opened = warm_up  # casework cases so far
            sealing = "in clear" if clear else "sealed"
            print(f"{cases} cases x {len(STEPS)} updates, concurrency {concurrency}", end="; ")
            print(f"casework {sealing}, its record on {database}")
            print("| round | system | cases/s | answered/s | record lag | open p50", end=" ")
            print("| update p50 | update p95 | RSS |")
            print("|---|---|---|---|---|---|---|---|---|")
            results: dict[str, list[Result]] = {system: [] for system in runs}
            for round_ in range(1, ROUNDS + 1):
                order = list(runs) if round_ % 2 else list(reversed(runs))  # casework first, then last
                for system in order:
                    clocks = cpu_clocks(workers[system].process.pid, server, database)
                    await workers[system].stats()  # starts the worker's collection counts afresh
                    result = await drive(runs[system], cases, concurrency)
                    if system == "casework":
                        opened += cases
                        result.lag = await record_caught_up(store, opened)
                    results[system].append(result)
                    stats = await workers[system].stats()
                    print(line(round_, system, result, int(stats.split()[1])), flush=True)
                    if verbose:
                        spent = cpu_clocks(workers[system].process.pid, server, database)
                        per_case = " ".join(
                            f"{who} {(spent[who] - clocks[who]) * 1000 / cases:.0f}" for who in clocks
                        )
                        print(f"    CPU ms per case: {per_case}; worker: {stats}", flush=True)
            summarize(results)
        finally:
            for worker in workers.values():
                await worker.stop()
            await env.shutdown()
            await store.dispose()
            await drop()


def cpu_clocks(worker: int, server: int | None, database: str) -> dict[str, float]:
    clocks = {"worker": cpu_seconds(worker), "load": cpu_seconds()}
    if server is not None:
        clocks["server"] = cpu_seconds(server)
    if database == "postgresql":  # its processes share the cores too (SQLite runs in the worker's)
        clocks["postgres"] = cpu_seconds_of_all("postgres")
    return clocks


def summarize(results: dict[str, list[Result]]) -> None:
    ours = [r.rate for r in results["casework"]]
    for twin in (system for system in results if system != "casework"):
        theirs = [r.rate for r in results[twin]]
        answered = sum(r.answered_rate for r in results["casework"]) / sum(theirs)
        ratios = ", ".join(f"{a / b:.2f}" for a, b in zip(ours, theirs, strict=True))
        print(f"casework / {twin} by round: {ratios}; over all rounds {sum(ours) / sum(theirs):.2f}", end="")
        print(f" (counting casework's answers only, its record's lag left out: {answered:.2f})")
    levels = ", ".join(f"{system} {r[-1].rate / r[0].rate:.2f}" for system, r in results.items())
    print(f"round 3 / round 1: {levels}")


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--cases", type=int, default=200, help="cases per round and system")
    parser.add_argument("--concurrency", type=int, default=20)
    parser.add_argument("-v", "--verbose", action="store_true", help="CPU per case, the worker's collections")
    parser.add_argument("--clear", action="store_true", help="casework without sealing client data")
    parser.add_argument("--database", choices=["sqlite", "postgresql"], default="sqlite", help="the record's")
    parser.add_argument("--postgres", default="postgresql://postgres@127.0.0.1:5432/test")
    parser.add_argument(
        "--publishing-twin", action="store_true", help="also the twin showing its stage as casework does"
    )
    args = parser.parse_args()
    run_and_leave(
        main(
            args.cases,
            args.concurrency,
            args.verbose,
            args.clear,
            args.database,
            args.postgres,
            args.publishing_twin,
        )
    )
