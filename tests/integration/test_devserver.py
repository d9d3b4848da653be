"""On the real dev server: visibility, a worker that dies mid-case, continue-as-new."""

from __future__ import annotations

import asyncio
import json
import uuid
from datetime import timedelta
from pathlib import Path

import pytest
from sqlalchemy import func, select
from sqlalchemy.ext.asyncio import AsyncEngine
from temporalio.testing import WorkflowEnvironment

from domain import commands as c
from domain.errors import Refusal
from domain.models import Stage
from service.facade import CaseOps
from service.refusals import CaseError
from store.tables import outbox
from tests.conftest import SUGGEST_CONTINUE_AS_NEW_AT, TrackingOps, case_worker, recorded_events
from tests.integration.test_callback import DIRECTORY
from tests.processes import background, casework, environment
from tests.scenario import ALICE, PROGRAMS, SAM, TO_MONITORING, opening
from tests.terminal import terminal
from workflows.case import RECORD_TIMEOUT
from workflows.search import CASE_NEXT_DUE, CASE_OVERDUE, CASE_STAGE, workflow_id

SECOND = timedelta(seconds=1)
pytestmark = pytest.mark.asyncio(loop_scope="session")


async def eventually(check, within: float = 15.0):  # type: ignore[no-untyped-def]
    """Visibility and the record follow a case a moment later: ask again until the answer comes."""
    async with asyncio.timeout(within):
        while not (result := await check()):
            await asyncio.sleep(0.2)
        return result


async def test_casework_list_finds_a_case_by_stage(
    dev_env: WorkflowEnvironment, record_store: AsyncEngine
) -> None:
    async with case_worker(dev_env, record_store, DIRECTORY) as ops, terminal(ops, record_store) as as_:
        manager = f"m-{uuid.uuid4().hex[:6]}"  # a caseload of its own, so other tests' cases don't show
        command = opening("general", actor=SAM).model_copy(update={"manager": manager})
        number = (await ops.open_case(command)).case.number
        actor = ALICE.model_copy(update={"id": manager})
        for change in TO_MONITORING:
            await ops.act(number, change.model_copy(update={"actor": actor}))

        env = as_("sam")  # the case's supervisor, through the API

        async def listed() -> list[dict[str, object]]:
            done = await asyncio.to_thread(
                casework, "list", "--stage", "monitoring", "--manager", manager, "--json", env=env
            )
            assert done.returncode == 0, done.stderr
            return list(json.loads(done.stdout))

        [row] = await eventually(listed)
        assert row["number"] == number and row["stage"] == "monitoring" and row["manager"] == manager
        assert row["next_due"] is not None and row["overdue"] is False

        table = await asyncio.to_thread(casework, "list", "--manager", manager, env=env)
        assert table.returncode == 0 and number in table.stdout and "monitoring" in table.stdout
        nothing = await asyncio.to_thread(
            casework, "list", "--stage", "evaluation", "--manager", manager, env=env
        )
        assert nothing.returncode == 0 and number not in nothing.stdout

        # a closed case keeps no stale due date in lists
        await ops.act(number, c.Withdraw(actor=actor, reason="client moved away"))
        described = await dev_env.client.get_workflow_handle(workflow_id(number)).describe()
        assert described.typed_search_attributes.get(CASE_STAGE) == "closed"
        assert described.typed_search_attributes.get(CASE_NEXT_DUE) is None


async def test_a_case_publishes_only_what_changes_and_asks_no_patch(
    dev_env: WorkflowEnvironment, record_store: AsyncEngine
) -> None:
    """Each upsert is a history event and a visibility write on the server: a case opened
    starts with every attribute and upserts nothing, records no patch marker, and later
    publishes a change of stage but not a note."""
    async with case_worker(dev_env, record_store) as ops:
        number = (await ops.open_case(opening("general"))).case.number
        await ops.act(number, c.Accept(actor=ALICE))
        await ops.act(number, c.AddNote(actor=ALICE, text="called the client back"))
        handle = ops.client.get_workflow_handle(workflow_id(number))
        history = await handle.fetch_history()
        kinds = [event.WhichOneof("attributes") for event in history.events]
        upserts = [
            sorted(e.upsert_workflow_search_attributes_event_attributes.search_attributes.indexed_fields)
            for e in history.events
            if e.HasField("upsert_workflow_search_attributes_event_attributes")
        ]
        assert "marker_recorded_event_attributes" not in kinds
        assert upserts == [["CaseNextDue", "CaseStage"]]  # accept: assessment, due in days
        described = await handle.describe()
        assert described.typed_search_attributes.get(CASE_STAGE) == "assessment"
        assert described.typed_search_attributes.get(CASE_OVERDUE) is False


