"""Ending a case ends its work in play: referrals are revoked, scheduled follow-ups cancelled, and
a provider answering late is told why no answer is needed."""

from __future__ import annotations

from datetime import timedelta

import pytest

from domain import commands as c
from domain.case import decide, replay
from domain.errors import Refusal, Rejected
from domain.events import DeliveryRecorded
from domain.models import (
    ACTIVE_REFERRAL,
    SYSTEM,
    Actor,
    FollowUpKind,
    FollowUpStatus,
    ReferralStatus,
    Role,
    ServiceType,
    Stage,
)
from tests.scenario import ALICE, PROVIDER, SAM, T0, Story, quiet_referral

FOOD_BANK = Actor(id="food-bank", role=Role.PROVIDER)


def in_coordination_with_work_in_play() -> Story:
    """Three referrals (shelter: sent; food bank: accepted; legal aid: declined) and a visit booked."""
    story = Story().to(Stage.COORDINATION)
    for provider in ("shelter-north", "food-bank", "legal-aid"):
        story.do(quiet_referral(provider))
    shelter, food, legal = (r.id for r in story.case.referrals[-3:])
    for referral in (shelter, food, legal):
        story.do(
            DeliveryRecorded(
                actor=SYSTEM,
                key=f"k{referral}",
                kind="referral_request",
                delivered=True,
                referral_id=referral,
            )
        )
    story.do(c.AnswerReferral(actor=FOOD_BANK, referral_id=food, answer="accepted"))
    story.do(
        c.AnswerReferral(
            actor=Actor(id="legal-aid", role=Role.PROVIDER),
            referral_id=legal,
            answer="declined",
            reason="full",
        )
    )
    story.do(c.ScheduleFollowUp(actor=ALICE, kind=FollowUpKind.APPOINTMENT, at=story.now + timedelta(days=3)))
    return story


def test_withdrawing_revokes_every_referral_in_play_and_cancels_what_was_booked() -> None:
    story = in_coordination_with_work_in_play()
    open_ids = {r.id for r in story.case.referrals if r.status in ACTIVE_REFERRAL}  # pending, sent, accepted
    booked = {f.id for f in story.case.follow_ups if f.status is FollowUpStatus.SCHEDULED}

    event = story.do(c.Withdraw(actor=ALICE, reason="the client moved away"))

    assert {r.id for r in event.revoked} == open_ids and all(r.tell_provider for r in event.revoked)
    assert set(event.cancelled) == booked
    for referral_id in open_ids:
        assert f"revoked {referral_id}" in event.describe()  # so the receipt's summary lists them
    statuses = {r.id: r for r in story.case.referrals}
    for referral_id in open_ids:
        assert statuses[referral_id].status is ReferralStatus.REVOKED
        assert statuses[referral_id].revoked_at == story.case.closed_at
        assert statuses[referral_id].answer_reason == "the case was withdrawn"
    assert ReferralStatus.DECLINED in {r.status for r in story.case.referrals}  # answered: left as it was
    assert {f.status for f in story.case.follow_ups if f.id in booked} == {FollowUpStatus.CANCELLED}
    assert replay(story.events, story.program) == story.case


def test_closing_after_evaluation_revokes_the_same_way() -> None:
    story = Story().to(Stage.EVALUATION)  # the happy path referred to the shelter and booked a visit
    event = story.do(c.Close(actor=ALICE, outcome="goals_met", goals_met=["g1", "g2"]))
    assert [r.provider for r in event.revoked] == ["shelter-north"] and len(event.cancelled) == 1
    assert story.case.referrals[0].answer_reason == "the case was closed"


def test_a_request_that_never_reached_its_provider_is_revoked_without_telling_them() -> None:
    story = Story().to(Stage.ASSESSMENT)
    story.do(quiet_referral("food-bank"))
    referral = story.case.referrals[-1].id
    story.do(
        DeliveryRecorded(
            actor=SYSTEM, key="k", kind="referral_request", delivered=False, referral_id=referral
        )
    )
    event = story.do(c.Withdraw(actor=ALICE, reason="the client moved away"))
    [failed] = [r for r in event.revoked if r.id == referral]
    assert not failed.tell_provider


def test_events_recorded_before_endings_were_listed_replay_as_they_happened() -> None:
    story = in_coordination_with_work_in_play()
    story.do(c.Withdraw(actor=ALICE, reason="the client moved away"))
    old = [*story.events[:-1], story.events[-1].model_copy(update={"revoked": [], "cancelled": []})]
    case = replay(old, story.program)
    assert ReferralStatus.REVOKED not in {r.status for r in case.referrals}


def test_a_referral_states_its_answer_deadline_from_the_program_when_none_is_asked() -> None:
    story = Story().to(Stage.ASSESSMENT)
    event = story.do(quiet_referral("food-bank"))
    assert isinstance(event.change, c.Refer)
    assert event.change.respond_within == story.program.referrals.response_time
    asked = c.Refer(
        actor=ALICE,
        provider="x",
        service=ServiceType.HOUSING,
        reason="a bed",
        respond_within=timedelta(hours=6),
    )
    assert story.do(asked).change.respond_within == timedelta(hours=6)  # type: ignore[union-attr]


def test_a_late_answer_to_a_closed_case_says_no_answer_is_needed() -> None:
    story = Story().to(Stage.ASSESSMENT)
    story.do(quiet_referral())
    referral = story.case.referrals[-1].id
    story.do(c.Withdraw(actor=ALICE, reason="the client moved away"))
    late = c.AnswerReferral(actor=PROVIDER, referral_id=referral, answer="accepted")
    with pytest.raises(Rejected) as refused:
        decide(story.case, late, story.program, story.now + timedelta(days=2), seq=99)
    assert refused.value.kind is Refusal.INVALID_TRANSITION
    assert refused.value.message == (
        f"case {story.case.number} was closed on {story.case.closed_at:%Y-%m-%d}; "
        f"referral {referral} was cancelled then, so no answer is needed"
    )


def test_a_late_answer_from_another_provider_learns_only_that_the_case_is_closed() -> None:
    story = Story().to(Stage.ASSESSMENT)
    story.do(quiet_referral())
    story.do(c.Withdraw(actor=ALICE, reason="the client moved away"))
    late = c.AnswerReferral(actor=FOOD_BANK, referral_id=story.case.referrals[-1].id, answer="accepted")
    with pytest.raises(Rejected, match="cannot answer_referral a case in closed"):
        decide(story.case, late, story.program, story.now, seq=99)


def test_an_answer_to_a_revoked_referral_says_when_it_was_cancelled() -> None:
    story = Story().to(Stage.ASSESSMENT)
    story.do(quiet_referral())
    referral = story.case.referrals[-1].id
    story.do(c.RevokeReferral(actor=SAM, referral_id=referral, reason="found a place with family"))
    late = c.AnswerReferral(actor=PROVIDER, referral_id=referral, answer="declined", reason="no beds")
    with pytest.raises(Rejected, match=f"referral {referral} was cancelled on {T0:%Y-%m-%d}"):
        decide(story.case, late, story.program, story.now, seq=99)
