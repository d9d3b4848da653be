"""A benchmark's worker, in a process of its own (so its RSS is its own, and it does not share
a core's event loop with the load generator).

    python -m bench.worker --address HOST:PORT --store URL --queue Q [--bare] [--clear] [--trace FILE]
        [--metrics HOST:PORT]

casework's worker seals client data with the master key in CASEWORK_PAYLOAD_KEY (bench/sealing.py)
unless --clear. Prints "ready" once polling. SIGUSR1 prints the process's RSS (and with --trace writes the
largest allocation sites, by tracemalloc, to FILE); SIGTERM stops it.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import gc
import linecache
import os
import signal
import sys
import time
import tracemalloc
import types
import urllib.request
from collections import Counter
from pathlib import Path
from typing import ClassVar

from temporalio.client import Client
from temporalio.contrib.pydantic import pydantic_data_converter
from temporalio.runtime import PrometheusConfig, Runtime, TelemetryConfig
from temporalio.worker import Worker

from bench.bare import BareCase, bare_record
from bench.sealing import in_clear, sealed
from config.settings import Settings
from store.db import engine
from worker import build_worker, freeze_startup_heap, workflow_runner

TRACE_FRAMES = 8
TRACE_TOP = 40


def cpu_seconds(pid: int | str = "self") -> float:
    """User and system CPU time a process has used, from /proc (Linux)."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def cpu_seconds_of_all(name: str) -> float:
    """User and system CPU time used so far by every process whose command is `name` (the
    PostgreSQL server's processes; those that ended meanwhile are not counted)."""
    total = 0.0
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            with contextlib.suppress(OSError, ValueError, IndexError):
                stat = (entry / "stat").read_text()
                if stat.split("(", 1)[1].rsplit(")", 1)[0] == name:
                    total += cpu_seconds(entry.name)
    return total


def child_named(name: str) -> int | None:
    """The pid of this process's child whose command is `name` (the dev server)."""
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            with contextlib.suppress(OSError):
                stat = (entry / "stat").read_text()
                command, rest = stat.split("(", 1)[1].rsplit(")", 1)
                if command == name and int(rest.split()[1]) == os.getpid():
                    return int(entry.name)
    return None


def rss_kb(pid: int | str = "self") -> int:
    """Resident set size of a process, from /proc (Linux)."""
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1])
    raise RuntimeError("no VmRSS in /proc status")


class Tracer:
    """Allocation sites that grew since the report before (the first report only takes a baseline)."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self.baseline: tracemalloc.Snapshot | None = None

    def report(self) -> None:
        gc.collect()
        snapshot = tracemalloc.take_snapshot().filter_traces(
            [tracemalloc.Filter(False, tracemalloc.__file__), tracemalloc.Filter(False, linecache.__file__)]
        )
        baseline, self.baseline = self.baseline, snapshot
        if baseline is None:
            return
        grown = snapshot.compare_to(baseline, "lineno")
        lines = [f"traced growth: {sum(s.size_diff for s in grown) / 1e6:.1f} MB", "--- by line"]
        lines += [str(s) for s in grown[:TRACE_TOP]]
        lines.append("--- by the innermost file outside Python's import machinery")
        lines += _by_own_file(snapshot, baseline)
        lines.append("--- by traceback")
        for stat in snapshot.compare_to(baseline, "traceback")[:15]:
            lines.append(f"{stat.size_diff / 1e6:.2f} MB in {stat.count_diff} blocks")
            lines += [f"    {frame}" for frame in stat.traceback.format()]
        with self.path.open("a") as out:
            out.write("\n".join(lines) + "\n\n")


def _by_own_file(snapshot: tracemalloc.Snapshot, baseline: tracemalloc.Snapshot) -> list[str]:
    """Growth by the innermost frame that is not importlib's own (so a module's execution is
    charged to the module)."""
    sizes: dict[str, int] = {}
    for stat in snapshot.compare_to(baseline, "traceback"):
        own = next((f.filename for f in stat.traceback if not f.filename.startswith("<frozen")), "?")
        sizes[own] = sizes.get(own, 0) + stat.size_diff
    top = sorted(sizes.items(), key=lambda item: -item[1])[:TRACE_TOP]
    return [f"{size / 1e6:8.2f} MB  {name}" for name, size in top]


async def serve(args: argparse.Namespace) -> None:
    runtime = None
    if args.metrics:  # the SDK's own counters (sticky cache hits, misses, evictions) for Prometheus
        runtime = Runtime(telemetry=TelemetryConfig(metrics=PrometheusConfig(bind_address=args.metrics)))
    client = await Client.connect(args.address, data_converter=pydantic_data_converter, runtime=runtime)
    if args.bare:
        worker = Worker(
            client,
            task_queue=args.queue,
            workflows=[BareCase],
            activities=[bare_record],
            workflow_runner=workflow_runner(),
            max_cached_workflows=Settings().cached_cases,  # casework's cache, not the SDK's 1,000
        )
    else:
        client = in_clear(client) if args.clear else sealed(client, args.store)
        worker = build_worker(client, engine(args.store), args.queue)
        freeze_startup_heap()  # as `casework worker` does
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    loop.add_signal_handler(signal.SIGTERM, stop.set)
    tracer = Tracer(args.trace) if args.trace else None
    cache = CacheCounters(args.metrics) if args.metrics else None
    loop.add_signal_handler(signal.SIGUSR1, lambda: report(tracer, cache))
    async with worker:
        print("ready", flush=True)
        await stop.wait()


class GcClock:
    """Time the process spent in garbage collection, by generation (gc.callbacks)."""

    def __init__(self) -> None:
        self.seconds = [0.0, 0.0, 0.0]
        self.counts = [0, 0, 0]
        self.started = 0.0
        gc.callbacks.append(self.on_gc)

    def on_gc(self, phase: str, info: dict[str, int]) -> None:
        if phase == "start":
            self.started = time.perf_counter()
        else:
            self.seconds[info["generation"]] += time.perf_counter() - self.started
            self.counts[info["generation"]] += 1

    def take(self) -> str:
        """Collections and seconds per generation since the last take."""
        said = " ".join(f"gen{g}:{self.counts[g]}/{self.seconds[g]:.2f}s" for g in range(3))
        self.seconds, self.counts = [0.0, 0.0, 0.0], [0, 0, 0]
        return said


GC_CLOCK = GcClock()


class CacheCounters:
    """The SDK's workflow-cache counters, read from its own Prometheus endpoint: hits (a task for a
    cached run), misses (a task for a run evicted meanwhile: its whole history fetched and
    replayed) and forced evictions (runs put out to make room)."""

    NAMES: ClassVar[dict[str, str]] = {
        "temporal_sticky_cache_hit": "hit",
        "temporal_sticky_cache_miss": "miss",
        "temporal_sticky_cache_total_forced_eviction": "evicted",
    }

    def __init__(self, address: str) -> None:
        self.url = f"http://{address}/metrics"
        self.before = dict.fromkeys(self.NAMES.values(), 0.0)

    def take(self) -> str:
        """Each counter's growth since the last take."""
        now = dict.fromkeys(self.NAMES.values(), 0.0)
        with urllib.request.urlopen(self.url, timeout=5) as answer:
            for line in answer.read().decode().splitlines():
                name = line.split("{", 1)[0].split(" ", 1)[0].removesuffix("_total")
                if name in self.NAMES:
                    now[self.NAMES[name]] += float(line.rsplit(" ", 1)[1])
        said = " ".join(f"{k}:{now[k] - self.before[k]:.0f}" for k in now)
        self.before = now
        return f"cache {said}"


