"""The bare-Temporal twin of a case: the same shape with nothing of casework in it.

A workflow started with the opening command's JSON; an `act` update that keeps the command and
returns a small dict; a `view` query; a loop that records each command (the opening too) with one trivial
activity taking it as input, then waits for the next update or a timer days away, as a case
waits for its next deadline. No domain, no pydantic models.

The publishing twin is the same workflow told to show its stage in the Temporal UI's list as
casework does: the load generator starts it with casework's seven search attributes and puts
the stage each command leads to in the command (`stage_after`); the update upserts `CaseStage`
when it changes (four times for the lifecycle bench's case, as casework's workflow does). Each
upsert is a history event and a write of the workflow's visibility row on the server.
"""

from __future__ import annotations

import asyncio
import contextlib
from datetime import timedelta
from typing import Any

from temporalio import activity, workflow
from temporalio.common import SearchAttributeKey

IDLE_TIMER = timedelta(days=7)  # a case in intake waits for its first deadline about this long
STAGE = SearchAttributeKey.for_keyword("CaseStage")  # the key casework registers, declared here again


@activity.defn(name="bare_record")
async def bare_record(command: dict[str, Any]) -> int:
    """The twin's recording: takes the command (the same input size), writes nothing."""
    return len(command)


@workflow.defn(name="BareCase")
class BareCase:
    def __init__(self) -> None:
        self.waiting: list[dict[str, Any]] = []
        self.seq = 0
        self.stage = ""

    @workflow.run
    async def run(self, opening: dict[str, Any]) -> None:
        self.waiting.append(opening)
        while True:
            while self.waiting:
                await workflow.execute_activity(
                    bare_record, self.waiting.pop(0), start_to_close_timeout=timedelta(seconds=10)
                )
            with contextlib.suppress(asyncio.TimeoutError):
                await workflow.wait_condition(lambda: bool(self.waiting), timeout=IDLE_TIMER)

    @workflow.query
    def view(self) -> dict[str, Any]:
        return {"seq": self.seq}

    @workflow.update
    def act(self, command: dict[str, Any]) -> dict[str, Any]:
        self.waiting.append(command)
        self.seq += 1
        stage = command.get("stage_after")  # sent to the publishing twin only
        if stage is not None and stage != self.stage:
            self.stage = stage
            workflow.upsert_search_attributes([STAGE.value_set(stage)])
        return {"seq": self.seq, "action": command.get("action")}
