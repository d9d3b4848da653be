"""Answer links: what a link offers, when it is used up and when it expires (domain rules), and
that only casework can make one (the token)."""

from __future__ import annotations

from datetime import timedelta

from activities.answer_links import AnswerLinks, answer_link_lines, command_key
from activities.messages import referral_request
from domain import commands as c
from domain.answer_links import OUTCOME_LINK_LASTS, LinkStep, link_state, step_answers
from domain.models import Actor, ReferralAnswer, Role
from tests.scenario import ALICE, Story

SHELTER = Actor(id="shelter-north", role=Role.PROVIDER)
LINKS = AnswerLinks([b"server-secret"], "https://casework.example.org/")


def referred(respond_within: timedelta = timedelta(days=2)) -> tuple[Story, str]:
    story = Story("general")
    story.do(c.Accept(actor=ALICE))
    story.do(
        c.Refer(
            actor=ALICE,
            provider="shelter-north",
            service="housing",
            reason="needs a bed",
            share=frozenset(),
            respond_within=respond_within,
        )
    )
    return story, story.case.referrals[-1].id


def test_a_respond_link_offers_accept_and_decline_an_outcome_link_completed_and_no_show() -> None:
    assert step_answers(LinkStep.RESPOND) == [ReferralAnswer.ACCEPTED, ReferralAnswer.DECLINED]
    assert step_answers(LinkStep.OUTCOME) == [ReferralAnswer.COMPLETED, ReferralAnswer.NO_SHOW]


def test_the_email_link_works_until_the_answer_deadline_then_expires() -> None:
    story, referral = referred(respond_within=timedelta(days=2))
    deadline = story.case.referrals[-1].requested_at + timedelta(days=2)
    before = link_state(
        story.case, referral, LinkStep.RESPOND, story.program, deadline - timedelta(seconds=1)
    )
    assert before.verdict == "open" and before.expires == deadline
    after = link_state(story.case, referral, LinkStep.RESPOND, story.program, deadline)
    assert after.verdict == "expired" and "expired at" in after.message


def test_once_accepted_the_email_link_is_used_and_the_outcome_link_opens() -> None:
    story, referral = referred()
    story.do(c.AnswerReferral(actor=SHELTER, referral_id=referral, answer=ReferralAnswer.ACCEPTED))
    used = link_state(story.case, referral, LinkStep.RESPOND, story.program, story.now)
    assert used.verdict == "answered" and "already accepted" in used.message
    outcome = link_state(story.case, referral, LinkStep.OUTCOME, story.program, story.now)
    assert outcome.verdict == "open" and outcome.expires == story.now + OUTCOME_LINK_LASTS

    story.do(c.AnswerReferral(actor=SHELTER, referral_id=referral, answer=ReferralAnswer.NO_SHOW))
    assert link_state(story.case, referral, LinkStep.OUTCOME, story.program, story.now).verdict == "answered"


def test_a_link_to_a_revoked_referral_says_it_was_called_off_not_used() -> None:
    story, referral = referred()
    story.do(c.RevokeReferral(actor=ALICE, referral_id=referral, reason="she found a place"))
    called_off = link_state(story.case, referral, LinkStep.RESPOND, story.program, story.now)
    assert called_off.verdict == "answered" and "has been used" not in called_off.message
    assert "already revoked: the case manager cancelled it, so no answer is needed" in called_off.message


def test_an_outcome_link_does_nothing_before_the_referral_is_accepted() -> None:
    story, referral = referred()
    assert link_state(story.case, referral, LinkStep.OUTCOME, story.program, story.now).verdict == "answered"


def test_a_referral_the_case_no_longer_holds_is_finished() -> None:
    story, _ = referred()
    assert link_state(story.case, "R999", LinkStep.RESPOND, story.program, story.now).verdict == "answered"


def test_only_casework_makes_tokens_and_a_token_names_one_step() -> None:
    token = LINKS.token("261125-7KQ2", "R7", LinkStep.RESPOND)
    claims = LINKS.open(token)
    assert claims is not None and (claims.case, claims.referral, claims.step) == (
        "261125-7KQ2",
        "R7",
        "respond",
    )
    assert LINKS.token("261125-7KQ2", "R7", LinkStep.RESPOND) == token  # a retried recording writes the same
    assert LINKS.token("261125-7KQ2", "R7", LinkStep.OUTCOME) != token
    body, _, mac = token.partition(".")
    other = LINKS.token("261125-7KQ2", "R8", LinkStep.RESPOND).partition(".")[0]
    assert LINKS.open(f"{other}.{mac}") is None  # another referral under this signature
    assert LINKS.open(f"{body}.{'A' * len(mac)}") is None
    assert LINKS.open(body) is None and LINKS.open("") is None
    assert AnswerLinks([b"guessed"], "https://x").open(token) is None
    rotated = AnswerLinks([b"new-secret", b"server-secret"], "https://x")
    assert rotated.open(token) == claims  # links sent before a rotation keep working
    assert command_key(token) == command_key(token) != command_key(other)


def test_the_referral_email_carries_the_respond_link() -> None:
    story, referral_id = referred()
    referral = story.case.referrals[-1]
    assert answer_link_lines(None, story.case, referral) == []
    body = referral_request(story.case, referral, "https://casework.example.org/callbacks/referrals", LINKS)[
        "body"
    ]
    url = LINKS.url(story.case.number, referral_id, LinkStep.RESPOND)
    assert url.startswith("https://casework.example.org/answer/") and url in body
