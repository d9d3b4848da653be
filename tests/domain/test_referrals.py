"""Referrals to providers and scheduled follow-ups: consent, answers, expiry, ladders."""

from __future__ import annotations

from datetime import timedelta

import pytest
from pydantic import ValidationError

from domain import commands as c
from domain.case import Rejected, notice_for
from domain.errors import Refusal
from domain.events import DeliveryRecorded
from domain.lifecycle import REFERRAL_ANSWERS
from domain.models import (
    SYSTEM,
    Actor,
    FollowUpStatus,
    ReferralAnswer,
    ReferralStatus,
    Role,
    SharedField,
    Stage,
)
from domain.schedule import next_due, overdue
from tests.scenario import ALICE, SAM, Story, assessment

DAY = timedelta(days=1)
SHELTER = Actor(id="shelter-north", role=Role.PROVIDER)
OTHER_PROVIDER = Actor(id="food-bank", role=Role.PROVIDER)


def test_every_answer_leaves_the_referral_in_its_own_status_and_follows_a_known_status() -> None:
    assert {answer: answer.status.value for answer in ReferralAnswer} == {a: a.value for a in ReferralAnswer}
    assert set(REFERRAL_ANSWERS) == set(ReferralAnswer)
    # the words on the wire stay what providers send today
    assert [a.value for a in ReferralAnswer] == ["accepted", "declined", "completed", "no_show"]


def in_assessment() -> Story:
    story = Story("general")
    story.do(c.Accept(actor=ALICE))
    return story


def refer(story: Story, actor: Actor = ALICE, **extra: object) -> str:
    story.do(
        c.Refer.model_validate(
            {
                "actor": actor,
                "provider": "shelter-north",
                "service": "housing",
                "reason": "needs a bed tonight",
                **extra,
            }
        )
    )
    return story.case.referrals[-1].id


def fire_due(story: Story, until: timedelta) -> list[str]:
    """Let the case's timers run for `until`; return what was issued."""
    end, issued = story.now + until, []
    while (due := next_due(story.case, story.program, story.now)) is not None and due.at <= end:
        story.now = max(story.now, due.at)
        notice = notice_for(story.case, due, story.program)
        story.do(notice, after=timedelta(0))
        issued.append(f"{notice.kind}:{notice.level}:{notice.recipient}:{notice.obligation}")
    story.now = end
    return issued


def test_sharing_client_data_needs_recorded_consent() -> None:
    story = in_assessment()
    with pytest.raises(Rejected, match="has not consented to share contact, name"):
        refer(story)
    story.do(
        c.RecordConsent(
            actor=ALICE, share=frozenset({SharedField.NAME, SharedField.CONTACT}), note="signed release form"
        )
    )
    referral = refer(story)
    assert story.case.referrals[-1].shared == {SharedField.NAME, SharedField.CONTACT}
    assert referral == f"R{story.events[-1].seq}"


def test_a_referral_that_shares_nothing_needs_no_consent() -> None:
    story = in_assessment()
    refer(story, share=[])
    assert story.case.referrals[-1].shared == frozenset()


def test_only_a_supervisor_overrides_consent_and_says_why() -> None:
    story = in_assessment()
    with pytest.raises(Rejected, match="only a supervisor may share contact, name"):
        refer(story, consent_override="imminent risk")
    refer(story, actor=SAM, consent_override="imminent risk to life; client unreachable")
    assert story.case.referrals[-1].consent_override.startswith("imminent risk")
    assert story.events[-1].actor == SAM  # who overrode is on the record


def test_a_provider_accepts_then_completes() -> None:
    story = in_assessment()
    referral = refer(story, share=[])
    story.do(
        DeliveryRecorded(actor=SYSTEM, key="k", kind="referral_request", delivered=True, referral_id=referral)
    )
    assert story.case.referrals[-1].status is ReferralStatus.SENT
    story.do(c.AnswerReferral(actor=SHELTER, referral_id=referral, answer="accepted"))
    with pytest.raises(Rejected, match=f"referral {referral} is accepted: it cannot be accepted now"):
        story.do(c.AnswerReferral(actor=SHELTER, referral_id=referral, answer="accepted"))
    story.do(c.AnswerReferral(actor=SHELTER, referral_id=referral, answer="completed"))
    assert story.case.referrals[-1].status is ReferralStatus.COMPLETED
    assert story.case.referrals[-1].answered_by == SHELTER


