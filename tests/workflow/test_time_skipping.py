"""The time-skipping server's stranded task, and the skip that keeps the suite clear of it.

A workflow task that cancels a timer which fired while the task was with the worker is refused
by the time-skipping server ("invalid history builder state for action"), and the run is then
stranded (tests/timeskip.py). A case's loop cancels its timer whenever a command wakes it, so a
command sent just before the case's timer fires meets it whenever the command's task is slow:
the five-year case met it on a loaded machine, a skip having ended a few milliseconds before a
deadline's timer. Here the task is made slow for certain, so both tests are deterministic.
"""

from __future__ import annotations

import asyncio
import time
import uuid
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from datetime import timedelta

import pytest
from temporalio import workflow
from temporalio.api.enums.v1 import EventType
from temporalio.client import WorkflowHandle, WorkflowUpdateRPCTimeoutOrCancelledError
from temporalio.testing import WorkflowEnvironment
from temporalio.worker import Worker

from tests.timeskip import quiet_history, skip, timers_due

pytestmark = pytest.mark.asyncio(loop_scope="session")
DAY = timedelta(days=1)
# How long the task that takes a command stays with the worker: a loaded machine, made certain.
SLOW_TASK = timedelta(seconds=2.5)
# How soon after a command is sent the timer is due: inside SLOW_TASK, and long enough that the
# command's task starts first (the worker has it within milliseconds).
SOON = timedelta(seconds=1)


@workflow.defn(sandboxed=False)  # the update sleeps on the worker's clock, as a slow task does
class Waiter:
    """Waits on a timer, as a case's loop waits for its next deadline; a command wakes it (the
    timer is cancelled in the command's task) and it waits again."""

    def __init__(self) -> None:
        self.woken = False
        self.fired = 0

    @workflow.run
    async def run(self, wait: float) -> None:
        while True:
            self.woken = False
            try:
                await workflow.wait_condition(lambda: self.woken, timeout=wait)
            except TimeoutError:
                self.fired += 1

    @workflow.update
    def wake(self, slow: float) -> int:
        time.sleep(slow)
        self.woken = True
        return self.fired


@asynccontextmanager
async def waiting(env: WorkflowEnvironment, wait: timedelta) -> AsyncIterator[WorkflowHandle[Waiter, None]]:
    """A Waiter on a worker of its own, settled with its timer started; terminated afterwards."""
    task_queue = f"waiter-{uuid.uuid4().hex[:8]}"
    # debug mode: no deadlock detection, which would fail a task this slow
    async with Worker(env.client, task_queue=task_queue, workflows=[Waiter], debug_mode=True):
        handle = await env.client.start_workflow(
            Waiter.run, wait.total_seconds(), id=f"waiter-{uuid.uuid4().hex[:8]}", task_queue=task_queue
        )
        await quiet_history(env.client, handle.id)
        try:
            yield handle
        finally:
            await handle.terminate(reason="test finished")


async def test_the_server_strands_a_run_whose_task_cancels_a_timer_that_fired_meanwhile(
    time_env: WorkflowEnvironment,
) -> None:
    """The trigger itself. Should this fail, the server has been fixed (sdk-java#2606, #3088),
    and `tests/timeskip.py` need not skip past timers any more."""
    async with waiting(time_env, SOON) as handle:
        update = handle.execute_update(Waiter.wake, SLOW_TASK.total_seconds())
        with pytest.raises(WorkflowUpdateRPCTimeoutOrCancelledError):  # a real server answers in SLOW_TASK
            await asyncio.wait_for(update, (2 * SLOW_TASK).total_seconds())
        events = list((await handle.fetch_history()).events)
        # the command's task is never completed, failed, timed out or sent again
        assert events[-1].event_type == EventType.EVENT_TYPE_WORKFLOW_TASK_STARTED
        # and its timer, though past due, has neither fired nor been cancelled
        (due,) = timers_due(events)
        assert due < await time_env.get_current_time()


async def test_a_command_after_a_skip_does_not_meet_a_timer_about_to_fire(
    time_env: WorkflowEnvironment,
) -> None:
    """A skip that would end just before the workflow's timer goes on past it, so the slow
    command that follows cancels only the next timer, a day away (a plain `env.sleep` here
    leaves the run stranded and the command unanswered)."""
    async with waiting(time_env, DAY) as handle:
        await skip(time_env, handle.id, DAY - SOON)
        fired = await handle.execute_update(Waiter.wake, SLOW_TASK.total_seconds(), rpc_timeout=4 * SLOW_TASK)
        assert fired == 1
