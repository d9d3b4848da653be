"""Every action from every stage, generated from the lifecycle table itself."""

from __future__ import annotations

from datetime import timedelta

import pytest

from domain import commands as c
from domain.case import Rejected, decide
from domain.commands import STAFF_ACTIONS
from domain.errors import Refusal
from domain.events import Change
from domain.lifecycle import LIFECYCLE, NOT_FROM_HERE, SYSTEM_ONLY
from domain.models import Stage
from tests.scenario import ALICE, SAM, T0, assessment, goals, story_in

# The story's referral and scheduled follow-up are named after the seq of the event
# that made them (open 1, accept 2, consent 3, refer 4, schedule 5).
REFERRAL, FOLLOW_UP = "R4", "F5"

# A well-formed command for each staff action, given by a supervisor so that
# authority guards hold; the stage alone decides whether it may happen.
EXAMPLES: dict[str, Change] = {
    "accept": c.Accept(actor=SAM),
    "decline": c.Decline(actor=SAM, reason="not eligible for the program"),
    "complete_assessment": c.CompleteAssessment(actor=SAM, assessment=assessment()),
    "submit_plan": c.SubmitPlan(actor=SAM, goals=goals()),
    "approve_plan": c.ApprovePlan(actor=SAM),
    "reject_plan": c.RejectPlan(actor=SAM, reason="goals are not measurable"),
    "start_monitoring": c.StartMonitoring(actor=SAM),
    "revise_plan": c.RevisePlan(actor=SAM, reason="new barrier found"),
    "reassess": c.Reassess(actor=SAM, reason="circumstances changed"),
    "begin_evaluation": c.BeginEvaluation(actor=SAM),
    "resume_monitoring": c.ResumeMonitoring(actor=SAM, reason="one goal still open"),
    "close": c.Close(actor=SAM, outcome="goals_met", goals_met=["g1", "g2"]),
    "withdraw": c.Withdraw(actor=SAM, reason="client moved away"),
    "suspend": c.Suspend(actor=SAM, reason="client in hospital"),
    "resume": c.Resume(actor=SAM),
    "reopen": c.Reopen(actor=SAM, reason="client came back"),
    "transfer": c.Transfer(actor=SAM, to_manager="bob", reason="caseload balance"),
    "refer": c.Refer(actor=SAM, provider="shelter-north", service="housing", reason="needs a bed"),
    "answer_referral": c.AnswerReferral(
        actor=SAM, referral_id=REFERRAL, answer="accepted", reason="by phone"
    ),
    "revoke_referral": c.RevokeReferral(actor=SAM, referral_id=REFERRAL, reason="client found a place"),
    "record_consent": c.RecordConsent(actor=SAM, share=frozenset({"name"})),
    "update_contact": c.UpdateContact(actor=SAM, email="maria@example.org"),
    "schedule_follow_up": c.ScheduleFollowUp(actor=SAM, kind="phone_call", at=T0 + timedelta(days=90)),
    # rescheduled: recordable in every stage whenever the follow-up is (attended waits for its time)
    "record_follow_up_outcome": c.RecordFollowUpOutcome(
        actor=SAM, follow_up_id=FOLLOW_UP, outcome="rescheduled", rescheduled_to=T0 + timedelta(days=900)
    ),
    "record_follow_up": c.RecordFollowUp(actor=SAM, summary="phone call, doing well"),
    "review_plan": c.ReviewPlan(actor=SAM, summary="on track"),
    "add_note": c.AddNote(actor=SAM, text="called the landlord"),
}

# Cells where the stage allows the action but the example case fails a guard, and why.
GUARDED = {
    ("submit_plan", Stage.PLANNING): "already awaiting approval",
    # at intake nothing has been referred or scheduled yet
    ("answer_referral", Stage.INTAKE): f"has no referral {REFERRAL}",
    ("revoke_referral", Stage.INTAKE): f"has no referral {REFERRAL}",
    ("record_follow_up_outcome", Stage.INTAKE): f"has no follow-up {FOLLOW_UP}",
}


def test_every_staff_action_has_an_example_and_a_rule() -> None:
    assert set(EXAMPLES) == set(STAFF_ACTIONS)
    # restore is a supervisor's too, but it starts a lost workflow again rather than act on one
    assert {r.trigger for r in LIFECYCLE if r.roles != SYSTEM_ONLY} == {*STAFF_ACTIONS, "restore"}


def cells() -> list[tuple[str, Stage]]:
    return [(action, stage) for action in STAFF_ACTIONS for stage in Stage]


def destinations(action: str, stage: Stage) -> set[Stage]:
    return {r.dest or stage for r in LIFECYCLE if r.trigger == action and stage in r.sources}


@pytest.mark.parametrize(("action", "stage"), cells(), ids=lambda v: getattr(v, "value", v))
def test_action_from_stage_follows_the_table(action: str, stage: Stage) -> None:
    story = story_in(stage)
    allowed = destinations(action, stage)
    if not allowed:
        with pytest.raises(Rejected) as refused:
            decide(story.case, EXAMPLES[action], story.program, story.now, seq=99)
        assert refused.value.kind == Refusal.INVALID_TRANSITION
        if action in NOT_FROM_HERE:  # explained in the asker's terms (tests/domain/test_ending.py)
            assert refused.value.message
        else:
            assert f"cannot {action} a case in {stage.value}" in refused.value.message
    elif (action, stage) in GUARDED:
        with pytest.raises(Rejected, match=GUARDED[action, stage]):
            decide(story.case, EXAMPLES[action], story.program, story.now, seq=99)
    else:
        event = decide(story.case, EXAMPLES[action], story.program, story.now, seq=99)
        assert event.stage_after in allowed
        assert event.stage_before is stage


def test_resume_returns_to_the_stage_the_case_left() -> None:
    for stage in (Stage.INTAKE, Stage.PLANNING, Stage.MONITORING):
        story = story_in(stage)
        story.do(c.Suspend(actor=ALICE, reason="family emergency"))
        assert story.case.stage is Stage.ON_HOLD
        story.do(c.Resume(actor=ALICE))
        assert story.case.stage is stage


def test_reopen_goes_where_it_is_asked_and_monitoring_needs_an_approved_plan() -> None:
    story = story_in(Stage.CLOSED)
    story.do(c.Reopen(actor=ALICE, to=Stage.MONITORING, reason="relapse, same plan applies"))
    assert story.case.stage is Stage.MONITORING
    assert story.case.reopen_count == 1 and story.case.closed_at is None and story.case.outcome is None

    declined = story_in(Stage.INTAKE)
    declined.do(c.Decline(actor=ALICE, reason="outside service area"))
    with pytest.raises(Rejected, match="no approved plan"):
        declined.do(c.Reopen(actor=ALICE, to=Stage.MONITORING, reason="moved into the area"))
    declined.do(c.Reopen(actor=ALICE, to=Stage.ASSESSMENT, reason="moved into the area"))
    assert declined.case.stage is Stage.ASSESSMENT


def test_an_unknown_action_is_refused_clearly() -> None:
    story = story_in(Stage.INTAKE)
    with pytest.raises(Rejected, match="already open"):
        decide(story.case, story.events[0].change, story.program, story.now, seq=2)
