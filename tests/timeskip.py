"""Skipping time on the time-skipping server without leaving a workflow's timer about to fire.

The time-skipping server refuses a workflow task's completion that cancels a timer which fired
while the task was with the worker ("invalid history builder state for action"), and then never
times the task out or sends it again: the run is stranded and every later command times out
(temporalio/sdk-java#2606, #3088). The real server accepts that completion: it drops the
buffered TimerFired and records TimerCanceled. Casework's loop cancels its timer whenever a
command wakes it, so a command must not reach a case whose timer is about to fire.

A skip lands just short of such a timer more often than chance: a timer fires later than the
time it was set for by as long as the task that started it took (the workflow measures from the
task's start, the server starts the timer when the task completes), and between skips the
server's clock runs at real pace. So `skip` goes on past any timer due within `TIMER_GUARD` of
where it lands.
"""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime, timedelta

from temporalio.api.common.v1 import WorkflowExecution
from temporalio.api.enums.v1 import EventType
from temporalio.api.history.v1 import HistoryEvent
from temporalio.api.workflowservice.v1 import (
    DescribeWorkflowExecutionRequest,
    DescribeWorkflowExecutionResponse,
)
from temporalio.client import Client
from temporalio.service import RPCError
from temporalio.testing import WorkflowEnvironment

# Far longer than a workflow task takes on a loaded machine (they have taken over 100 ms), and
# nothing to a scenario that counts in days.
TIMER_GUARD = timedelta(minutes=1)
# Timers skipped past after one skip before giving up on a workflow that keeps arming them.
MAX_GUARD_SKIPS = 10


async def settled(client: Client, workflow_id: str) -> str:
    """Wait until the workflow's current run has no activity under way; its run id. Temporal's own
    description of the workflow says so, without asking the worker. (This server's description
    never shows a pending workflow task: `quiet_history` waits for those too.)"""
    while True:
        described = await _describe(client, workflow_id)
        if not described.pending_activities and not described.HasField("pending_workflow_task"):
            return described.workflow_execution_info.execution.run_id
        await asyncio.sleep(0.01)


async def quiet_history(client: Client, workflow_id: str) -> list[HistoryEvent]:
    """The history of the workflow's current run, once it has no workflow task or activity under
    way by that history."""
    while True:
        await settled(client, workflow_id)
        events = list((await client.get_workflow_handle(workflow_id).fetch_history()).events)
        if not _busy(events):
            return events
        # a workflow task is under way: read the whole history again only once it has moved on
        while (await _describe(client, workflow_id)).workflow_execution_info.history_length == len(events):
            await asyncio.sleep(0.01)


async def _describe(client: Client, workflow_id: str) -> DescribeWorkflowExecutionResponse:
    execution = WorkflowExecution(workflow_id=workflow_id)
    request = DescribeWorkflowExecutionRequest(namespace=client.namespace, execution=execution)
    while True:  # the raw description: this server's unset datetime attributes do not decode
        try:
            return await client.workflow_service.describe_workflow_execution(request)
        except RPCError:  # between two runs of the workflow
            await asyncio.sleep(0.01)


def _busy(events: list[HistoryEvent]) -> bool:
    task, activities = False, set()
    for event in events:
        kind = event.WhichOneof("attributes")
        if kind == "workflow_task_scheduled_event_attributes":
            task = True
        elif kind in _TASK_ENDED:
            task = False
        elif kind == "activity_task_scheduled_event_attributes":
            activities.add(event.event_id)
        elif kind in _ACTIVITY_ENDED:
            activities.discard(getattr(event, kind).scheduled_event_id)
    return events[-1].WhichOneof("attributes") not in _RUN_ENDED and (task or bool(activities))


def timers_due(events: list[HistoryEvent]) -> list[datetime]:
    """When each timer in a run's history that has neither fired nor been cancelled is due, by the
    server's clock."""
    due: dict[str, datetime] = {}
    for event in events:
        if event.event_type == EventType.EVENT_TYPE_TIMER_STARTED:
            started = event.timer_started_event_attributes
            at = event.event_time.ToDatetime(tzinfo=UTC) + started.start_to_fire_timeout.ToTimedelta()
            due[started.timer_id] = at
        elif event.event_type == EventType.EVENT_TYPE_TIMER_FIRED:
            due.pop(event.timer_fired_event_attributes.timer_id, None)
        elif event.event_type == EventType.EVENT_TYPE_TIMER_CANCELED:
            due.pop(event.timer_canceled_event_attributes.timer_id, None)
    return sorted(due.values())


async def skip(env: WorkflowEnvironment, workflow_id: str, duration: timedelta) -> None:
    """Skip `duration`, then on past any timer of the workflow due within TIMER_GUARD, and wait
    until the workflow has no task or activity under way. What is sent to it next cannot meet a
    timer firing while the task it makes is with the worker."""
    await env.sleep(duration)
    for _ in range(MAX_GUARD_SKIPS):
        events = await quiet_history(env.client, workflow_id)
        now = await env.get_current_time()
        soon = [at for at in timers_due(events) if at - now <= TIMER_GUARD]
        if not soon:
            return
        await env.sleep(max(soon[0] - now, timedelta(0)) + timedelta(milliseconds=1))
    raise AssertionError(f"{workflow_id} keeps a timer due within {TIMER_GUARD} after each skip")


_TASK_ENDED = {
    "workflow_task_completed_event_attributes",
    "workflow_task_failed_event_attributes",
    "workflow_task_timed_out_event_attributes",
}
_ACTIVITY_ENDED = {
    "activity_task_completed_event_attributes",
    "activity_task_failed_event_attributes",
    "activity_task_timed_out_event_attributes",
    "activity_task_canceled_event_attributes",
}
_RUN_ENDED = {
    "workflow_execution_completed_event_attributes",
    "workflow_execution_failed_event_attributes",
    "workflow_execution_timed_out_event_attributes",
    "workflow_execution_canceled_event_attributes",
    "workflow_execution_terminated_event_attributes",
    "workflow_execution_continued_as_new_event_attributes",
}
