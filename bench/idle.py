"""Benchmark: one worker holding many idle open cases; how much memory does it take?

    .venv/bin/python -m bench.idle --cases 10000

Opens `--cases` cases (each stays in intake, waiting for its first deadline days away) on one
worker with casework's default cache (CASEWORK_CACHED_CASES), the worker in a process of its
own. Reports the worker's RSS (after a full garbage collection) at start and every `--every`
cases, the rate cases were opened at in each block, and how many were opened but not seen
within 10 s (*late*). casework runs sealed, as installed by default (bench/sealing.py), `--clear`
without; `--bare` runs the bare-Temporal twin (bench/bare.py) instead; `--trace
FILE` has the worker trace allocations and append what grew since the reading before to FILE at
each reading (slow).
"""

from __future__ import annotations

import argparse
import asyncio
import os
import secrets
import tempfile
import time
import uuid
from pathlib import Path

from bench.bare import BareCase
from bench.devserver import start_dev_server
from bench.ending import run_and_leave
from bench.sealing import in_clear, sealed
from bench.worker import WorkerProcess
from domain.errors import Refusal
from service.facade import CaseOps
from service.refusals import CaseError
from store.db import engine, migrate
from tests.scenario import PROGRAMS, opening

# The benchmark signs its own commands (workflows/identity.py); the worker inherits the key.
os.environ.setdefault("CASEWORK_ACTOR_KEY", secrets.token_urlsafe(32))
QUEUE = "bench-idle"
SETTLE_S = 3.0  # for the last cases' recording to finish before the final reading


async def open_block(ops: CaseOps, count: int, concurrency: int, bare: bool) -> int:
    """Open `count` cases; return how many were started but not seen within the command timeout
    (the worker busy: the case is open all the same, Temporal keeps its first task)."""
    gate = asyncio.Semaphore(concurrency)
    late = 0

    async def one() -> None:
        async with gate:
            command = opening("general", number=f"I-{uuid.uuid4().hex[:12]}")
            if bare:
                await ops.client.start_workflow(
                    BareCase.run,
                    command.model_dump(mode="json"),
                    id=f"bare-{command.number}",
                    task_queue=QUEUE,
                )
            else:
                try:
                    await ops.open_case(command)
                except CaseError as slow:
                    if slow.kind is not Refusal.UNAVAILABLE:
                        raise
                    nonlocal late
                    late += 1

    await asyncio.gather(*(one() for _ in range(count)))
    return late


async def main(
    cases: int, every: int, concurrency: int, bare: bool, trace: Path | None, verbose: bool, clear: bool
) -> None:
    with tempfile.TemporaryDirectory() as tmp:
        env = await start_dev_server(tmp)
        url = f"sqlite+aiosqlite:///{Path(tmp) / 'record.db'}"
        store = engine(url)
        await migrate(store)
        await store.dispose()
        address = env.client.service_client.config.target_host
        args = ["--address", address, "--store", url, "--queue", QUEUE, *(["--bare"] if bare else [])]
        args += ["--clear"] if clear else []
        worker = await WorkerProcess.start(*args, *(["--trace", str(trace)] if trace else []))
        ops = CaseOps(in_clear(env.client) if clear or bare else sealed(env.client, url), PROGRAMS, QUEUE)
        try:
            await open_block(ops, 1, 1, bare)  # warm up: the first case loads what every case uses
            start = await worker.rss_kb()
            print(f"{'bare' if bare else 'casework'}: worker RSS after 1 case {start / 1024:.0f} MB")
            print("| open cases | worker RSS | since start, per case | cases/s in block | late |")
            print("|---|---|---|---|---|")
            done = 0
            while done < cases:
                block = min(every, cases - done)
                began = time.perf_counter()
                late = await open_block(ops, block, concurrency, bare)
                rate = block / (time.perf_counter() - began)
                done += block
                if done == cases:
                    await asyncio.sleep(SETTLE_S)
                stats = await worker.stats()
                rss = int(stats.split()[1])
                per_case = (rss - start) / done
                row = f"| {done:,} | {rss / 1024:.0f} MB | {per_case:.0f} KB | {rate:.1f} | {late} |"
                print(row, flush=True)
                if verbose:
                    print(f"    worker: {stats}", flush=True)
        finally:
            await worker.stop()
            await env.shutdown()


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--cases", type=int, default=10_000)
    parser.add_argument("--every", type=int, default=1_000)
    parser.add_argument("--concurrency", type=int, default=20)
    parser.add_argument("--bare", action="store_true")
    parser.add_argument("--clear", action="store_true", help="casework without sealing client data")
    parser.add_argument("--trace", type=Path)
    parser.add_argument("-v", "--verbose", action="store_true", help="the worker's objects and collections")
    args = parser.parse_args()
    run_and_leave(
        main(args.cases, args.every, args.concurrency, args.bare, args.trace, args.verbose, args.clear)
    )
