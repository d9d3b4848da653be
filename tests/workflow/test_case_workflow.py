"""Cases on the time-skipping server: months of deadlines pass in seconds."""

from __future__ import annotations

from datetime import datetime, timedelta

import pytest
from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncEngine
from temporalio.client import WorkflowUpdateFailedError
from temporalio.exceptions import ApplicationError
from temporalio.testing import WorkflowEnvironment

from domain import commands as c
from domain.errors import Refusal
from domain.events import Event, NoticeIssued
from domain.models import Actor, Outcome, RiskLevel, Role, Stage
from service.identity import acting
from service.refusals import CaseError
from store.tables import cases, outbox
from tests.conftest import case_worker, recorded_events
from tests.scenario import ALICE, SAM, TO_MONITORING, assessment, goals, opening, quiet_referral
from workflows.case import CaseResult, CaseWorkflow
from workflows.search import CASE_MANAGER, CASE_NEXT_DUE, CASE_OVERDUE, CASE_STAGE, workflow_id

pytestmark = pytest.mark.asyncio(loop_scope="session")
DAY = timedelta(days=1)


def notices(events: list[Event]) -> list[NoticeIssued]:
    return [e.change for e in events if isinstance(e.change, NoticeIssued)]


def close_to(actual: datetime, expected: datetime) -> bool:
    return abs(actual - expected) < timedelta(seconds=5)


async def test_a_case_goes_from_intake_to_closed_then_is_archived(
    time_env: WorkflowEnvironment, record_store: AsyncEngine
) -> None:
    async with case_worker(time_env, record_store) as ops:
        view = await ops.open_case(opening("general", supervisor_risk := RiskLevel.LOW))
        number = view.case.number
        assert view.case.stage is Stage.INTAKE and supervisor_risk is RiskLevel.LOW
        for change in (
            c.Accept(actor=ALICE),
            c.CompleteAssessment(actor=ALICE, assessment=assessment(RiskLevel.HIGH)),
            c.SubmitPlan(actor=ALICE, goals=goals()),
            c.ApprovePlan(actor=SAM, note="good plan"),
            c.RecordConsent(actor=ALICE, share=frozenset({"name", "contact"})),
            c.Refer(actor=ALICE, provider="shelter-north", service="housing", reason="needs a bed tonight"),
            c.StartMonitoring(actor=ALICE),
            c.RecordFollowUp(actor=ALICE, summary="moved into transitional housing"),
            c.BeginEvaluation(actor=ALICE),
            c.Close(actor=ALICE, outcome="goals_met", goals_met=["g1", "g2"]),
        ):
            view = await ops.do(number, change)
        assert view.case.stage is Stage.CLOSED and view.case.outcome is Outcome.GOALS_MET
        assert view.next_action is not None and view.next_action.kind == "archive"

        handle = ops.client.get_workflow_handle(workflow_id(number), result_type=CaseResult)
        await time_env.sleep(PROGRAM_REOPEN_WINDOW + DAY)
        result = await handle.result()
        assert result.outcome is Outcome.GOALS_MET

        rows = await recorded_events(record_store, number)
        assert [r["seq"] for r in rows] == list(range(1, result.events + 1))
        assert rows[0]["action"] == "open" and rows[-1]["action"] == "archive"
        assert "record_delivery" in [r["action"] for r in rows]  # the referral request was delivered
        assert [r["action"] for r in rows if r["actor_role"] != "system"][1:] == [
            "accept",
            "complete_assessment",
            "submit_plan",
            "approve_plan",
            "record_consent",
            "refer",
            "start_monitoring",
            "record_follow_up",
            "begin_evaluation",
            "close",
        ]
        async with record_store.connect() as conn:
            stage, outcome = (
                await conn.execute(select(cases.c.stage, cases.c.outcome).where(cases.c.number == number))
            ).one()
            referral = (
                await conn.execute(
                    select(outbox).where(outbox.c.case_number == number, outbox.c.kind == "referral_request")
                )
            ).one()
        assert (stage, outcome) == ("closed", "goals_met")
        assert referral.recipient == "shelter-north" and "Okafor" not in referral.subject


PROGRAM_REOPEN_WINDOW = timedelta(days=90)