def report(tracer: Tracer | None, cache: CacheCounters | None = None) -> None:
    if tracer is not None:
        tracer.report()
    collections = GC_CLOCK.take()
    try:  # the answer must come whatever: the load generator waits for it
        cached = f" {cache.take()}" if cache is not None else ""
    except (OSError, ValueError) as exc:
        cached = f" cache unread ({exc})"
    gc.collect()
    print(
        f"rss_kb {rss_kb()} objects {len(gc.get_objects())} gc {collections}{cached} {module_copies()}",
        flush=True,
    )


def module_copies() -> str:
    """Modules loaded more than once (the sandbox loads a workflow's own modules for every run)."""
    names = Counter(m.__name__ for m in gc.get_objects() if isinstance(m, types.ModuleType))
    return "modules " + ",".join(f"{name}x{n}" for name, n in names.most_common(8) if n > 1)


class WorkerProcess:
    """The load generator's handle on a worker started with `python -m bench.worker`.

    The worker's stdout is read all the time, not only when a reading is asked for: the SDK's
    core logs there too, and a pipe nobody reads fills (64 KB) and blocks the worker's writes,
    stalling the whole worker (it did, mid-benchmark, holding SQLite's write lock)."""

    def __init__(self, process: asyncio.subprocess.Process) -> None:
        self.process = process
        self.answers: asyncio.Queue[str] = asyncio.Queue()
        self.reader = asyncio.create_task(self._read())

    @classmethod
    async def start(cls, *args: str) -> WorkerProcess:
        process = await asyncio.create_subprocess_exec(
            sys.executable, "-m", "bench.worker", *args, stdout=asyncio.subprocess.PIPE
        )
        started = cls(process)
        await started._answer("ready")
        return started

    async def rss_kb(self) -> int:
        """The worker's RSS after a full garbage collection (asked by SIGUSR1)."""
        return int((await self.stats()).split()[1])

    async def stats(self) -> str:
        """RSS, objects tracked by the collector, collections and their time since last asked."""
        self.process.send_signal(signal.SIGUSR1)
        return (await self._answer("rss_kb")).strip()

    async def stop(self) -> None:
        self.process.send_signal(signal.SIGTERM)
        await self.process.wait()
        await self.reader

    async def _read(self) -> None:
        """Our answers go to the queue; anything else the worker prints goes to our stderr."""
        assert self.process.stdout is not None
        async for raw in self.process.stdout:
            line = raw.decode(errors="replace")
            if line.startswith(("ready", "rss_kb")):
                await self.answers.put(line)
            else:
                sys.stderr.write(line)
        await self.answers.put("")  # the worker exited

    async def _answer(self, starting: str) -> str:
        line = await self.answers.get()
        if not line.startswith(starting):
            raise RuntimeError(f"the worker said {line!r} where {starting!r} was expected")
        return line


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--address", required=True)
    parser.add_argument("--store", default="")
    parser.add_argument("--queue", required=True)
    parser.add_argument("--bare", action="store_true", help="run the bare-Temporal twin instead")
    parser.add_argument("--trace", type=Path, help="trace allocations; SIGUSR1 writes them here")
    parser.add_argument("--clear", action="store_true", help="casework without sealing client data")
    parser.add_argument("--metrics", metavar="HOST:PORT", help="serve the SDK's metrics for Prometheus here")
    args = parser.parse_args()
    if args.trace is not None:
        tracemalloc.start(int(os.environ.get("TRACE_FRAMES", TRACE_FRAMES)))
    asyncio.run(serve(args))
    sys.stdout.flush()


if __name__ == "__main__":
    main()
