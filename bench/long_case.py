"""Benchmark: one case driven through five years of activity on a local dev server.

    .venv/bin/python -m bench.long_case            # five years of activity
    .venv/bin/python -m bench.long_case --quick    # one year: a smoke run

No real time passes: a case's age is the amount of activity it has seen. Per week: five
notes of 2,000 characters, a recorded follow-up, a referral every 4 weeks (accepted, then
completed, by the provider), a plan review every 8 weeks and a plan revision every 52. Each
command goes through `CaseOps.act`, one at a time. Reports update latency (p50, p95) by age,
and per workflow run (the case continues as new on its own bounds) the history's events and
bytes and the carried input. A bare-Temporal twin (`BareTwin`: an update that keeps nothing
and returns a small dict, one trivial activity per update, continue-as-new every 1,000
updates) gets the same updates with the same payloads, week by week interleaved with the
case, on the same server, so each age bucket compares casework with Temporal alone.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import secrets
import statistics
import sys
import tempfile
import time
import uuid
from dataclasses import dataclass, field
from datetime import timedelta
from pathlib import Path
from typing import Any

from temporalio import activity, workflow
from temporalio.api.common.v1 import Payloads
from temporalio.api.history.v1 import HistoryEvent
from temporalio.client import Client, WorkflowHandle
from temporalio.worker import Worker
from temporalio.worker.workflow_sandbox import SandboxedWorkflowRunner, SandboxRestrictions

from bench.devserver import start_dev_server
from config.logs import configure_logging
from config.settings import Settings
from domain import commands as c
from domain.commands import new_command_key
from domain.errors import Refusal
from domain.models import Actor, Role
from service.facade import CaseOps
from service.refusals import CaseError
from store.db import engine, migrate
from tests.receivers import MailSink
from tests.scenario import ALICE, PLAN_REVISION, PROGRAMS, TO_MONITORING, opening, quiet_referral
from worker import PASSTHROUGH, build_worker
from workflows.search import workflow_id

# The benchmark signs its own commands (workflows/identity.py) with a key of its own.
os.environ.setdefault("CASEWORK_ACTOR_KEY", secrets.token_urlsafe(32))

WEEKS_A_YEAR = 52
FIRST_MONTH = 4  # weeks
NOTE_CHARS = 2_000
SHELTER = Actor(id="shelter-north", role=Role.PROVIDER)
BARE_CONTINUE_AT = 1_000  # updates per run of the bare twin
BUSY_WAIT = 0.05  # seconds before a command refused with "try again shortly" is sent again
KB = 1024

# --- the bare-Temporal twin ------------------------------------------------------------


@activity.defn(name="bare_touch")
async def bare_touch(command: dict[str, Any]) -> int:
    """The twin's one activity per update: takes the command (same input size), does nothing."""
    return len(command)


@workflow.defn(name="BareTwin")
class BareTwin:
    """Temporal alone: an update that keeps nothing and returns a small dict; the loop runs one
    trivial activity per update (as casework's loop records after its handler returns), and the
    run continues as new every BARE_CONTINUE_AT updates."""

    def __init__(self) -> None:
        self.waiting: list[dict[str, Any]] = []  # updates whose activity has not run yet
        self.updates = 0  # in this run
        self.total = 0

    @workflow.run
    async def run(self, carried: int) -> None:
        self.total = carried
        while True:
            await workflow.wait_condition(lambda: bool(self.waiting))
            while self.waiting:
                await workflow.execute_activity(
                    bare_touch, self.waiting.pop(0), start_to_close_timeout=timedelta(seconds=10)
                )
            if self.updates >= BARE_CONTINUE_AT and workflow.all_handlers_finished():
                workflow.continue_as_new(self.total)

    @workflow.update
    def act(self, command: dict[str, Any]) -> dict[str, Any]:
        self.waiting.append(command)
        self.updates += 1
        self.total += 1
        return {"ok": True, "n": self.total}


# --- the case's five years -----------------------------------------------------------------


@dataclass
class Sample:
    week: int
    ms: float
    busy: int  # times the case refused it first with "try again shortly"