async def test_a_month_of_monitoring_reminds_then_escalates_up_the_ladder(
    time_env: WorkflowEnvironment, record_store: AsyncEngine
) -> None:
    """weekly program: follow-up every 7 days, reminder 1 day before, ladder at +0, +3 and +7 days."""
    async with case_worker(time_env, record_store) as ops:
        view = await ops.open_case(opening("weekly"))
        number = view.case.number
        for change in TO_MONITORING:
            view = await ops.do(number, change)
        started = view.case.stage_entered_at
        assert view.next_deadline is not None and close_to(view.next_deadline, started + 7 * DAY)

        await time_env.sleep(6.5 * DAY)  # the reminder for the first follow-up has fired
        view = await ops.do(number, c.RecordFollowUp(actor=ALICE, summary="home visit, rent paid"))
        contact = view.case.last_contact_at
        assert contact is not None
        await time_env.sleep(30 * DAY - 6.5 * DAY)  # then silence for the rest of the month

        sent = notices(await ops.history(number))
        expected = [
            ("reminder", 0, Role.CASE_MANAGER, "alice", started + 6 * DAY),
            ("reminder", 0, Role.CASE_MANAGER, "alice", contact + 6 * DAY),
            ("escalation", 0, Role.CASE_MANAGER, "alice", contact + 7 * DAY),
            ("escalation", 1, Role.SUPERVISOR, "sam", contact + 10 * DAY),
            ("escalation", 2, Role.PROGRAM_LEAD, "lead-weekly", contact + 14 * DAY),
        ]
        history = await ops.history(number)
        issued_at = [e.at for e in history if isinstance(e.change, NoticeIssued)]
        assert [(n.kind, n.level, n.notify, n.recipient) for n in sent] == [e[:4] for e in expected]
        assert all(close_to(at, e[4]) for at, e in zip(issued_at, expected, strict=True)), issued_at
        assert all(n.obligation == "follow-up contact" for n in sent)

        view = await ops.view(number)
        [item] = view.overdue
        assert (item.what, item.level, item.notified) == ("follow-up contact", 2, Role.PROGRAM_LEAD)
        assert [f.status.value for f in view.case.follow_ups] == ["done", "due"]
        described = await ops.client.get_workflow_handle(workflow_id(number)).describe()
        assert described.typed_search_attributes.get(CASE_OVERDUE) is True

        async with record_store.connect() as conn:
            messages = (
                await conn.execute(
                    select(outbox).where(outbox.c.case_number == number).order_by(outbox.c.event_seq)
                )
            ).all()
        assert [(m.kind, m.level, m.recipient) for m in messages] == [(e[0], e[1], e[3]) for e in expected]
        assert all("Maria" not in m.subject and "Okafor" not in m.subject for m in messages)
        assert messages[-1].subject == f"Case {number}: follow-up contact overdue (escalation level 2)"

        # recording the contact resolves the overdue item and stops the ladder
        view = await ops.do(number, c.RecordFollowUp(actor=ALICE, summary="finally reached her"))
        assert view.overdue == []


async def test_on_hold_pauses_the_clock(time_env: WorkflowEnvironment, record_store: AsyncEngine) -> None:
    async with case_worker(time_env, record_store) as ops:
        number = (await ops.open_case(opening("weekly"))).case.number
        view = await ops.do(number, c.Accept(actor=ALICE))
        entered = view.case.stage_entered_at  # assessment is due in 14 days
        await time_env.sleep(5 * DAY)
        view = await ops.do(number, c.Suspend(actor=ALICE, reason="client in hospital"))
        assert view.next_deadline is None and view.next_action is None
        await time_env.sleep(40 * DAY)
        assert notices(await ops.history(number)) == []  # nothing fired while on hold

        view = await ops.do(number, c.Resume(actor=ALICE))
        hold = view.case.holds[-1]
        assert hold.end is not None
        held = hold.end - hold.start
        assert view.case.stage is Stage.ASSESSMENT
        assert view.next_deadline == entered + 14 * DAY + held
        await time_env.sleep(14 * DAY - 5 * DAY - DAY / 2)  # past the reminder, before the moved deadline
        [reminder] = notices(await ops.history(number))
        assert reminder.kind == "reminder" and close_to(reminder.due, entered + 14 * DAY + held)


