"""Record the workflow histories the replay test checks new code against.

    .venv/bin/python -m tests.histories.record

Run it after a change to the workflow, with VERSION bumped: the new histories join the
older ones, and CI replays every version (docs/architecture.md, "Changing the workflow").
Each history is a real case on the time-skipping server: one archived after closure, one
escalated in monitoring, one on hold (with a referral
waiting for its answer through the hold, from v3).
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import tempfile
from datetime import timedelta
from pathlib import Path

from temporalio.client import WorkflowHandle
from temporalio.contrib.pydantic import pydantic_data_converter
from temporalio.testing import WorkflowEnvironment

from config.temporal import register_search_attributes
from domain import commands as c
from domain.models import RiskLevel
from service.refusals import CaseError
from store.db import engine, migrate
from tests.conftest import case_worker, sdk_binary
from tests.receivers import MailSink
from tests.scenario import ALICE, SAM, assessment, goals, opening
from workflows.search import workflow_id

HERE = Path(__file__).parent
# Bump this when the workflow changes in a way running cases must survive (behind
# workflow.patched), and keep the older versions' files: CI replays them all.
VERSION = "v8"
DAY = timedelta(days=1)


async def save(env: WorkflowEnvironment, number: str, name: str) -> None:
    handle: WorkflowHandle[object, object] = env.client.get_workflow_handle(workflow_id(number))
    history = await handle.fetch_history()
    (HERE / f"{VERSION}-{name}.json").write_text(history.to_json())
    print(f"saved {VERSION}-{name}.json ({len(history.events)} events)")


async def main() -> None:
    sink = MailSink().start()  # deliveries need somewhere to go
    os.environ["CASEWORK_SMTP_HOST"], os.environ["CASEWORK_SMTP_PORT"] = "127.0.0.1", str(sink.port)
    env = await WorkflowEnvironment.start_time_skipping(
        test_server_existing_path=sdk_binary("temporal-test-server"), data_converter=pydantic_data_converter
    )
    await register_search_attributes(env.client, "default")
    with tempfile.TemporaryDirectory() as tmp:
        store = engine(f"sqlite+aiosqlite:///{tmp}/record.db")
        await migrate(store)
        # In clear: the replay test reads the saved histories with no key (test data only).
        async with case_worker(env, store, sealed=False) as ops:
            archived = (await ops.open_case(opening("general", number="H-ARCHIVED"))).case.number
            for change in (
                c.Accept(actor=ALICE),
                c.CompleteAssessment(actor=ALICE, assessment=assessment(RiskLevel.HIGH)),
                c.SubmitPlan(actor=ALICE, goals=goals()),
                c.ApprovePlan(actor=SAM),
                c.RecordConsent(actor=ALICE, share=frozenset({"name", "contact"})),
                c.Refer(actor=ALICE, provider="shelter-north", service="housing", reason="needs a bed"),
                c.StartMonitoring(actor=ALICE),
                c.RecordFollowUp(actor=ALICE, summary="moved in"),
                c.BeginEvaluation(actor=ALICE),
                c.Close(actor=SAM, outcome="partially_met", goals_met=["g1"]),
            ):
                await ops.act(archived, change)
            await env.sleep(91 * DAY)
            await save(env, archived, "archived_after_closure")

            escalated = (await ops.open_case(opening("weekly", number="H-ESCALATED"))).case.number
            for change in (
                c.Accept(actor=ALICE),
                c.CompleteAssessment(actor=ALICE, assessment=assessment()),
                c.SubmitPlan(actor=ALICE, goals=goals()),
                c.ApprovePlan(actor=ALICE),
                c.StartMonitoring(actor=ALICE),
            ):
                await ops.act(escalated, change)
            with contextlib.suppress(CaseError):
                await ops.act(
                    escalated, c.Transfer(actor=ALICE, to_manager="bob", reason="refused: not a supervisor")
                )
            await ops.act(
                escalated,
                c.ScheduleFollowUp(actor=ALICE, kind="home_visit", at=await env.get_current_time() + 3 * DAY),
            )
            await env.sleep(20 * DAY)
            await ops.act(escalated, c.RecordFollowUp(actor=ALICE, summary="reached her at last"))
            await save(env, escalated, "escalated_in_monitoring")

            held = (await ops.open_case(opening("housing", number="H-ON-HOLD"))).case.number
            await ops.act(held, c.Accept(actor=ALICE))
            await ops.act(
                held,
                c.Refer(
                    actor=ALICE,
                    provider="shelter-north",
                    service="housing",
                    reason="a bed",
                    share=frozenset(),
                ),
            )
            await env.sleep(2 * DAY)
            await ops.act(held, c.Suspend(actor=ALICE, reason="client in hospital"))
            await env.sleep(10 * DAY)
            await ops.act(held, c.Resume(actor=ALICE))
            await env.sleep(3 * DAY)
            await save(env, held, "resumed_after_hold")

            # The client has no email and gave no consent: until v6 a follow-up inviting them
            # was accepted (only the manager was invited); from v7 it is refused, no trace left.
            invited = (await ops.open_case(opening("general", number="H-INVITED"))).case.number
            await ops.act(invited, c.Accept(actor=ALICE))
            visit = await env.get_current_time() + 3 * DAY
            inviting = c.ScheduleFollowUp(actor=ALICE, kind="home_visit", at=visit, invite_client=True)
            with contextlib.suppress(CaseError):
                await ops.act(invited, inviting)
            await ops.act(invited, c.ScheduleFollowUp(actor=ALICE, kind="phone_call", at=visit + DAY))
            await env.sleep(5 * DAY)
            await ops.act(invited, c.AddNote(actor=ALICE, text="called; visit to be booked"))
            await save(env, invited, "invited_unreachable_client")

            # Outcomes against the facts: until v7 a visit ten days away could be recorded as
            # attended at once, and a case whose every goal was met closed as goals_not_met; from
            # v8 both are refused, no trace left, and the true outcomes follow.
            against = (await ops.open_case(opening("general", number="H-AGAINST"))).case.number
            for change in (
                c.Accept(actor=ALICE),
                c.CompleteAssessment(actor=ALICE, assessment=assessment()),
                c.SubmitPlan(actor=ALICE, goals=goals()),
                c.ApprovePlan(actor=ALICE),
            ):
                await ops.act(against, change)
            await ops.act(
                against,
                c.ScheduleFollowUp(
                    actor=ALICE, kind="home_visit", at=await env.get_current_time() + 10 * DAY
                ),
            )
            booked = (await ops.view(against)).case.follow_ups[-1].id
            with contextlib.suppress(CaseError):
                await ops.act(
                    against, c.RecordFollowUpOutcome(actor=ALICE, follow_up_id=booked, outcome="attended")
                )
            await env.sleep(11 * DAY)
            with contextlib.suppress(CaseError):  # already recorded where v7 took the first
                await ops.act(
                    against, c.RecordFollowUpOutcome(actor=ALICE, follow_up_id=booked, outcome="attended")
                )
            await ops.act(against, c.StartMonitoring(actor=ALICE))
            await ops.act(against, c.BeginEvaluation(actor=ALICE))
            every_goal = [g.id for g in goals()]
            with contextlib.suppress(CaseError):
                await ops.act(against, c.Close(actor=SAM, outcome="goals_not_met", goals_met=every_goal))
            with contextlib.suppress(CaseError):  # already closed where v7 took the first
                await ops.act(against, c.Close(actor=SAM, outcome="goals_met", goals_met=every_goal))
            await env.sleep(DAY)
            await save(env, against, "outcomes_against_the_facts")
        await store.dispose()
    await env.shutdown()
    sink.stop()


if __name__ == "__main__":
    asyncio.run(main())
