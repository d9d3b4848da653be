"""Deadlines, reminders and the escalation ladder, computed without a clock."""

from __future__ import annotations

from datetime import timedelta

import pytest

from domain import commands as c
from domain.case import notice_for
from domain.models import FollowUpStatus, Hold, ReferralAnswer, Role, Stage
from domain.schedule import Obligation, deadline, next_deadline, next_due, notices, obligations, overdue
from tests.scenario import ALICE, T0, Story, assessment, story_in

DAY = timedelta(days=1)


def just_accepted() -> Story:
    """A case in assessment with nothing else owed: no referrals, no appointments."""
    story = Story("general")
    story.do(c.Accept(actor=ALICE))
    return story


def test_deadline_without_holds_is_anchor_plus_allowed() -> None:
    assert deadline(T0, 14 * DAY, []) == T0 + 14 * DAY


def test_time_on_hold_does_not_count() -> None:
    holds = [Hold(start=T0 + 2 * DAY, end=T0 + 5 * DAY), Hold(start=T0 + 6 * DAY, end=T0 + 7 * DAY)]
    assert deadline(T0, 14 * DAY, holds) == T0 + 18 * DAY


def test_holds_before_the_anchor_or_after_the_deadline_do_not_matter() -> None:
    holds = [Hold(start=T0 - 9 * DAY, end=T0 - 1 * DAY), Hold(start=T0 + 20 * DAY, end=T0 + 30 * DAY)]
    assert deadline(T0, 14 * DAY, holds) == T0 + 14 * DAY


def test_a_hold_that_began_before_the_anchor_counts_from_the_anchor() -> None:
    assert deadline(T0, 14 * DAY, [Hold(start=T0 - DAY, end=T0 + 3 * DAY)]) == T0 + 17 * DAY


def test_an_open_hold_pauses_the_deadline() -> None:
    assert deadline(T0, 14 * DAY, [Hold(start=T0 + DAY)]) is None


def test_each_stage_owes_its_work_within_the_programs_time() -> None:
    story = just_accepted()
    [owed] = obligations(story.case, story.program)
    assert owed.what == "assessment"
    assert owed.due == story.case.stage_entered_at + story.program.deadlines[Stage.ASSESSMENT]


def test_the_ladder_reminds_then_escalates_in_order() -> None:
    story = just_accepted()
    due = story.case.stage_entered_at + 14 * DAY
    seen = []
    now = story.now
    while (step := next_due(story.case, story.program, now)) is not None and step.at < due + 30 * DAY:
        notice = notice_for(story.case, step, story.program)
        seen.append((step.at - due, notice.kind, notice.level, notice.notify, notice.recipient))
        now = step.at
        story.now = now - timedelta(hours=1)  # Story.do adds an hour
        story.do(notice)
    assert seen == [
        (-2 * DAY, "reminder", 0, Role.CASE_MANAGER, "alice"),
        (timedelta(0), "escalation", 0, Role.CASE_MANAGER, "alice"),
        (3 * DAY, "escalation", 1, Role.SUPERVISOR, "sam"),
        (7 * DAY, "escalation", 2, Role.PROGRAM_LEAD, "lead-general"),
    ]
    [item] = overdue(story.case, story.program, now)
    assert (item.what, item.level, item.notified) == ("assessment", 2, Role.PROGRAM_LEAD)


def test_a_reminder_that_comes_too_late_is_skipped_for_the_ladder() -> None:
    story = just_accepted()
    due = story.case.stage_entered_at + 14 * DAY
    step = next_due(story.case, story.program, due + timedelta(minutes=5))
    assert step is not None and step.kind == "escalation" and step.at == due


def test_finishing_the_stage_stops_its_ladder() -> None:
    story = just_accepted()
    late = story.case.stage_entered_at + 15 * DAY
    step = next_due(story.case, story.program, late)
    assert step is not None
    story.now = late
    story.do(notice_for(story.case, step, story.program))
    assert overdue(story.case, story.program, late)
    story.do(c.CompleteAssessment(actor=ALICE, assessment=assessment()))
    assert not overdue(story.case, story.program, story.now)
    assert story.case.notices_sent == []  # notices of finished work are forgotten
    nxt = next_due(story.case, story.program, story.now)
    assert nxt is not None and nxt.obligation is not None and nxt.obligation.what == "approved plan"


def test_on_hold_nothing_is_due_and_afterwards_deadlines_move_out() -> None:
    story = just_accepted()
    entered = story.case.stage_entered_at
    story.do(c.Suspend(actor=ALICE, reason="client in hospital"), after=5 * DAY)
    assert next_due(story.case, story.program, story.now + 60 * DAY) is None
    assert next_deadline(story.case, story.program) is None
    story.do(c.Resume(actor=ALICE), after=30 * DAY)
    hold = story.case.holds[-1]
    assert hold.end is not None and hold.end - hold.start == 30 * DAY
    assert next_deadline(story.case, story.program) == entered + 14 * DAY + (hold.end - hold.start)