@dataclass
class Drive:
    """Sends one command at a time to the case, timing `CaseOps.act`, and keeps each command's
    payload (the dict the update carries) for the twin."""

    ops: CaseOps
    number: str
    week: int = 0
    samples: list[Sample] = field(default_factory=list)
    sent: list[tuple[int, dict[str, Any]]] = field(default_factory=list)

    async def act(self, command: c.StaffCommand) -> str | None:
        """Apply `command`; the referral it made, if any."""
        key, busy = new_command_key(), 0
        started = time.perf_counter()
        while True:
            try:
                receipt = await self.ops.act(self.number, command, key=key)
                break
            except CaseError as refused:
                if refused.kind != Refusal.UNAVAILABLE:
                    raise
                busy += 1  # the record is behind (or no worker took it): same key, again
                await asyncio.sleep(BUSY_WAIT)
        self.samples.append(Sample(self.week, (time.perf_counter() - started) * 1000, busy))
        self.sent.append((self.week, command.model_dump(mode="json")))
        return receipt.referral.id if receipt.referral is not None else None


def note(week: int, day: int) -> c.AddNote:
    text = f"week {week} day {day}: " + "spoke with the client about housing, work and health. " * 40
    return c.AddNote(actor=ALICE, text=text[:NOTE_CHARS])


async def a_week(drive: Drive, week: int) -> None:
    """One week of the case, as tests/workflow/test_five_year_case.py has it (without the hold
    and the missed follow-ups: here every week has its contact)."""
    drive.week = week
    for day in range(5):
        await drive.act(note(week, day))
    if week % WEEKS_A_YEAR == WEEKS_A_YEAR - 1:  # the plan is revised once a year
        for change in PLAN_REVISION:
            await drive.act(change)
    if week % 4 == 0:  # a referral a month, accepted, then completed by the provider
        referral = await drive.act(quiet_referral())
        assert referral is not None
        for answer in ("accepted", "completed"):
            await drive.act(c.AnswerReferral(actor=SHELTER, referral_id=referral, answer=answer))
    await drive.act(c.RecordFollowUp(actor=ALICE, summary=f"week {week}: weekly contact"))
    if week % 8 == 0:
        await drive.act(c.ReviewPlan(actor=ALICE, summary=f"week {week}: on track"))


async def bare_week(client: Client, workflow_id_: str, sent: list[dict[str, Any]], week: int) -> list[Sample]:
    """The same updates, with the same payloads, to the bare twin."""
    handle = client.get_workflow_handle_for(BareTwin.run, workflow_id_)
    samples = []
    for payload in sent:
        started = time.perf_counter()
        await handle.execute_update(
            BareTwin.act, payload, id=uuid.uuid4().hex, rpc_timeout=timedelta(seconds=10)
        )
        samples.append(Sample(week, (time.perf_counter() - started) * 1000, 0))
    return samples


# --- measuring ---------------------------------------------------------------------------


def payload_size(payloads: Payloads) -> int:
    return sum(p.ByteSize() for p in payloads.payloads)


@dataclass
class RunSize:
    run_id: str
    weeks: tuple[int, int]  # first and last week it was seen running
    events: int
    history: int  # bytes
    carried: int  # bytes of the WorkflowExecutionStarted input
    update_result: int  # the largest, bytes
    activity_input: int  # the largest, bytes


def run_size(run_id: str, weeks: tuple[int, int], events: list[HistoryEvent]) -> RunSize:
    """As `sizes()` in tests/workflow/test_five_year_case.py measures a run."""
    results = [
        payload_size(Payloads(payloads=[attrs.outcome.success.payloads[0]]))
        for e in events
        if e.HasField("workflow_execution_update_completed_event_attributes")
        and (attrs := e.workflow_execution_update_completed_event_attributes).outcome.HasField("success")
    ]
    inputs = [
        payload_size(e.activity_task_scheduled_event_attributes.input)
        for e in events
        if e.HasField("activity_task_scheduled_event_attributes")
    ]
    return RunSize(
        run_id=run_id,
        weeks=weeks,
        events=len(events),
        history=sum(e.ByteSize() for e in events),
        carried=payload_size(events[0].workflow_execution_started_event_attributes.input),
        update_result=max(results, default=0),
        activity_input=max(inputs, default=0),
    )


async def run_sizes(client: Client, wf_id: str, runs: dict[str, tuple[int, int]]) -> list[RunSize]:
    measured = []
    for run_id, weeks in runs.items():
        history = await client.get_workflow_handle(wf_id, run_id=run_id).fetch_history()
        measured.append(run_size(run_id, weeks, list(history.events)))
    return measured


def seen(runs: dict[str, tuple[int, int]], run_id: str, week: int) -> None:
    first, _ = runs.get(run_id, (week, week))
    runs[run_id] = (first, week)