async def test_a_worker_killed_after_writing_continues_the_case_and_writes_nothing_twice(
    dev_env: WorkflowEnvironment, record_store: AsyncEngine, database_url: str, tmp_path: Path
) -> None:
    task_queue = f"crash-{uuid.uuid4().hex[:8]}"
    # the first command after the crash waits out the dead worker's tasks: give it time
    ops = TrackingOps(dev_env.client, PROGRAMS, task_queue, record=record_store, command_timeout=60 * SECOND)
    settings = {
        "temporal_address": dev_env.client.service_client.config.target_host,
        "task_queue": task_queue,
        "database_url": database_url,
        "programs_dir": str(Path(__file__).parents[1] / "programs"),
    }
    dying = environment(**settings, failpoint="record-committed", failpoint_marker=str(tmp_path / "fired"))

    with background(["worker"], dying, ready="worker started", log=tmp_path / "worker1.log") as first:
        number = (await ops.open_case(opening("weekly"))).case.number
        # the first recording commits, then the worker dies before telling Temporal
        await asyncio.wait_for(asyncio.to_thread(first.wait), timeout=30)
        assert first.returncode == 137
    assert (tmp_path / "fired").exists()

    with background(
        ["worker"], environment(**settings), ready="worker started", log=tmp_path / "worker2.log"
    ):
        for change in TO_MONITORING:
            view = await ops.do(number, change)
        assert view.case.stage is Stage.MONITORING
        await eventually(lambda: _all_recorded(ops, number), within=40)  # the retry waits out the timeout
        rows = await recorded_events(record_store, number)
        history = await ops.history(number)
        assert [r["seq"] for r in rows] == [e.seq for e in history] == list(range(1, len(history) + 1))
        async with record_store.connect() as conn:
            keys = (
                await conn.execute(
                    select(outbox.c.idempotency_key, func.count())
                    .where(outbox.c.case_number == number)
                    .group_by(outbox.c.idempotency_key)
                )
            ).all()
        assert all(count == 1 for _, count in keys)
        await dev_env.client.get_workflow_handle(workflow_id(number)).terminate(reason="test finished")

    # the retried first batch found its event already written and wrote nothing
    # every line a worker writes is a JSON log record: the SDK's core logs are forwarded too
    logs = [json.loads(line) for line in (tmp_path / "worker2.log").read_text().splitlines() if line]
    # this worker has no payload key, and says so
    assert any(r["level"] == "warning" and "in clear" in r["event"] for r in logs)
    first_batch = [r for r in logs if r.get("event") == "recorded case events" and r.get("seqs") == "1-1"]
    assert [(r["case"], r["new"]) for r in first_batch] == [(number, 0)]
    # it says how long its event waited for the record: at least the killed attempt's timeout
    assert first_batch[0]["behind_s"] >= RECORD_TIMEOUT.total_seconds()


async def _all_recorded(ops: CaseOps, number: str) -> bool:
    return (await ops.view(number)).unrecorded == 0


async def test_a_long_case_continues_as_new_and_keeps_everything(
    dev_env: WorkflowEnvironment, record_store: AsyncEngine
) -> None:
    async with case_worker(dev_env, record_store) as ops:
        number = (await ops.open_case(opening("general"))).case.number
        handle = dev_env.client.get_workflow_handle(workflow_id(number))
        first_run = (await handle.describe()).run_id
        for i in range(SUGGEST_CONTINUE_AS_NEW_AT // 3):
            note = c.AddNote(actor=ALICE, text=f"call {i}: left a message")
            await ops.act(number, note, key=f"call-{i:04}")
        await ops.act(number, c.Accept(actor=ALICE))

        async def new_run() -> bool:
            return (await handle.describe()).run_id != first_run

        await eventually(new_run)
        # A key from the first run: answered with what it applied (seq 11: the opening, then
        # calls 0-9), not applied again. The new run knows the key (carried over) and says
        # `repeated`; not asserted: once in CI the retry was answered by the server from the
        # first run, which had just closed (Temporal answers a known update id from a run no
        # longer running with its outcome as it was, `repeated` false).
        again = await ops.act(number, c.AddNote(actor=ALICE, text="call 9: left a message"), key="call-0009")
        assert (again.seq, again.action) == (11, "add_note")
        with pytest.raises(CaseError) as reused:
            await ops.act(number, c.AddNote(actor=ALICE, text="another call"), key="call-0009")
        assert reused.value.kind is Refusal.CONFLICT
        view = await ops.do(number, c.AddNote(actor=ALICE, text="after continue-as-new"))
        assert view.case.stage is Stage.ASSESSMENT
        history = await ops.history(number)
        assert [e.seq for e in history] == list(range(1, len(history) + 1))
        await eventually(lambda: _all_recorded(ops, number))
        rows = await recorded_events(record_store, number)
        assert [r["seq"] for r in rows] == [e.seq for e in history]
        notes = [n.text for _, n in (await ops.notes(number, limit=100)).found]
        assert len(notes) == SUGGEST_CONTINUE_AS_NEW_AT // 3 + 1 and notes[0] == "after continue-as-new"


async def test_a_case_is_still_shown_from_the_record_after_temporal_forgets_it(
    dev_env: WorkflowEnvironment, record_store: AsyncEngine
) -> None:
    """A case recorded in SQL whose workflow Temporal no longer has (retention ended)."""
    from activities.contracts import RecordBatch
    from activities.records import CaseRecorder
    from tests.scenario import Story

    story = Story("general").to(Stage.MONITORING)
    await CaseRecorder(record_store).record(
        RecordBatch(case=story.case, case_seq=len(story.events), events=story.events)
    )
    async with case_worker(dev_env, record_store) as ops:
        ops.record = None
        with pytest.raises(CaseError):  # without the record, Temporal alone does not know it
            await ops.view(story.case.number)
        ops.record = record_store
        kept = await ops.view(story.case.number)
    assert kept.status == "lost" and kept.seq == len(story.events)
    assert kept.case == story.case  # the live case: client, assessment, plan, referrals