def test_monitoring_owes_follow_ups_and_plan_reviews() -> None:
    story = Story("weekly").to(Stage.MONITORING)
    entered = story.case.stage_entered_at
    owed = {o.kind: o.due for o in obligations(story.case, story.program)}
    assert owed["follow_up"] == entered + 7 * DAY and owed["plan_review"] == entered + 60 * DAY
    # the story's referral and home visit are owed too, on their own clocks
    assert set(owed) == {"follow_up", "plan_review", "referral_answer", "scheduled_follow_up"}
    story.do(c.RecordFollowUp(actor=ALICE, summary="home visit"), after=3 * DAY)
    owed = {o.kind: o.due for o in obligations(story.case, story.program)}
    assert owed["follow_up"] == story.now + 7 * DAY


def test_a_closed_case_is_archived_when_its_reopen_window_ends() -> None:
    story = story_in(Stage.CLOSED)
    step = next_due(story.case, story.program, story.now)
    assert step is not None and step.kind == "archive"
    assert step.at == story.case.closed_at + story.program.reopen_window  # type: ignore[operator]
    assert obligations(story.case, story.program) == []


# --- every deadline honours holds -------------------------------------------------------


def owed(story: Story, kind: str) -> Obligation:
    return next(o for o in obligations(story.case, story.program) if o.kind == kind)


@pytest.mark.parametrize(
    ("kind", "stage"),
    [
        ("stage_deadline", Stage.ASSESSMENT),
        ("follow_up", Stage.MONITORING),
        ("plan_review", Stage.MONITORING),
        ("referral_answer", Stage.MONITORING),  # the story's referral to shelter-north
        ("scheduled_follow_up", Stage.MONITORING),  # the story's home visit
    ],
)
def test_a_hold_in_the_middle_moves_the_deadline_by_its_length_and_nothing_is_due_during_it(
    kind: str, stage: Stage
) -> None:
    story = Story("weekly").to(stage)
    before = owed(story, kind)
    assert before.due is not None
    story.do(c.Suspend(actor=ALICE, reason="client in hospital"), after=DAY)
    assert story.now < before.due - story.program.escalation.reminder_lead  # held before its reminder
    assert owed(story, kind).due is None
    # however long the hold lasts, no reminder or escalation comes due during it
    assert next_due(story.case, story.program, story.now + 400 * DAY) is None
    assert overdue(story.case, story.program, story.now + 400 * DAY) == []

    story.do(c.Resume(actor=ALICE), after=10 * DAY)
    after = owed(story, kind)
    assert after.key == before.key  # the same obligation: notices already issued stay issued
    assert after.due == before.due + 10 * DAY
    reminder = notices(after, story.program, story.now)[0]
    assert reminder.kind == "reminder" and reminder.at == after.due - story.program.escalation.reminder_lead


def test_an_open_referral_keeps_the_hold_its_deadline_spans_until_it_is_answered() -> None:
    """Compaction forgets holds no live deadline spans; a referral's answer is a live deadline."""
    story = Story("weekly").to(Stage.MONITORING)
    referral = owed(story, "referral_answer")
    assert referral.due is not None and referral.subject is not None
    story.do(c.Suspend(actor=ALICE, reason="client in hospital"))
    story.do(c.Resume(actor=ALICE), after=10 * DAY)
    # every other clock restarts after the hold: only the referral's began before it
    [visit] = [f for f in story.case.follow_ups if f.status is FollowUpStatus.SCHEDULED]
    missed = c.RecordFollowUpOutcome(actor=ALICE, follow_up_id=visit.id, outcome=FollowUpStatus.MISSED)
    story.do(missed, after=max(timedelta(0), visit.due_at - story.now))  # once its time has come
    story.do(c.RecordFollowUp(actor=ALICE, summary="called her"))
    story.do(c.ReviewPlan(actor=ALICE, summary="still fits"))
    assert [o.kind for o in obligations(story.case, story.program)] == [
        "follow_up",
        "plan_review",
        "referral_answer",
    ]
    assert len(story.case.holds) == 1
    assert owed(story, "referral_answer").due == referral.due + 10 * DAY

    story.do(c.AnswerReferral(actor=ALICE, referral_id=referral.subject, answer=ReferralAnswer.ACCEPTED))
    assert story.case.holds == []  # no deadline spans it any more


def test_runs_from_before_the_change_keep_provider_clocks_running_through_holds() -> None:
    """The workflow replays old runs with holds_pause_every_deadline off (a workflow patch)."""
    story = Story("weekly").to(Stage.MONITORING)
    story.program = story.program.model_copy(update={"holds_pause_every_deadline": False})
    before = owed(story, "referral_answer")
    story.do(c.Suspend(actor=ALICE, reason="client in hospital"))
    assert owed(story, "referral_answer").due == before.due
    assert owed(story, "follow_up").due is None
