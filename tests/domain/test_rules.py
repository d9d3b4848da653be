"""Who may do what: role rules and guards, as the people in a program meet them."""

from __future__ import annotations

from datetime import UTC, date, datetime, timedelta

import pytest

from domain import commands as c
from domain.case import Rejected
from domain.errors import Refusal
from domain.lifecycle import allowed_actions
from domain.models import Actor, Assessment, Client, Goal, GoalStatus, Need, Outcome, RiskLevel, Role, Stage
from tests.scenario import ALICE, BOB, LEAD, PROVIDER, SAM, Story, assessment, goals, story_in


def planning_story(risk: RiskLevel, program: str = "general") -> Story:
    story = Story(program)
    story.do(c.Accept(actor=ALICE))
    story.do(c.CompleteAssessment(actor=ALICE, assessment=assessment(risk)))
    story.do(c.SubmitPlan(actor=ALICE, goals=goals()))
    return story


def test_a_high_risk_plan_needs_a_supervisor() -> None:
    story = planning_story(RiskLevel.HIGH)
    with pytest.raises(Rejected) as refused:
        story.do(c.ApprovePlan(actor=ALICE))
    assert refused.value.kind == Refusal.FORBIDDEN
    assert "high-risk plan needs a supervisor" in refused.value.message
    assert story.case.stage is Stage.PLANNING  # nothing changed
    story.do(c.ApprovePlan(actor=SAM))
    assert story.case.stage is Stage.COORDINATION
    assert story.case.plan is not None and story.case.plan.decided_by == SAM


def test_a_low_risk_plan_can_be_approved_by_its_case_manager() -> None:
    story = planning_story(RiskLevel.LOW)
    story.do(c.ApprovePlan(actor=ALICE))
    assert story.case.stage is Stage.COORDINATION


def test_the_housing_program_asks_a_supervisor_from_medium_risk() -> None:
    story = planning_story(RiskLevel.MEDIUM, program="housing")
    with pytest.raises(Rejected, match="medium-risk plan needs a supervisor's decision in program housing"):
        story.do(c.ApprovePlan(actor=ALICE))


def test_a_case_with_no_supervisor_is_told_its_program_lead_decides() -> None:
    story = planning_story(RiskLevel.HIGH)
    story.case = story.case.model_copy(update={"supervisor": None})
    with pytest.raises(Rejected, match=r"\(it has no supervisor, or the program lead lead-general\)"):
        story.do(c.ApprovePlan(actor=ALICE))
    story.do(c.ApprovePlan(actor=LEAD))
    assert story.case.stage is Stage.COORDINATION


def test_a_program_lead_may_approve_what_a_supervisor_may() -> None:
    story = planning_story(RiskLevel.HIGH)
    story.do(c.ApprovePlan(actor=LEAD))
    assert story.case.stage is Stage.COORDINATION


def test_a_rejected_plan_is_revised_and_submitted_again() -> None:
    story = planning_story(RiskLevel.HIGH)
    story.do(c.RejectPlan(actor=SAM, reason="objectives are not measurable"))
    assert story.case.plan is not None and story.case.plan.status == "rejected"
    with pytest.raises(Rejected, match="no submitted plan"):
        story.do(c.ApprovePlan(actor=SAM))
    story.do(c.SubmitPlan(actor=ALICE, goals=goals()))
    story.do(c.ApprovePlan(actor=SAM))
    assert story.case.stage is Stage.COORDINATION


def test_closing_with_unmet_goals_needs_a_supervisor() -> None:
    story = story_in(Stage.EVALUATION)
    partial = c.Close(actor=ALICE, outcome="partially_met", goals_met=["g1"])
    with pytest.raises(Rejected, match=r"unmet goals \(g2\) needs a supervisor") as refused:
        story.do(partial)
    assert refused.value.kind == Refusal.FORBIDDEN
    story.do(c.Close(actor=SAM, outcome="partially_met", goals_met=["g1"], summary="income still pending"))
    assert story.case.outcome is Outcome.PARTIALLY_MET
    assert story.case.plan is not None
    assert [g.status for g in story.case.plan.goals] == [GoalStatus.MET, GoalStatus.UNMET]