def buckets(weeks: int) -> list[tuple[str, range]]:
    """First month, then each year (the last one may be partial)."""
    years = (weeks + WEEKS_A_YEAR - 1) // WEEKS_A_YEAR
    spans = [("first month", range(0, min(FIRST_MONTH, weeks)))]
    spans += [
        (f"year {y + 1}", range(y * WEEKS_A_YEAR, min((y + 1) * WEEKS_A_YEAR, weeks))) for y in range(years)
    ]
    return spans


def percentiles(values: list[float]) -> tuple[float, float]:
    if len(values) < 2:
        return (values[0], values[0]) if values else (float("nan"), float("nan"))
    q = statistics.quantiles(values, n=100, method="inclusive")
    return q[49], q[94]


def in_bucket(samples: list[Sample], weeks: range) -> list[Sample]:
    return [s for s in samples if s.week in weeks]


def report(
    weeks: int,
    case: list[Sample],
    bare: list[Sample],
    case_runs: list[RunSize],
    bare_runs: list[RunSize],
    elapsed: float,
    files: dict[str, int],
) -> None:
    print(f"one case, {weeks} weeks of activity ({len(case)} updates) in {elapsed:.0f} s wall time")
    print()
    columns = (
        "age",
        "weeks",
        "updates",
        "casework p50",
        "casework p95",
        "casework max",
        "bare p50",
        "bare p95",
    )
    print("| " + " | ".join((*columns, "busy")) + " |")
    print("|" + "---|" * (len(columns) + 1))
    p50s: list[float] = []
    for label, span in buckets(weeks):
        ours, theirs = in_bucket(case, span), in_bucket(bare, span)
        (p50, p95), (b50, b95) = percentiles([s.ms for s in ours]), percentiles([s.ms for s in theirs])
        worst = max(s.ms for s in ours)
        busy = sum(s.busy for s in ours)
        p50s.append(p50)
        print(
            f"| {label} | {span.start}–{span.stop - 1} | {len(ours)} | {p50:.1f} ms | {p95:.1f} ms "
            f"| {worst:.0f} ms | {b50:.1f} ms | {b95:.1f} ms | {busy} |"
        )
    last = buckets(weeks)[-1][0]
    ratio = p50s[-1] / p50s[0]
    verdict = "within" if ratio <= 1.5 else "OVER"
    print()
    print(f"{last} p50 / first month p50 = {ratio:.2f} ({verdict} the 1.5 target)")
    print()
    print("casework runs (continue-as-new on its own bounds):")
    print("| run | weeks | events | history | carried | largest update result | largest activity input |")
    print("|---|---|---|---|---|---|---|")
    for i, r in enumerate(case_runs, 1):
        print(
            f"| {i} (…{r.run_id[-6:]}) | {r.weeks[0]}–{r.weeks[1]} | {r.events:,} "
            f"| {r.history / KB / KB:.2f} MB | {r.carried / KB:.1f} KB "
            f"| {r.update_result / KB:.2f} KB | {r.activity_input / KB:.1f} KB |"
        )
    print()
    print(
        f"largest update result payload: {max(r.update_result for r in case_runs):,} bytes; "
        f"largest activity input payload: {max(r.activity_input for r in case_runs):,} bytes"
    )
    print("on disk: " + ", ".join(f"{name} {size / KB / KB:.1f} MB" for name, size in files.items()))
    largest = max(bare_runs, key=lambda r: r.history)
    print(
        f"bare twin: {len(bare_runs)} runs, largest history {largest.history / KB / KB:.2f} MB "
        f"({largest.events:,} events)"
    )


# --- the session -------------------------------------------------------------------------


async def main(weeks: int) -> None:
    sink = MailSink().start()  # the referral emails to the provider go here
    try:
        with tempfile.TemporaryDirectory() as tmp:
            env = await start_dev_server(tmp)
            try:
                await session(env.client, Path(tmp), sink, weeks)
            finally:
                await env.shutdown()
    finally:
        sink.stop()


