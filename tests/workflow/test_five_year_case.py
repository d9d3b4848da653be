"""A case that lives five years keeps bounded state and history (time-skipping server).

Weekly follow-ups, a note of 2,000 characters every working day, a referral a month
with the provider's answers, missed follow-ups that climb the ladder, one hold, a plan
revision each year, then evaluation and closure. Every run's history stays small,
what is carried across continue-as-new stays small, every update result and activity
input stays small, and the SQL record has every event and note in order.
"""

from __future__ import annotations

import uuid
from datetime import timedelta

import pytest
from sqlalchemy.ext.asyncio import AsyncEngine
from temporalio.api.common.v1 import Payloads
from temporalio.api.history.v1 import HistoryEvent
from temporalio.client import WorkflowHandle
from temporalio.testing import WorkflowEnvironment

from domain import commands as c
from domain.errors import Refusal
from domain.models import Actor, Role, Stage
from domain.views import Receipt
from service.refusals import CaseError
from tests.conftest import TrackingOps, case_worker, recorded, recorded_events
from tests.scenario import ALICE, PLAN_REVISION, TO_MONITORING, opening, quiet_referral
from tests.timeskip import settled, skip
from workflows.case import CaseResult
from workflows.search import workflow_id

pytestmark = pytest.mark.asyncio(loop_scope="session")
DAY, WEEK = timedelta(days=1), timedelta(days=7)
YEARS, WEEKS_A_YEAR = 5, 52
SHELTER = Actor(id="shelter-north", role=Role.PROVIDER)
KB = 1024


class Quietly:
    """Acts one command at a time, each once the case is idle again.

    The time-skipping server breaks when an update or a query arrives while the run it
    targets is continuing as new (the real server makes the worker retry the task; the
    concurrent writers in tests/integration/test_long_lived.py show it on the dev server).
    So here nothing is sent until the case's workflow has no activity under way: Temporal's own
    description of the workflow says so, without asking the worker (it shows no workflow task on
    this server; a command meeting one waits for the next, as commands do). And time passes only
    through `skip`, which leaves no timer of the case about to fire: that server strands a run
    whose task cancels a timer that fired meanwhile (tests/timeskip.py)."""

    def __init__(self, env: WorkflowEnvironment, ops: TrackingOps, number: str) -> None:
        self.env, self.ops, self.number = env, ops, number

    async def act(self, command: c.StaffCommand) -> Receipt:
        """Send the command; if it met the end of a run anyway (the server answers "not found"
        while one run hands over to the next), send it again with the same idempotency key, as
        any client may: it applies once."""
        key = uuid.uuid4().hex
        for _ in range(5):
            try:
                done = await self.ops.act(self.number, command, key)
                break
            except CaseError as missed:
                if missed.kind not in (Refusal.NOT_FOUND, Refusal.NOT_RUNNING, Refusal.UNAVAILABLE):
                    raise
                await self.idle()
        else:
            raise AssertionError(f"{command.action} did not reach case {self.number}")
        await self.idle()
        return done

    async def idle(self) -> str:
        """Wait until the case's current run has nothing under way; its run id."""
        return await settled(self.env.client, workflow_id(self.number))

    async def skip(self, duration: timedelta) -> str:
        """Let `duration` pass, and on past any timer of the case about to fire (a command's task
        must not cancel a timer that fires meanwhile: tests/timeskip.py); its current run id."""
        await skip(self.env, workflow_id(self.number), duration)
        return await self.idle()


def note(week: int, day: int) -> c.AddNote:
    text = f"week {week} day {day}: " + "spoke with the client about housing, work and health. " * 40
    return c.AddNote(actor=ALICE, text=text[:2000])


async def a_week(case: Quietly, week: int, counts: dict[str, int]) -> None:
    """One week of the case: what the case manager and the providers do in it."""
    held = 3 * WEEKS_A_YEAR <= week < 3 * WEEKS_A_YEAR + 4  # four weeks on hold in year three
    if week == 3 * WEEKS_A_YEAR:
        await case.act(c.Suspend(actor=ALICE, reason="client in residential treatment"))
    if week == 3 * WEEKS_A_YEAR + 4:
        await case.act(c.Resume(actor=ALICE, note="back home"))
    for day in range(5):
        await case.act(note(week, day))
        counts["notes"] += 1
    if held:
        return
    if week % WEEKS_A_YEAR == WEEKS_A_YEAR - 1:  # the plan is revised once a year
        for change in PLAN_REVISION:
            await case.act(change)
    if week % 4 == 0:  # a referral a month, accepted, then completed
        done = await case.act(quiet_referral())
        referral = f"R{done.seq}"
        for answer in ("accepted", "completed"):
            await case.act(c.AnswerReferral(actor=SHELTER, referral_id=referral, answer=answer))
        counts["referrals"] += 1
    if week % 26 in (10, 11):  # two weeks without contact: the ladder climbs
        return
    await case.act(c.RecordFollowUp(actor=ALICE, summary=f"week {week}: weekly contact"))
    if week % 8 == 0:
        await case.act(c.ReviewPlan(actor=ALICE, summary=f"week {week}: on track"))