def test_closing_names_only_goals_of_the_plan() -> None:
    story = story_in(Stage.EVALUATION)
    with pytest.raises(Rejected, match="not in the plan: g9"):
        story.do(c.Close(actor=SAM, outcome="goals_met", goals_met=["g1", "g2", "g9"]))


def test_transfer_needs_a_supervisor_and_a_different_manager() -> None:
    story = story_in(Stage.MONITORING)
    with pytest.raises(Rejected, match="a case_manager may not transfer") as refused:
        story.do(c.Transfer(actor=ALICE, to_manager="bob", reason="going on leave"))
    assert refused.value.kind == Refusal.FORBIDDEN
    with pytest.raises(Rejected, match="already managed by alice"):
        story.do(c.Transfer(actor=SAM, to_manager="alice", reason="going on leave"))
    story.do(c.Transfer(actor=SAM, to_manager="bob", reason="alice going on leave"))
    assert story.case.manager == "bob"
    # the case is bob's now: alice acts on it no more
    with pytest.raises(Rejected, match="managed by bob, not alice"):
        story.do(c.AddNote(actor=ALICE, text="handover call done"))
    story.do(c.AddNote(actor=BOB, text="handover call done"))


def test_a_case_manager_acts_only_on_their_own_cases() -> None:
    story = story_in(Stage.INTAKE)
    with pytest.raises(Rejected, match="managed by alice, not bob") as refused:
        story.do(c.Accept(actor=BOB))
    assert refused.value.kind == Refusal.FORBIDDEN


@pytest.mark.parametrize("role", [Role.PROVIDER, Role.SYSTEM])
def test_providers_and_the_system_give_no_staff_commands(role: Role) -> None:
    story = story_in(Stage.INTAKE)
    with pytest.raises(Rejected, match=f"a {role.value} may not accept"):
        story.do(c.Accept(actor=Actor(id=PROVIDER.id, role=role)))


def test_reopen_only_within_the_programs_window() -> None:
    window = story_in(Stage.CLOSED).program.reopen_window
    inside = story_in(Stage.CLOSED)
    inside.do(c.Reopen(actor=ALICE, reason="lost the flat again"), after=window - timedelta(minutes=1))
    assert inside.case.stage is Stage.ASSESSMENT

    outside = story_in(Stage.CLOSED)
    with pytest.raises(
        Rejected, match=r"reopen window of program general \(90 days after closure\) has passed"
    ):
        outside.do(c.Reopen(actor=ALICE, reason="lost the flat again"), after=window + timedelta(minutes=1))
    assert outside.case.stage is Stage.CLOSED


def test_withdraw_from_hold_closes_and_ends_the_hold() -> None:
    story = story_in(Stage.ON_HOLD)
    story.do(c.Withdraw(actor=ALICE, reason="client moved abroad"), after=timedelta(days=3))
    assert story.case.stage is Stage.CLOSED and story.case.outcome is Outcome.WITHDRAWN
    # no hold stays in force; a closed case owes nothing, so it keeps no past holds either
    assert story.case.held_from is None and story.case.holds == []
    assert story.case.held_from is None


def test_decline_closes_with_the_reason() -> None:
    story = story_in(Stage.INTAKE)
    story.do(c.Decline(actor=ALICE, reason="outside the service area"))
    assert story.case.outcome is Outcome.DECLINED and story.case.close_reason == "outside the service area"


def test_assessment_sets_the_case_risk() -> None:
    story = story_in(Stage.ASSESSMENT)
    story.do(c.CompleteAssessment(actor=ALICE, assessment=assessment(RiskLevel.HIGH)))
    assert story.case.risk is RiskLevel.HIGH


def test_referrals_get_ids_from_their_event() -> None:
    story = story_in(Stage.COORDINATION)
    event = story.do(
        c.Refer(actor=ALICE, provider="legal-aid", service="legal_aid", reason="custody hearing")
    )
    assert story.case.referrals[-1].id == f"R{event.seq}"
    assert len({r.id for r in story.case.referrals}) == len(story.case.referrals)


def test_commands_validate_their_input() -> None:
    with pytest.raises(ValueError, match="goal ids must be unique"):
        c.SubmitPlan(actor=ALICE, goals=[goals()[0], goals()[0]])
    with pytest.raises(ValueError, match="at least 3 characters"):
        c.Decline(actor=ALICE, reason="no")
    with pytest.raises(ValueError):
        c.STAFF_COMMAND.validate_python({"action": "teleport", "actor": {"id": "a", "role": "supervisor"}})