async def session(client: Client, tmp: Path, sink: MailSink, weeks: int) -> None:
    store = engine(f"sqlite+aiosqlite:///{tmp / 'record.db'}")
    await migrate(store)
    ops = CaseOps(client, PROGRAMS, "bench-case", record=store)
    settings = Settings(smtp_host="127.0.0.1", smtp_port=sink.port)
    bare_worker = Worker(
        client,
        task_queue="bench-bare",
        workflows=[BareTwin],
        activities=[bare_touch],
        workflow_runner=bare_runner(),
    )
    case_runs: dict[str, tuple[int, int]] = {}
    bare_runs: dict[str, tuple[int, int]] = {}
    bare: list[Sample] = []
    try:
        async with build_worker(client, store, "bench-case", settings), bare_worker:
            number = (await ops.open_case(opening("weekly", number=f"L-{uuid.uuid4().hex[:10]}"))).case.number
            drive = Drive(ops, number, week=-1)
            for step in TO_MONITORING:  # not counted: the case's first days
                await drive.act(step)
            drive.samples.clear()
            drive.sent.clear()
            bare_id = f"bare-{uuid.uuid4().hex[:10]}"
            await client.start_workflow(BareTwin.run, 0, id=bare_id, task_queue="bench-bare")
            case_handle: WorkflowHandle[Any, Any] = client.get_workflow_handle(workflow_id(number))
            bare_handle: WorkflowHandle[Any, Any] = client.get_workflow_handle(bare_id)
            started = time.perf_counter()
            for week in range(weeks):
                before = len(drive.sent)
                await a_week(drive, week)
                seen(case_runs, (await case_handle.describe()).run_id, week)
                bare += await bare_week(client, bare_id, [p for _, p in drive.sent[before:]], week)
                seen(bare_runs, (await bare_handle.describe()).run_id, week)
                if week % WEEKS_A_YEAR == WEEKS_A_YEAR - 1 or week == weeks - 1:
                    progress(drive.samples, bare, week, len(case_runs), started)
            elapsed = time.perf_counter() - started
            case_sizes = await run_sizes(client, workflow_id(number), case_runs)
            bare_sizes = await run_sizes(client, bare_id, bare_runs)
            await case_handle.terminate(reason="benchmark finished")
            await bare_handle.terminate(reason="benchmark finished")
    finally:
        await store.dispose()
    report(weeks, drive.samples, bare, case_sizes, bare_sizes, elapsed, database_sizes(tmp))


def database_sizes(tmp: Path) -> dict[str, int]:
    """Bytes on disk of the record store and the dev server's database (with their WAL files)."""
    return {
        name: sum(p.stat().st_size for p in tmp.glob(f"{stem}.db*"))
        for name, stem in (("record store", "record"), ("dev server", "temporal"))
    }


def bare_runner() -> SandboxedWorkflowRunner:
    """The sandbox casework's worker uses, with this module passed through (its imports need
    not, and cannot all, be re-imported in the sandbox)."""
    restrictions = SandboxRestrictions.default.with_passthrough_modules(*PASSTHROUGH, __name__)
    return SandboxedWorkflowRunner(restrictions=restrictions)


def progress(case: list[Sample], bare: list[Sample], week: int, runs: int, started: float) -> None:
    def year(samples: list[Sample]) -> list[float]:
        return [s.ms for s in samples if week - WEEKS_A_YEAR < s.week <= week]

    print(
        f"  week {week + 1}: {time.perf_counter() - started:.0f} s, casework p50 "
        f"{percentiles(year(case))[0]:.1f} ms, bare p50 {percentiles(year(bare))[0]:.1f} ms, "
        f"{runs} casework run(s)",
        flush=True,
    )


def cli() -> None:
    parser = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    parser.add_argument("--years", type=float, default=5, help="years of activity (52 weeks each)")
    parser.add_argument("--quick", action="store_true", help="one year: a smoke run")
    parser.add_argument(
        "--limit", type=float, default=20, help="minutes after which the run stops, unfinished"
    )
    args = parser.parse_args()
    weeks = max(1, round((1 if args.quick else args.years) * WEEKS_A_YEAR))
    configure_logging("INFO")  # the worker's JSON logs, as `casework worker` writes them: to stderr

    async def bounded() -> None:
        async with asyncio.timeout(args.limit * 60):
            await main(weeks)

    code = 0
    try:
        asyncio.run(bounded())
    except TimeoutError:
        print(f"stopped: not finished within {args.limit:g} minutes", file=sys.stderr)
        code = 1
    sys.stdout.flush()
    sys.stderr.flush()
    os._exit(code)  # processes that used the Temporal SDK may abort at exit (sdk-python#300)


if __name__ == "__main__":
    # Run as bench.long_case, not __main__: the worker's sandbox passes BareTwin's module through
    # by its name, and a module named __main__ would be loaded again inside the sandbox.
    from bench import long_case

    long_case.cli()