def test_only_the_referred_provider_answers() -> None:
    story = in_assessment()
    referral = refer(story, share=[])
    with pytest.raises(Rejected, match=f"referral {referral} was not made to food-bank") as refused:
        story.do(c.AnswerReferral(actor=OTHER_PROVIDER, referral_id=referral, answer="accepted"))
    assert refused.value.kind == Refusal.FORBIDDEN
    with pytest.raises(Rejected, match="has no referral R99"):
        story.do(c.AnswerReferral(actor=SHELTER, referral_id="R99", answer="accepted"))


def test_a_decline_needs_a_reason_and_staff_can_record_one_taken_by_phone() -> None:
    with pytest.raises(ValueError, match="declined referral needs a reason"):
        c.AnswerReferral(actor=SHELTER, referral_id="R1", answer="declined")
    story = in_assessment()
    referral = refer(story, share=[])
    story.do(
        c.AnswerReferral(actor=ALICE, referral_id=referral, answer="declined", reason="no beds (phone call)")
    )
    assert story.case.referrals[-1].status is ReferralStatus.DECLINED


def test_an_unanswered_referral_expires_and_climbs_the_ladder() -> None:
    story = in_assessment()
    referral = refer(story, share=[], respond_within=timedelta(days=4))
    story.do(c.CompleteAssessment(actor=ALICE, assessment=assessment()))
    issued = [i for i in fire_due(story, 12 * DAY) if f"referral {referral}" in i]
    assert issued == [
        f"reminder:0:alice:answer to referral {referral}",
        f"escalation:0:alice:answer to referral {referral}",
        f"escalation:1:sam:answer to referral {referral}",
        f"escalation:2:lead-general:answer to referral {referral}",
    ]
    assert story.case.referrals[-1].status is ReferralStatus.EXPIRED
    # a late answer is still welcome, and ends the ladder
    story.do(c.AnswerReferral(actor=SHELTER, referral_id=referral, answer="accepted"))
    assert not [o for o in overdue(story.case, story.program, story.now) if referral in o.what]


def test_a_failed_delivery_leaves_the_referral_for_the_case_manager() -> None:
    story = in_assessment()
    referral = refer(story, share=[])
    story.do(
        DeliveryRecorded(
            actor=SYSTEM,
            key="k",
            kind="referral_request",
            delivered=False,
            detail="550 no such mailbox",
            referral_id=referral,
        )
    )
    assert story.case.referrals[-1].status is ReferralStatus.DELIVERY_FAILED
    story.do(c.RevokeReferral(actor=ALICE, referral_id=referral, reason="wrong address; re-referring"))
    with pytest.raises(Rejected, match="already revoked"):
        story.do(c.RevokeReferral(actor=ALICE, referral_id=referral, reason="twice"))


def test_a_scheduled_follow_up_reminds_before_and_escalates_after() -> None:
    story = Story("weekly").to(Stage.COORDINATION)
    visit_at = story.now + 10 * DAY
    story.do(c.ScheduleFollowUp(actor=ALICE, kind="home_visit", at=visit_at))
    follow_up = story.case.follow_ups[-1]
    assert follow_up.status is FollowUpStatus.SCHEDULED and follow_up.due_at == visit_at
    issued = [i for i in fire_due(story, 20 * DAY) if follow_up.id in i]
    assert issued == [
        f"reminder:0:alice:home visit {follow_up.id}",
        f"escalation:0:alice:home visit {follow_up.id}",
        f"escalation:1:sam:home visit {follow_up.id}",
        f"escalation:2:lead-weekly:home visit {follow_up.id}",
    ]
    story.do(
        c.RecordFollowUpOutcome(
            actor=ALICE, follow_up_id=follow_up.id, outcome="attended", notes="visit happened, late entry"
        )
    )
    assert story.case.last_contact_at == story.now
    assert not [o for o in overdue(story.case, story.program, story.now) if follow_up.id in o.what]


def test_rescheduling_makes_a_new_appointment() -> None:
    story = Story("weekly").to(Stage.COORDINATION)
    story.do(
        c.ScheduleFollowUp(actor=ALICE, kind="appointment", at=story.now + 3 * DAY, provider="clinic-east")
    )
    first = story.case.follow_ups[-1].id
    with pytest.raises(Rejected, match="to a time still to come"):
        story.do(
            c.RecordFollowUpOutcome(
                actor=ALICE, follow_up_id=first, outcome="rescheduled", rescheduled_to=story.now - DAY
            )
        )
    story.do(
        c.RecordFollowUpOutcome(
            actor=ALICE,
            follow_up_id=first,
            outcome="rescheduled",
            rescheduled_to=story.now + 8 * DAY,
            notes="clinic closed",
        )
    )
    old, new = story.case.follow_ups[-2:]
    assert old.status is FollowUpStatus.RESCHEDULED
    assert new.status is FollowUpStatus.SCHEDULED and new.provider == "clinic-east" and new.id != first
    with pytest.raises(Rejected, match=f"follow-up {first} is rescheduled, not scheduled"):
        story.do(c.RecordFollowUpOutcome(actor=ALICE, follow_up_id=first, outcome="attended"))


