"""Answering a referral through a signed link: which answers a link offers, when it is used up
and when it expires. Pure rules; the token itself is made and checked in activities/answer_links.py.

A link stands for one *step* of a referral, not for the whole referral:

- `respond`: accept or decline, while the referral awaits the provider's answer (the link in
  the referral email). Used up as soon as the referral is answered (or revoked); expires at the
  referral's answer deadline.
- `outcome`: completed or no-show, once the provider has accepted (the link the accept page
  gives). Used up once the outcome is recorded; lasts OUTCOME_LINK_LASTS after the acceptance.

So "single use" is read off the referral's own status (REFERRAL_ANSWERS): a step's link works
only while the referral is in the statuses that step's answers may follow, and a referral never
returns to them. Nothing extra is stored, and a link can never undo or repeat an answer.
"""

from __future__ import annotations

from datetime import datetime, timedelta
from enum import StrEnum
from typing import Literal

from domain.lifecycle import REFERRAL_ANSWERS
from domain.models import Case, Model, Referral, ReferralAnswer, ReferralStatus
from domain.policy import Program
from domain.schedule import obligations


class LinkStep(StrEnum):
    RESPOND = "respond"  # accept or decline
    OUTCOME = "outcome"  # completed or no-show, after accepting


# The answer whose allowed statuses define each step (REFERRAL_ANSWERS is the one rule).
_DEFINING_ANSWER = {LinkStep.RESPOND: ReferralAnswer.ACCEPTED, LinkStep.OUTCOME: ReferralAnswer.COMPLETED}

# How long a provider has to report how an accepted referral went, through the link. Long
# enough for an appointment weeks out; after that the case manager records it.
OUTCOME_LINK_LASTS = timedelta(days=90)


def step_statuses(step: LinkStep) -> frozenset[ReferralStatus]:
    """The referral statuses in which a link for this step still works."""
    return REFERRAL_ANSWERS[_DEFINING_ANSWER[step]]


def step_answers(step: LinkStep) -> list[ReferralAnswer]:
    """The answers a link for this step offers, in ReferralAnswer's order."""
    return [a for a in ReferralAnswer if REFERRAL_ANSWERS[a] == step_statuses(step)]


Verdict = Literal["open", "answered", "closed", "expired"]


class LinkState(Model):
    """What a link may do now. `open`: offer `answers` until `expires` (None: no end yet)."""

    verdict: Verdict
    message: str
    referral: Referral | None = None
    answers: tuple[ReferralAnswer, ...] = ()
    expires: datetime | None = None


def link_expires(case: Case, referral: Referral, step: LinkStep, program: Program) -> datetime | None:
    """When a link for this step stops working: the referral's answer deadline (as the schedule
    computes it), or OUTCOME_LINK_LASTS after the acceptance."""
    if step is LinkStep.OUTCOME:
        return referral.answered_at + OUTCOME_LINK_LASTS if referral.answered_at else None
    owed = (o for o in obligations(case, program) if o.kind == "referral_answer" and o.subject == referral.id)
    return next((o.due for o in owed), None)


def link_state(case: Case, referral_id: str, step: LinkStep, program: Program, now: datetime) -> LinkState:
    """What a link casework signed for this referral and step may do now."""
    referral = next((r for r in case.referrals if r.id == referral_id), None)
    if referral is None:  # the live case keeps every open referral: this one finished long ago
        return LinkState(
            verdict="answered", message=f"referral {referral_id} is finished: this link no longer applies"
        )
    if referral.status not in step_statuses(step):
        # revoked: the case manager called it off (or the case ended), whoever held the link
        why = (
            "the case manager cancelled it, so no answer is needed"
            if referral.status is ReferralStatus.REVOKED
            else "this link has been used"
        )
        return LinkState(
            verdict="answered",
            referral=referral,
            message=f"referral {referral.id} is already {referral.status.value.replace('_', '-')}: "
            f"{why}, and nothing was changed",
        )
    if not case.is_open:
        return LinkState(verdict="closed", referral=referral, message=f"case {case.number} is closed")
    expires = link_expires(case, referral, step, program)
    if expires is not None and now >= expires:
        return LinkState(
            verdict="expired",
            referral=referral,
            expires=expires,
            message=f"this link expired at {expires:%Y-%m-%d %H:%M} UTC",
        )
    return LinkState(
        verdict="open",
        referral=referral,
        answers=tuple(step_answers(step)),
        expires=expires,
        message="",
    )
