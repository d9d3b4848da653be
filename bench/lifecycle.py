"""Benchmark: cases opened and driven through the lifecycle on a local dev server.

    .venv/bin/python -m bench.lifecycle --cases 200 --concurrency 20

Each case: open (start workflow) + 6 updates (accept, assess, submit plan, approve,
start monitoring, add note), each update recorded to SQL by an activity. Reports
cases/s, updates/s and update latency percentiles. The dev server runs with its SQLite
file in WAL mode, as `casework dev` does.
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
from pathlib import Path

from bench.devserver import start_dev_server
from domain import commands as c
from service.facade import CaseOps
from store.db import engine, migrate
from tests.scenario import ALICE, PROGRAMS, TO_MONITORING, opening
from worker import build_worker

# The benchmark signs its own commands (workflows/identity.py) with a key of its own.
os.environ.setdefault("CASEWORK_ACTOR_KEY", secrets.token_urlsafe(32))

STEPS = (*TO_MONITORING, c.AddNote(actor=ALICE, text="benchmark note"))


async def one_case(ops: CaseOps, latencies: list[float]) -> None:
    number = (await ops.open_case(opening("general", number=f"B-{uuid.uuid4().hex[:10]}"))).case.number
    for step in STEPS:
        started = time.perf_counter()
        await ops.act(number, step)
        latencies.append(time.perf_counter() - started)


async def main(cases: int, concurrency: int) -> None:
    with tempfile.TemporaryDirectory() as tmp:
        env = await start_dev_server(tmp)
        store = engine(f"sqlite+aiosqlite:///{Path(tmp) / 'record.db'}")
        await migrate(store)
        ops = CaseOps(env.client, PROGRAMS, "bench")
        latencies: list[float] = []
        gate = asyncio.Semaphore(concurrency)

        async def gated() -> None:
            async with gate:
                await one_case(ops, latencies)

        async with build_worker(env.client, store, "bench"):
            await one_case(ops, [])  # warm up
            started = time.perf_counter()
            await asyncio.gather(*(gated() for _ in range(cases)))
            elapsed = time.perf_counter() - started
        await store.dispose()
        await env.shutdown()
    q = statistics.quantiles(latencies, n=100)
    print(f"{cases} cases x {len(STEPS)} updates, concurrency {concurrency}: {elapsed:.1f} s")
    print(f"  {cases / elapsed:.1f} cases/s, {len(latencies) / elapsed:.1f} updates/s")
    p50, p95, worst = q[49] * 1000, q[94] * 1000, max(latencies) * 1000
    print(f"  update latency p50 {p50:.0f} ms, p95 {p95:.0f} ms, max {worst:.0f} ms")


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--cases", type=int, default=200)
    parser.add_argument("--concurrency", type=int, default=20)
    args = parser.parse_args()
    asyncio.run(main(args.cases, args.concurrency))