async def test_a_hold_pauses_a_referrals_answer_deadline_too(
    time_env: WorkflowEnvironment, record_store: AsyncEngine
) -> None:
    """weekly program: a referral is answered within 3 days, a reminder one day before."""
    async with case_worker(time_env, record_store) as ops:
        number = (await ops.open_case(opening("weekly"))).case.number
        await ops.act(number, c.Accept(actor=ALICE))
        referral = (await ops.do(number, quiet_referral())).case.referrals[-1]
        asked = referral.requested_at
        await time_env.sleep(DAY)
        await ops.act(number, c.Suspend(actor=ALICE, reason="client in hospital"))
        await time_env.sleep(10 * DAY)
        assert notices(await ops.history(number)) == []  # no reminder, no escalation during the hold
        async with record_store.connect() as conn:
            kinds = (await conn.execute(select(outbox.c.kind).where(outbox.c.case_number == number))).all()
        assert [k for (k,) in kinds] == ["referral_request"]  # nothing but the request was sent

        view = await ops.do(number, c.Resume(actor=ALICE))
        hold = view.case.holds[-1]
        assert hold.end is not None
        moved = asked + 3 * DAY + (hold.end - hold.start)
        assert view.next_deadline == moved
        await time_env.sleep(1.5 * DAY)  # past the moved reminder, before the moved deadline
        [reminder] = notices(await ops.history(number))
        assert (reminder.kind, reminder.subject) == ("reminder", referral.id)
        assert reminder.due == moved
        assert (await ops.view(number)).case.referrals[-1].status.value == "sent"  # not expired


async def test_a_refused_action_explains_why_and_leaves_no_trace(
    time_env: WorkflowEnvironment, record_store: AsyncEngine
) -> None:
    async with case_worker(time_env, record_store) as ops:
        number = (await ops.open_case(opening("general"))).case.number
        with pytest.raises(CaseError) as refused:
            await ops.act(number, c.ApprovePlan(actor=SAM))
        assert refused.value.kind == Refusal.INVALID_TRANSITION
        assert refused.value.message == "cannot approve_plan a case in intake (only from: planning)"

        for change in (
            c.Accept(actor=ALICE),
            c.CompleteAssessment(actor=ALICE, assessment=assessment(RiskLevel.HIGH)),
            c.SubmitPlan(actor=ALICE, goals=goals()),
        ):
            await ops.act(number, change)
        before = await ops.history(number)
        with pytest.raises(CaseError) as refused:
            await ops.act(number, c.ApprovePlan(actor=ALICE))
        assert refused.value.kind == Refusal.FORBIDDEN
        assert "high-risk plan needs a supervisor" in refused.value.message

        # the case is unchanged, and Temporal's history has no trace of the refused updates
        assert await ops.history(number) == before
        assert (await ops.view(number)).case.stage is Stage.PLANNING
        history = await ops.client.get_workflow_handle(workflow_id(number)).fetch_history()
        accepted = [
            e for e in history.events if e.HasField("workflow_execution_update_accepted_event_attributes")
        ]
        assert len(accepted) == 3


async def test_a_key_sent_again_with_another_command_is_refused_and_the_first_stands(
    time_env: WorkflowEnvironment, record_store: AsyncEngine
) -> None:
    """Temporal answers a key it has seen with that command's result, whatever comes with it:
    a key reused by mistake for another action, or for the same action with other words, must
    not read as done."""
    async with case_worker(time_env, record_store) as ops:
        number = (await ops.open_case(opening("general"))).case.number
        first = await ops.act(number, c.AddNote(actor=ALICE, text="called the client"), key="note-0001-alice")
        again = await ops.act(number, c.AddNote(actor=ALICE, text="called the client"), key="note-0001-alice")
        assert again.seq == first.seq  # a retry: answered, not applied again, and says so
        assert not first.repeated and again.repeated
        for other in (c.AddNote(actor=ALICE, text="she moved"), c.Accept(actor=ALICE)):
            with pytest.raises(CaseError) as refused:
                await ops.act(number, other, key="note-0001-alice")
            assert refused.value.kind == Refusal.CONFLICT
            assert (
                "was used for another command" in refused.value.message
                and "add_note" in refused.value.message
            )
        notes = [e.change for e in await ops.history(number) if isinstance(e.change, c.AddNote)]
        assert [n.text for n in notes] == ["called the client"]
        assert (await ops.view(number)).case.stage is Stage.INTAKE


async def test_a_malformed_command_is_refused_and_the_case_keeps_working(
    time_env: WorkflowEnvironment, record_store: AsyncEngine
) -> None:
    async with case_worker(time_env, record_store) as ops:
        number = (await ops.open_case(opening("general"))).case.number
        handle = ops.client.get_workflow_handle(workflow_id(number))
        someone = Actor(id="x", role=Role.SUPERVISOR)
        with (
            pytest.raises(WorkflowUpdateFailedError) as refused,
            acting(ops.keys, someone, number, await time_env.get_current_time()),
        ):
            await handle.execute_update("act", {"action": "teleport", "actor": someone.model_dump()})
        cause = refused.value.cause
        assert isinstance(cause, ApplicationError) and cause.type == Refusal.VALIDATION
        assert "invalid command" in cause.message and "teleport" in cause.message
        view = await ops.do(number, c.Accept(actor=ALICE))
        assert view.case.stage is Stage.ASSESSMENT


