"""One door: a command reaches a case only with an actor that casework signed.

Each way around it — a raw Temporal update (the UI's "Send an Update", `temporal workflow
update`), a forged or foreign signature, an expired one, one for another case, one for
another person — is refused by the worker before anything is written to history.
"""

from __future__ import annotations

from datetime import timedelta
from typing import Any

import pytest
from sqlalchemy.ext.asyncio import AsyncEngine
from temporalio.client import Client, WorkflowFailureError, WorkflowUpdateFailedError
from temporalio.exceptions import ApplicationError
from temporalio.testing import WorkflowEnvironment

from domain import commands as c
from domain.errors import Refusal
from domain.models import Actor, Role, Stage
from service.identity import acting
from tests.conftest import TrackingOps, case_worker, recorded_events
from tests.scenario import ALICE, PROGRAMS, SAM, opening
from workflows.case import CaseInput, CaseWorkflow
from workflows.identity import ActorKeys
from workflows.search import workflow_id

pytestmark = pytest.mark.asyncio(loop_scope="session")
MALLORY_AS_SUPERVISOR = Actor(id="mallory", role=Role.SUPERVISOR)


def transfer_to(actor: Actor, who: str = "mallory") -> dict[str, Any]:
    return {
        "action": "transfer",
        "actor": actor.model_dump(mode="json"),
        "to_manager": who,
        "reason": "mine now",
    }


async def updates_in_history(client: Client, number: str) -> int:
    history = await client.get_workflow_handle(workflow_id(number)).fetch_history()
    return sum(e.HasField("workflow_execution_update_accepted_event_attributes") for e in history.events)


async def refused(ops: TrackingOps, number: str, command: dict[str, Any]) -> str:
    with pytest.raises(WorkflowUpdateFailedError) as failed:
        await ops.client.get_workflow_handle(workflow_id(number)).execute_update("act", command)
    cause = failed.value.cause
    assert isinstance(cause, ApplicationError) and cause.type == Refusal.UNAUTHENTICATED, cause
    return cause.message


async def test_every_way_around_the_door_is_refused_and_writes_nothing(
    time_env: WorkflowEnvironment, record_store: AsyncEngine
) -> None:
    async with case_worker(time_env, record_store) as ops:
        number = (await ops.open_case(opening("general"))).case.number
        other = (await ops.open_case(opening("general"))).case.number
        before = await updates_in_history(time_env.client, number)
        now = await time_env.get_current_time()

        # a raw update, as from the Temporal UI or `temporal workflow update`: no signature
        assert "no signed actor" in await refused(ops, number, transfer_to(MALLORY_AS_SUPERVISOR))
        # signed with a key that is not casework's
        with acting(ActorKeys.of("not-the-deployment-key"), MALLORY_AS_SUPERVISOR, number, now):
            assert "not casework's" in await refused(ops, number, transfer_to(MALLORY_AS_SUPERVISOR))
        # casework signed for alice, the command claims a supervisor
        with acting(ops.keys, ALICE, number, now):
            assert "casework signed for alice" in await refused(ops, number, transfer_to(SAM))
        # signed for another case
        with acting(ops.keys, SAM, other, now):
            assert f"for case {other}" in await refused(ops, number, transfer_to(SAM))
        # signed long ago
        with acting(ops.keys, SAM, number, now - timedelta(hours=1)):
            assert "expired" in await refused(ops, number, transfer_to(SAM))

        assert await updates_in_history(time_env.client, number) == before  # nothing written
        view = await ops.view(number)
        assert view.case.manager == "alice" and view.case.stage is Stage.INTAKE

        # through the door, a transfer by the real supervisor is taken
        await ops.act(number, c.Transfer(actor=SAM, to_manager="bob", reason="caseload balance"))
        assert (await ops.view(number)).case.manager == "bob"


async def test_a_case_is_not_started_with_a_forged_opening(
    time_env: WorkflowEnvironment, record_store: AsyncEngine
) -> None:

    async with case_worker(time_env, record_store) as ops:
        forged = opening("general").model_copy(update={"actor": MALLORY_AS_SUPERVISOR})
        handle = await time_env.client.start_workflow(
            CaseWorkflow.run,
            CaseInput(program=PROGRAMS["general"], opening=forged),
            id=workflow_id(forged.number),
            task_queue=ops.task_queue,
        )
        with pytest.raises(WorkflowFailureError) as failed:
            await handle.result()
        assert isinstance(failed.value.cause, ApplicationError)
        assert "no signed actor" in failed.value.cause.message
        assert await recorded_events(record_store, forged.number) == []  # nothing in the record