def test_a_follow_up_is_scheduled_in_the_future() -> None:
    story = Story("weekly").to(Stage.COORDINATION)
    with pytest.raises(
        Rejected, match="has passed; a follow-up is scheduled for a time still to come"
    ) as refused:
        story.do(c.ScheduleFollowUp(actor=ALICE, kind="phone_call", at=story.now - DAY))
    assert refused.value.kind is Refusal.VALIDATION  # bad input: exit 2, HTTP 422


def test_follow_up_ids_never_repeat() -> None:
    story = Story("weekly").to(Stage.MONITORING)  # the story already has a scheduled home visit
    for call in range(4):  # enough contacts for a count-based name to reach the visit's
        story.do(c.RecordFollowUp(actor=ALICE, summary=f"phone call {call}"))
    ids = [f.id for f in story.case.follow_ups]
    assert len(ids) == len(set(ids)), ids


def test_a_client_is_invited_only_where_an_invitation_reaches_them() -> None:
    """The invitation goes by email and needs consent to share contact details: without either,
    inviting the client is refused (it used to be accepted, and only the manager was invited)."""
    story = Story("general").to(Stage.COORDINATION)  # consent to share contact details recorded
    visit = c.ScheduleFollowUp(actor=ALICE, kind="home_visit", at=story.now + 10 * DAY, invite_client=True)
    with pytest.raises(
        Rejected, match="no email address on file for them; add it to their contact details, or schedule"
    ) as refused:
        story.do(visit)
    assert refused.value.kind is Refusal.GUARD_FAILED
    story.do(c.UpdateContact(actor=ALICE, email="maria@example.org", note="she gave her email"))
    story.do(c.RecordConsent(actor=ALICE, share=frozenset({SharedField.NAME})))
    with pytest.raises(Rejected, match="not consented to share their contact details; record their consent"):
        story.do(visit)
    story.do(c.RecordConsent(actor=ALICE, share=frozenset({SharedField.NAME, SharedField.CONTACT})))
    story.do(visit)
    assert story.case.follow_ups[-1].invite_client
    story.do(visit.model_copy(update={"invite_client": False}))  # the manager alone: always allowed


def test_a_run_from_before_the_rule_replays_the_invitation_it_accepted() -> None:
    """Runs of generation 6 and older accepted such follow-ups; their handler's program has the
    rule off (the workflow sets it), so replaying one gives the case it gave."""
    story = Story("general").to(Stage.COORDINATION)
    story.program = story.program.model_copy(update={"invitations_need_a_reachable_client": False})
    story.do(c.ScheduleFollowUp(actor=ALICE, kind="home_visit", at=story.now + DAY, invite_client=True))
    assert story.case.follow_ups[-1].invite_client


def test_contact_details_given_replace_those_on_file_and_the_rest_stay() -> None:
    story = Story("general").to(Stage.ASSESSMENT)
    phone = story.case.client.phone
    story.do(c.UpdateContact(actor=ALICE, address="12 Harbour Lane"))
    story.do(c.UpdateContact(actor=ALICE, email="maria@example.org"))
    client = story.case.client
    assert (client.phone, client.email, client.address) == (phone, "maria@example.org", "12 Harbour Lane")
    with pytest.raises(ValidationError, match="give the new phone, email or address"):
        c.UpdateContact(actor=ALICE)
    with pytest.raises(ValidationError, match="email"):
        c.UpdateContact(actor=ALICE, email="not an address")


def test_an_unknown_referral_and_an_unknown_follow_up_are_both_not_found() -> None:
    """Both are lookups on the case: the same refusal, the same exit code (3) and status (404)."""
    story = in_assessment()
    with pytest.raises(Rejected, match="has no referral R99") as no_referral:
        story.do(c.RevokeReferral(actor=ALICE, referral_id="R99", reason="not needed"))
    with pytest.raises(Rejected, match="has no follow-up F99") as no_follow_up:
        story.do(c.RecordFollowUpOutcome(actor=ALICE, follow_up_id="F99", outcome="attended"))
    assert no_referral.value.kind == no_follow_up.value.kind == Refusal.NOT_FOUND