def test_a_note_or_a_reason_of_only_spaces_is_no_note() -> None:
    """Refused at the door; a note may be empty where it is optional (an acceptance's note)."""
    assert c.blank_text(c.AddNote(actor=ALICE, text="   ")) == "text"
    assert c.blank_text(c.Suspend(actor=ALICE, reason=" \n\t ")) == "reason"
    assert c.blank_text(c.AddNote(actor=ALICE, text=" called her ")) is None
    assert c.blank_text(c.Accept(actor=ALICE, note="  ")) is None  # optional: nothing to say is fine


def test_what_a_sender_cannot_have_meant_is_refused_at_the_door_naming_the_field() -> None:
    goals = [Goal(id="g1", description="   ", objective="lease signed", target_date=date(2027, 5, 1))]
    assert c.door_problem(c.SubmitPlan(actor=ALICE, goals=goals)) == (
        "goals.0.description: write something, not only spaces"
    )
    twice = Assessment(needs=["housing:1/5", "income:2/5", "housing:3/5"], risk=RiskLevel.LOW)
    assert c.door_problem(c.CompleteAssessment(actor=ALICE, assessment=twice)) == (
        "assessment.needs: housing assessed twice; give each domain once"
    )
    years = c.Refer(actor=ALICE, provider="p", service="housing", reason="needs it", respond_within="P9999D")
    assert c.door_problem(years) == "respond_within: at most 365 days"
    assert c.door_problem(years.model_copy(update={"respond_within": timedelta(days=5)})) is None
    assert c.door_problem(c.UpdateContact(actor=ALICE, phone="ask mum")) is not None


@pytest.mark.parametrize(
    ("given", "family", "born", "problem"),
    [
        ("  ", "Okafor", None, "client.given_name: write the name, not only spaces"),
        ("Ada\nEvil", "Okafor", None, "client.given_name: a name has no line breaks"),
        ("Ada", "\u202eOkafor", None, "client.family_name: a name has no line breaks"),
        ("Ada", "Okafor", date(1800, 1, 1), "client.birth_date: 1800-01-01 would make the client older"),
        ("Ada", "Okafor", date(2090, 1, 1), "client.birth_date: 2090-01-01 is still to come"),
    ],
)
def test_a_new_clients_details_that_cannot_be_right_are_refused(
    given: str, family: str, born: date | None, problem: str
) -> None:
    client = Client(given_name=given, family_name=family, birth_date=born)
    assert (client.unlikely_details(date(2026, 11, 27)) or "").startswith(problem)


def test_names_in_every_script_are_names() -> None:
    for given, family in (("Zoë", "Nasser"), ("می\u200cخواهم", "رحیمی"), ("José María", "O'Brien-Núñez")):
        assert Client(given_name=given, family_name=family).unlikely_details(date(2026, 11, 27)) is None


@pytest.mark.parametrize(
    ("outcome", "met", "refusal"),
    [
        (
            "goals_not_met",
            ["g1", "g2"],
            "the outcome goals_not_met does not fit the goals (2 of 2 goals met): close as goals_met",
        ),
        (
            "goals_met",
            ["g1"],
            "the outcome goals_met does not fit the goals (1 of 2 goals met): close as partially_met",
        ),
        (
            "partially_met",
            [],
            "the outcome partially_met does not fit the goals (no goal met): close as goals_not_met",
        ),
        ("partially_met", ["g2"], None),
        ("goals_met", ["g1", "g2"], None),
    ],
)
def test_a_closing_outcome_fits_the_goals_it_names_as_met(
    outcome: str, met: list[str], refusal: str | None
) -> None:
    story = story_in(Stage.EVALUATION)
    close = c.Close(actor=SAM, outcome=outcome, goals_met=met)
    if refusal is None:
        assert story.do(close).stage_after is Stage.CLOSED
        return
    with pytest.raises(Rejected) as refused:
        story.do(close)
    assert refused.value.kind == Refusal.GUARD_FAILED and refused.value.message == refusal


