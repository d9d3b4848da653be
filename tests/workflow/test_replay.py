"""Running cases must survive new code: saved histories replay without non-determinism.

The histories were recorded by tests/histories/record.py from real cases at several
stages, including one archived after closure: `v1-*` before the case kept bounded state
(workflow.patched("bounded-history") keeps their path), `v2-*` after, `v3-*` after every deadline
honoured holds and deliveries went in rounds ("every-deadline-honours-holds", "delivery-in-rounds"),
`v4-*` after a change upserts only the search attributes it changes ("upsert-only-changes"),
`v5-*` from runs that take every change at once ("takes-every-change-v5": one marker, not four),
`v6-*` from runs whose input says their code's generation (6: no marker at all, and a case starts
with its search attributes, so its opening upserts none), `v7-*` from runs of generation 7, which
refuse a follow-up inviting a client no invitation can reach (`v6-invited_unreachable_client`
accepted one, and replays it so), `v8-*` from runs of generation 8, which refuse outcomes that do
not fit the facts (`v7-outcomes_against_the_facts` took two, and replays them so).
A change that breaks replay would break every case already open in production.
"""

from __future__ import annotations

import asyncio
import uuid
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy.ext.asyncio import AsyncEngine
from temporalio import workflow
from temporalio.api.common.v1 import WorkflowExecution
from temporalio.api.workflowservice.v1 import DescribeWorkflowExecutionRequest
from temporalio.client import WorkflowHistory
from temporalio.contrib.pydantic import pydantic_data_converter
from temporalio.testing import WorkflowEnvironment
from temporalio.worker import Replayer, Worker

from domain import commands as c
from domain.errors import Refusal
from domain.models import Stage
from service.refusals import CaseError
from tests.conftest import case_worker, recorded, recorded_events
from tests.scenario import ALICE, PROGRAMS, T0, Story
from worker import workflow_runner
from workflows.case import CaseWorkflow
from workflows.search import workflow_id

HISTORIES = sorted((Path(__file__).parents[1] / "histories").glob("*.json"))


def test_there_are_histories_from_several_stages_before_and_after_each_change() -> None:
    stages = {"archived_after_closure", "escalated_in_monitoring", "resumed_after_hold"}
    for version in ("v1", "v2", "v3", "v4", "v5", "v6", "v7", "v8"):
        assert {p.stem for p in HISTORIES} >= {f"{version}-{stage}" for stage in stages}
    for version in ("v6", "v7", "v8"):
        assert f"{version}-invited_unreachable_client" in {p.stem for p in HISTORIES}
    # v7 took a visit recorded as attended ten days early and a close against its goals; v8 refuses both
    for version in ("v7", "v8"):
        assert f"{version}-outcomes_against_the_facts" in {p.stem for p in HISTORIES}


async def workflow_type(env: WorkflowEnvironment, number: str) -> str:
    request = DescribeWorkflowExecutionRequest(
        namespace=env.client.namespace, execution=WorkflowExecution(workflow_id=workflow_id(number))
    )
    described = await env.client.workflow_service.describe_workflow_execution(request)
    return described.workflow_execution_info.type.name


@workflow.defn(sandboxed=False)
class OldRun:
    """Stands in for a run of the old code that continues as new with its (unbounded) input."""

    @workflow.run
    async def run(self, carried: dict[str, Any], task_queue: str) -> None:
        workflow.continue_as_new(workflow="CaseWorkflow", args=[carried], task_queue=task_queue)