def payload_size(payloads: Payloads) -> int:
    return sum(p.ByteSize() for p in payloads.payloads)


def sizes(events: list[HistoryEvent]) -> dict[str, int]:
    """The largest update result and activity input, and the history's size, in bytes."""
    results = [
        payload_size(
            Payloads(
                payloads=[e.workflow_execution_update_completed_event_attributes.outcome.success.payloads[0]]
            )
        )
        for e in events
        if e.HasField("workflow_execution_update_completed_event_attributes")
        and e.workflow_execution_update_completed_event_attributes.outcome.HasField("success")
    ]
    inputs = [
        payload_size(e.activity_task_scheduled_event_attributes.input)
        for e in events
        if e.HasField("activity_task_scheduled_event_attributes")
    ]
    return {
        "history": sum(e.ByteSize() for e in events),
        "update_result": max(results, default=0),
        "activity_input": max(inputs, default=0),
        "carried": payload_size(events[0].workflow_execution_started_event_attributes.input),
    }


async def test_a_five_year_case_keeps_its_history_and_state_bounded(
    time_env: WorkflowEnvironment, sqlite_store: AsyncEngine
) -> None:
    record_store = sqlite_store
    counts = {"notes": 0, "referrals": 0}
    async with case_worker(time_env, record_store) as ops:
        number = (await ops.open_case(opening("weekly"))).case.number
        for change in TO_MONITORING:
            await ops.act(number, change)
        handle: WorkflowHandle[object, CaseResult] = ops.client.get_workflow_handle(
            workflow_id(number), result_type=CaseResult
        )
        case = Quietly(time_env, ops, number)
        runs: list[str] = []
        largest_view = 0
        for week in range(YEARS * WEEKS_A_YEAR):
            await a_week(case, week, counts)
            run_id = await case.skip(WEEK)
            if run_id not in runs:
                runs.append(run_id)
            if week % 13 == 0:
                largest_view = max(largest_view, len((await ops.view(number)).model_dump_json()))
        await ops.act(number, c.BeginEvaluation(actor=ALICE))
        await ops.act(number, c.Close(actor=ALICE, outcome="goals_met", goals_met=["g1", "g2"]))
        view = await recorded(ops, number)
        assert view.case.stage is Stage.CLOSED
        await time_env.sleep(31 * DAY)  # the reopen window passes: the case completes
        result = await handle.result()
    assert result.number == number and result.outcome is not None

    # the case continued as new several times, and every run stayed small
    assert len(runs) >= 3, runs
    for run_id in runs:
        history = await time_env.client.get_workflow_handle(
            workflow_id(number), run_id=run_id
        ).fetch_history()
        measured = sizes(list(history.events))
        assert measured["history"] < 10 * KB * KB, (run_id, measured)
        assert measured["carried"] < 64 * KB, (run_id, measured)
        assert measured["update_result"] < 16 * KB, (run_id, measured)
        assert measured["activity_input"] < 16 * KB, (run_id, measured)
    assert largest_view < 16 * KB

    # the record has the whole story, in order: every event, every note, every referral
    rows = await recorded_events(record_store, number)
    assert [r["seq"] for r in rows] == list(range(1, result.events + 1))
    notes = [r for r in rows if r["action"] == "add_note"]
    assert len(notes) == counts["notes"] == YEARS * WEEKS_A_YEAR * 5
    assert notes[0]["change"]["text"].startswith("week 0 day 0") and notes[-1]["change"]["text"].startswith(
        f"week {YEARS * WEEKS_A_YEAR - 1} day 4"
    )
    assert sum(r["action"] == "refer" for r in rows) == counts["referrals"]
    escalations = [r for r in rows if r["action"] == "issue_notice" and r["change"]["kind"] == "escalation"]
    assert {r["change"]["level"] for r in escalations} == {0, 1, 2}  # missed follow-ups climbed the ladder