def test_a_visit_is_recorded_as_attended_once_its_time_has_nearly_come() -> None:
    story = story_in(Stage.COORDINATION)
    story.do(c.ScheduleFollowUp(actor=ALICE, kind="home_visit", at=story.now + timedelta(days=10)))
    visit = story.case.follow_ups[-1]
    attended = c.RecordFollowUpOutcome(actor=ALICE, follow_up_id=visit.id, outcome="attended")
    with pytest.raises(
        Rejected, match=f"follow-up {visit.id} is on .*: record how it went once it has happened"
    ):
        story.do(attended)
    moved = c.RecordFollowUpOutcome(
        actor=ALICE,
        follow_up_id=visit.id,
        outcome="rescheduled",
        rescheduled_to=visit.due_at + timedelta(days=2),
    )
    story.do(moved)  # a rescheduling may come any time
    later = story.case.follow_ups[-1]
    early = c.RecordFollowUpOutcome(actor=ALICE, follow_up_id=later.id, outcome="attended")
    story.do(early, after=later.due_at - story.now - timedelta(hours=20))  # the day before: brought forward
    assert story.case.follow_ups[-1].status.value == "attended"


def test_a_run_from_before_the_rule_replays_what_it_took() -> None:
    """Its handler's program has the rule off (workflows/case.py sets it by the run's generation)."""
    story = story_in(Stage.EVALUATION)
    story.program = story.program.model_copy(update={"outcomes_fit_the_facts": False})
    assert (
        story.do(c.Close(actor=SAM, outcome="goals_not_met", goals_met=["g1", "g2"])).stage_after
        is Stage.CLOSED
    )


def test_a_need_typed_with_capitals_is_the_need() -> None:
    assert Need.model_validate("Housing:2/5").domain == Need.model_validate("housing:2/5").domain == "housing"


def test_a_case_offers_actions_on_referrals_and_follow_ups_only_while_it_holds_some() -> None:
    story = Story("general")
    story.do(c.Accept(actor=ALICE))
    offered = set(allowed_actions(story.case))
    assert {"answer_referral", "revoke_referral", "record_follow_up_outcome"}.isdisjoint(offered)
    assert {"refer", "schedule_follow_up", "add_note"} <= offered
    story.do(
        c.Refer(
            actor=ALICE, provider="shelter-north", service="housing", reason="needs a bed", share=frozenset()
        )
    )
    story.do(c.ScheduleFollowUp(actor=ALICE, kind="phone_call", at=story.now + timedelta(days=2)))
    assert {"answer_referral", "revoke_referral", "record_follow_up_outcome"} <= set(
        allowed_actions(story.case)
    )


def test_a_follow_up_years_away_is_a_typo_not_a_booking() -> None:
    """A date near the calendar's end once broke the case: its escalations fell past year 9999."""
    story = story_in(Stage.COORDINATION)
    for far in (story.now + timedelta(days=6 * 366), datetime(9999, 12, 30, tzinfo=UTC)):
        with pytest.raises(Rejected, match="is more than 5 years ahead") as refused:
            story.do(c.ScheduleFollowUp(actor=ALICE, kind="check_in", at=far))
        assert refused.value.kind == Refusal.VALIDATION
    story.do(c.ScheduleFollowUp(actor=ALICE, kind="check_in", at=story.now + timedelta(days=30)))
    booked = story.case.follow_ups[-1]
    moved = c.RecordFollowUpOutcome(
        actor=ALICE,
        follow_up_id=booked.id,
        outcome="rescheduled",
        rescheduled_to=datetime(9999, 12, 31, tzinfo=UTC),
    )
    with pytest.raises(Rejected, match="rescheduled_to: 9999-12-31 is more than 5 years ahead"):
        story.do(moved)


def test_a_run_from_before_the_bound_replays_a_follow_up_booked_years_ahead() -> None:
    """A rule of generation 8: an older run's handler has it off, and takes what it took then."""
    story = story_in(Stage.COORDINATION)
    story.program = story.program.model_copy(update={"outcomes_fit_the_facts": False})
    far = story.now + timedelta(days=6 * 366)
    story.do(c.ScheduleFollowUp(actor=ALICE, kind="check_in", at=far))
    assert story.case.follow_ups[-1].due_at == far