async def test_reopen_within_the_window_but_not_after_it(
    time_env: WorkflowEnvironment, record_store: AsyncEngine
) -> None:
    async with case_worker(time_env, record_store) as ops:
        number = (await ops.open_case(opening("general"))).case.number
        await ops.act(number, c.Decline(actor=ALICE, reason="no capacity this month"))
        await time_env.sleep(30 * DAY)
        view = await ops.do(number, c.Reopen(actor=ALICE, reason="capacity freed up"))
        assert view.case.stage is Stage.ASSESSMENT and view.case.reopen_count == 1

        await ops.act(number, c.Withdraw(actor=ALICE, reason="client found a place herself"))
        await time_env.sleep(PROGRAM_REOPEN_WINDOW + DAY)
        with pytest.raises(CaseError) as refused:
            await ops.act(number, c.Reopen(actor=ALICE, reason="she is back"))
        assert refused.value.kind == Refusal.CLOSED
        assert "reopen window has passed" in refused.value.message
        view = await ops.view(number)  # an archived case can still be read while its history is kept
        assert view.case.outcome is Outcome.WITHDRAWN


async def test_search_attributes_follow_the_case(
    time_env: WorkflowEnvironment, record_store: AsyncEngine
) -> None:
    async with case_worker(time_env, record_store) as ops:
        number = (await ops.open_case(opening("general"))).case.number
        await ops.act(number, c.Accept(actor=ALICE))
        await ops.act(number, c.Transfer(actor=SAM, to_manager="bob", reason="alice on leave"))
        described = await ops.client.get_workflow_handle(workflow_id(number)).describe()
        attrs = described.typed_search_attributes
        assert attrs.get(CASE_STAGE) == "assessment" and attrs.get(CASE_MANAGER) == "bob"
        summary = await described.static_summary()
        assert summary is not None and number in summary and "Maria" not in summary
        assert attrs.get(CASE_NEXT_DUE) is not None  # unset when nothing is due: see the dev-server list test


async def test_the_workflow_rebuilds_the_case_from_its_events(
    time_env: WorkflowEnvironment, record_store: AsyncEngine
) -> None:
    from domain.case import replay
    from tests.scenario import PROGRAMS

    async with case_worker(time_env, record_store) as ops:
        number = (await ops.open_case(opening("housing"))).case.number
        await ops.act(number, c.Accept(actor=ALICE))
        await ops.act(number, c.Suspend(actor=ALICE, reason="client travelling"))
        view = await ops.view(number)
        assert replay(await ops.history(number), PROGRAMS["housing"]) == view.case
        assert CaseWorkflow.__name__ == "CaseWorkflow"


async def test_a_provider_that_never_answers_lets_the_referral_expire_and_the_ladder_climb(
    time_env: WorkflowEnvironment, record_store: AsyncEngine
) -> None:
    """weekly program: referrals are answered within 3 days; ladder at +0, +3 and +7 days."""
    async with case_worker(time_env, record_store) as ops:
        number = (await ops.open_case(opening("weekly"))).case.number
        await ops.act(number, c.Accept(actor=ALICE))
        view = await ops.do(number, quiet_referral())
        referral = view.case.referrals[-1]
        asked = referral.requested_at
        await time_env.sleep(11 * DAY)
        history = await ops.history(number)
        about = [
            (e.at, e.change)
            for e in history
            if isinstance(e.change, NoticeIssued) and e.change.subject == referral.id
        ]
        expected = [
            ("reminder", 0, "alice", asked + 2 * DAY),
            ("escalation", 0, "alice", asked + 3 * DAY),
            ("escalation", 1, "sam", asked + 6 * DAY),
            ("escalation", 2, "lead-weekly", asked + 10 * DAY),
        ]
        assert [(n.kind, n.level, n.recipient) for _, n in about] == [e[:3] for e in expected]
        assert all(close_to(at, e[3]) for (at, _), e in zip(about, expected, strict=True))
        view = await ops.view(number)
        assert view.case.referrals[-1].status.value == "expired"
        assert any(
            item.what == f"answer to referral {referral.id}" and item.level == 2 for item in view.overdue
        )