@pytest.mark.asyncio(loop_scope="session")
async def test_a_run_carried_over_from_before_bounded_state_goes_on(
    time_env: WorkflowEnvironment, record_store: AsyncEngine
) -> None:
    """A run that continued as new under the old code carries every event and the case with
    its notes; the new code takes that input, keeps what is bounded, and records the rest."""
    story = Story("general").to(Stage.MONITORING)
    old_note = {"at": T0.isoformat(), "author": {"id": "alice", "role": "case_manager"}, "text": "old note"}
    legacy_case = story.case.model_dump(mode="json") | {"notes": [old_note]}
    legacy = {
        "program": PROGRAMS["general"].model_dump(mode="json"),
        "case": legacy_case,
        "events": [e.model_dump(mode="json") for e in story.events],
        "unrecorded": 2,
        "undelivered": [],
    }
    async with case_worker(time_env, record_store) as ops:
        number = story.case.number
        # As in production, the run comes from a continue-as-new (a fresh start of a case must
        # open or restore it): a stand-in for the old run hands over the old input.
        await carried_over(time_env, legacy, number, ops.task_queue)
        ops.opened.append(number)
        view = await ops.do(number, c.AddNote(actor=ALICE, text="after the upgrade"))
        assert view.case.stage is Stage.MONITORING and view.seq > len(story.events)
        await recorded(ops, number)
        rows = await recorded_events(record_store, number)
        # the two unrecorded events it carried are recorded, then the note and the notices owed
        # since the story's (old) dates, all in order
        seqs = [r["seq"] for r in rows]
        assert seqs == list(range(len(story.events) - 1, seqs[-1] + 1))
        assert [r["change"].get("text") for r in rows].count("after the upgrade") == 1


async def carried_over(env: WorkflowEnvironment, carried: dict[str, Any], number: str, queue: str) -> None:
    """Hand `carried` to CaseWorkflow by a continue-as-new, as production starts a run of a case
    already open (a fresh start must open or restore it)."""
    old_code = f"old-{uuid.uuid4().hex[:8]}"
    async with Worker(env.client, task_queue=old_code, workflows=[OldRun]):
        await env.client.start_workflow(
            OldRun.run, args=[carried, queue], id=workflow_id(number), task_queue=old_code
        )
        while (await workflow_type(env, number)) != "CaseWorkflow":
            await asyncio.sleep(0.05)


@pytest.mark.asyncio(loop_scope="session")
async def test_a_run_from_before_the_invitation_rule_refuses_new_invitations_that_reach_nobody(
    time_env: WorkflowEnvironment, record_store: AsyncEngine
) -> None:
    """A run of generation 6 replays the follow-ups inviting unreachable clients it accepted
    (v6-invited_unreachable_client); a new one it refuses, as a run of today's code does."""
    story = Story("general").to(Stage.COORDINATION)  # the client has no email
    carried = {
        "program": PROGRAMS["general"].model_dump(mode="json"),
        "case": story.case.model_dump(mode="json"),
        "seq": len(story.events),
        "generation": 6,
    }
    async with case_worker(time_env, record_store) as ops:
        number = story.case.number
        await carried_over(time_env, carried, number, ops.task_queue)
        ops.opened.append(number)
        at = await time_env.get_current_time() + timedelta(days=30)  # the server's clock skips ahead
        visit = c.ScheduleFollowUp(actor=ALICE, kind="home_visit", at=at, invite_client=True)
        with pytest.raises(CaseError, match="no email address on file") as refused:
            await ops.act(number, visit)
        assert refused.value.kind is Refusal.GUARD_FAILED
        view = await ops.do(number, visit.model_copy(update={"invite_client": False}))
        assert len(view.case.follow_ups) == len(story.case.follow_ups) + 1  # the refused one left nothing
        assert not any(f.invite_client for f in view.case.follow_ups)


@pytest.mark.asyncio(loop_scope="session")
@pytest.mark.parametrize("path", HISTORIES, ids=lambda p: p.stem)
async def test_saved_history_replays(path: Path) -> None:
    replayer = Replayer(
        workflows=[CaseWorkflow], data_converter=pydantic_data_converter, workflow_runner=workflow_runner()
    )
    history = WorkflowHistory.from_json(f"case-{path.stem}", path.read_text())  # noqa: ASYNC240 - a small file
    result = await replayer.replay_workflow(history, raise_on_replay_failure=True)
    assert result.replay_failure is None
