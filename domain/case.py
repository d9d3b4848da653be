"""Deciding and applying changes: the functional core the workflow executes.

    decide(case, change, program, now) -> Event   (raises Rejected)
    apply(case, event) -> Case                    (never fails for a decided event)

The workflow's update validator calls `decide` to accept or refuse a command;
the handler calls it again and `apply`s the event. Replaying the events from
`open_case` rebuilds the case exactly.
"""

from __future__ import annotations

from collections.abc import Callable
from datetime import datetime
from typing import Any, TypeVar

from domain import bounds
from domain import commands as c
from domain.errors import Refusal, Rejected
from domain.events import Archive, Change, DeliveryFailing, DeliveryRecorded, Event, NoticeIssued, Restore
from domain.lifecycle import REVOCABLE, Context, next_stage
from domain.models import (
    ACTIVE_REFERRAL,
    PENDING_FOLLOW_UP,
    SYSTEM,
    Case,
    Consent,
    FailedDelivery,
    FollowUp,
    FollowUpKind,
    FollowUpStatus,
    GoalStatus,
    Hold,
    Outcome,
    Plan,
    PlanStatus,
    Referral,
    ReferralEnded,
    ReferralStatus,
    Role,
    Stage,
)
from domain.policy import Program
from domain.schedule import Due, obligations

__all__ = [
    "ENDED_AS",
    "ENDS_CASE",
    "Rejected",
    "apply",
    "cancelled_by",
    "decide",
    "intake_conflict",
    "notice_for",
    "open_case",
    "replay",
    "revoked_by",
]

_Item = TypeVar("_Item", Referral, FollowUp)


def open_case(command: c.OpenCase, program: Program, now: datetime) -> tuple[Case, Event]:
    if command.program != program.key:
        raise Rejected(Refusal.VALIDATION, f"case is for program {command.program}, not {program.key}")
    event = Event(seq=1, at=now, stage_before=None, stage_after=Stage.INTAKE, change=command)
    return apply_open(command, now), event


def intake_conflict(existing: Case, opening: c.OpenCase) -> str | None:
    """Why `opening` is not a retry of the opening that made `existing` (same intake reference,
    or same idempotency key): either names one referral of one client to one program. None: it
    is a retry."""
    used = (
        f"intake reference {opening.intake_reference}" if opening.intake_reference else "this idempotency key"
    )
    if existing.program != opening.program:
        opened = f"{existing.number} in program {existing.program}"
        return f"{used} already opened case {opened}, not {opening.program}"
    if existing.client.model_dump() != opening.client.model_dump():
        return f"{used} already opened case {existing.number} for another client"
    return None


def apply_open(command: c.OpenCase, now: datetime) -> Case:
    return Case(
        number=command.number,
        program=command.program,
        client=command.client,
        manager=command.manager,
        supervisor=command.supervisor,
        risk=command.risk,
        stage=Stage.INTAKE,
        stage_entered_at=now,
        opened_at=now,
        intake_reference=command.intake_reference,
        opening_request=command.request_id,
    )


def decide(case: Case, change: Change, program: Program, now: datetime, seq: int) -> Event:
    """The event that `change` produces now, or Rejected saying why it may not happen."""
    if isinstance(change, c.OpenCase):
        raise Rejected(Refusal.INVALID_TRANSITION, f"case {case.number} is already open")
    dest = next_stage(Context(case=case, change=change, program=program, now=now))
    if isinstance(change, c.Refer) and change.respond_within is None:
        # A referral states its answer deadline: the one asked, else the provider's (the
        # directory fills it in), else the program's; so its message can say by when.
        change = change.model_copy(update={"respond_within": program.referrals.response_time})
    return Event(
        seq=seq,
        at=now,
        stage_before=case.stage,
        stage_after=dest,
        change=change,
        revoked=revoked_by(case, change),
        cancelled=cancelled_by(case, change),
    )


# Ending a case (closed, withdrawn, declined) ends the work still in play with it, rather than
# refusing until staff revoke each piece by hand: a client who leaves cannot be made to wait for
# staff, and a provider or invitee left believing the work is on keeps the client's data for
# nothing. What ended is listed in the event (and so in the receipt's summary); every provider
# and invitee is told (activities/messages.py). See docs/architecture.md, "Deliveries".
ENDS_CASE = (c.Close, c.Withdraw, c.Decline)
ENDED_AS = {"close": "closed", "withdraw": "withdrawn", "decline": "declined"}


def revoked_by(case: Case, change: Change) -> list[ReferralEnded]:
    """The referrals `change` revokes: the one named by revoke_referral, or every referral still
    in play when the case ends."""
    if isinstance(change, c.RevokeReferral):
        ended = [r for r in case.referrals if r.id == change.referral_id]
    elif isinstance(change, ENDS_CASE):
        ended = [r for r in case.referrals if r.status in REVOCABLE]
    else:
        return []
    return [
        ReferralEnded(
            id=r.id,
            provider=r.provider,
            service=r.service,
            tell_provider=r.status is not ReferralStatus.DELIVERY_FAILED,
        )
        for r in ended
    ]


def cancelled_by(case: Case, change: Change) -> list[str]:
    """The scheduled follow-ups (appointments, visits, calls) an ending case cancels."""
    if not isinstance(change, ENDS_CASE):
        return []
    return [f.id for f in case.follow_ups if f.status is FollowUpStatus.SCHEDULED]


def apply(case: Case, event: Event, program: Program) -> Case:
    """The case after `event`. Pure: returns a new Case."""
    new = case.model_copy(deep=True)
    ch, now = event.change, event.at
    _APPLY.get(type(ch), _nothing_more)(new, ch, event)  # sees the stage before the change
    _end_work(new, event)
    if event.stage_after != case.stage:
        new.stage = event.stage_after
        # Resuming returns to the held stage with its original clock (held time excluded).
        if not isinstance(ch, c.Resume):
            new.stage_entered_at = now
    _forget_stale_notices(new, program)
    _forget_finished_work(new, program)
    return new


def replay(events: list[Event], program: Program) -> Case:
    first = events[0].change
    assert isinstance(first, c.OpenCase), "a case's history starts with its opening"
    case = apply_open(first, events[0].at)
    for event in events[1:]:
        case = apply(case, event, program)
    return case


# --- what each change does beyond moving the stage -------------------------


def _nothing_more(case: Case, change: Change, event: Event) -> None:
    return None


def _closed(case: Case, outcome: Outcome, reason: str, now: datetime) -> None:
    _end_open_hold(case, now)
    case.closed_at, case.outcome, case.close_reason = now, outcome, reason


def _decline(case: Case, ch: c.Decline, event: Event) -> None:
    _closed(case, Outcome.DECLINED, ch.reason, event.at)


def _withdraw(case: Case, ch: c.Withdraw, event: Event) -> None:
    _closed(case, Outcome.WITHDRAWN, ch.reason, event.at)


def _close(case: Case, ch: c.Close, event: Event) -> None:
    assert case.plan is not None
    for goal in case.plan.goals:
        goal.status = GoalStatus.MET if goal.id in ch.goals_met else GoalStatus.UNMET
    _closed(case, ch.outcome, ch.summary, event.at)


def _complete_assessment(case: Case, ch: c.CompleteAssessment, event: Event) -> None:
    case.assessment = ch.assessment
    case.risk = ch.assessment.risk


def _submit_plan(case: Case, ch: c.SubmitPlan, event: Event) -> None:
    case.plan = Plan(goals=ch.goals, status=PlanStatus.SUBMITTED, submitted_by=ch.actor)


def _approve_plan(case: Case, ch: c.ApprovePlan, event: Event) -> None:
    assert case.plan is not None
    case.plan.status, case.plan.decided_by, case.plan.decision_note = PlanStatus.APPROVED, ch.actor, ch.note
    case.plan_reviewed_at = event.at


def _reject_plan(case: Case, ch: c.RejectPlan, event: Event) -> None:
    assert case.plan is not None
    case.plan.status, case.plan.decided_by, case.plan.decision_note = PlanStatus.REJECTED, ch.actor, ch.reason


def _suspend(case: Case, ch: c.Suspend, event: Event) -> None:
    case.held_from, case.held_stage_entered_at = case.stage, case.stage_entered_at
    case.holds.append(Hold(start=event.at, reason=ch.reason))


def _resume(case: Case, ch: c.Resume, event: Event) -> None:
    if case.held_stage_entered_at is not None:
        case.stage_entered_at = case.held_stage_entered_at
    _end_open_hold(case, event.at)


def _end_open_hold(case: Case, now: datetime) -> None:
    if case.holds and case.holds[-1].end is None:
        case.holds[-1].end = now
    case.held_from = case.held_stage_entered_at = None


def _reopen(case: Case, ch: c.Reopen, event: Event) -> None:
    case.closed_at, case.outcome, case.close_reason = None, None, ""
    case.reopen_count += 1


def _transfer(case: Case, ch: c.Transfer, event: Event) -> None:
    case.manager = ch.to_manager


def _refer(case: Case, ch: c.Refer, event: Event) -> None:
    case.referrals.append(
        Referral(
            id=f"R{event.seq}",  # unique and stable: the seq of the event that made it
            provider=ch.provider,
            service=ch.service,
            reason=ch.reason,
            requested_at=event.at,
            requested_by=ch.actor,
            respond_within=ch.respond_within,
            shared=ch.share,
            consent_override=ch.consent_override,
        )
    )


def _answer_referral(case: Case, ch: c.AnswerReferral, event: Event) -> None:
    referral = _find_referral(case, ch.referral_id)
    referral.status = ch.answer.status
    referral.answered_at, referral.answered_by, referral.answer_reason = event.at, ch.actor, ch.reason


def _revoke_referral(case: Case, ch: c.RevokeReferral, event: Event) -> None:
    referral = _find_referral(case, ch.referral_id)
    referral.status, referral.answer_reason = ReferralStatus.REVOKED, ch.reason
    referral.revoked_at = event.at


def _end_work(case: Case, event: Event) -> None:
    """Revoke and cancel what the event says it ended (events from before it said so: nothing)."""
    if not isinstance(event.change, ENDS_CASE):
        return  # revoke_referral does its own (with its reason)
    reason = f"the case was {ENDED_AS[event.change.action]}"
    ended = {r.id for r in event.revoked}
    for referral in case.referrals:
        if referral.id in ended:
            referral.status, referral.answer_reason = ReferralStatus.REVOKED, reason
            referral.revoked_at = event.at
    cancelled = set(event.cancelled)
    for follow_up in case.follow_ups:
        if follow_up.id in cancelled:
            follow_up.status, follow_up.done_at = FollowUpStatus.CANCELLED, event.at


def _find_referral(case: Case, referral_id: str) -> Referral:
    return next(r for r in case.referrals if r.id == referral_id)


def _record_delivery(case: Case, ch: DeliveryRecorded, event: Event) -> None:
    if not ch.delivered:
        case.failed_deliveries.append(FailedDelivery(key=ch.key, kind=ch.kind, at=event.at, detail=ch.detail))
    if ch.referral_id is None:
        return
    referral = _find_referral(case, ch.referral_id)
    if referral.status is ReferralStatus.PENDING:
        referral.status = ReferralStatus.SENT if ch.delivered else ReferralStatus.DELIVERY_FAILED


def _record_consent(case: Case, ch: c.RecordConsent, event: Event) -> None:
    case.consent = Consent(share=ch.share, recorded_at=event.at, recorded_by=ch.actor, note=ch.note)


def _update_contact(case: Case, ch: c.UpdateContact, event: Event) -> None:
    given = {
        name: getattr(ch, name) for name in ("phone", "email", "address") if getattr(ch, name) is not None
    }
    case.client = case.client.model_copy(update=given)


def _schedule_follow_up(case: Case, ch: c.ScheduleFollowUp, event: Event) -> None:
    case.follow_ups.append(
        FollowUp(
            id=f"F{event.seq}",
            due_at=ch.at,
            kind=FollowUpKind(ch.kind),
            status=FollowUpStatus.SCHEDULED,
            provider=ch.provider,
            invite_client=ch.invite_client,
            scheduled_at=event.at,
            summary=ch.note,
        )
    )


def _record_follow_up_outcome(case: Case, ch: c.RecordFollowUpOutcome, event: Event) -> None:
    follow_up = next(f for f in case.follow_ups if f.id == ch.follow_up_id)
    follow_up.status, follow_up.done_at, follow_up.summary = FollowUpStatus(ch.outcome), event.at, ch.notes
    if ch.outcome is FollowUpStatus.ATTENDED:
        case.last_contact_at = event.at
    if ch.rescheduled_to is not None:
        case.follow_ups.append(
            follow_up.model_copy(
                update={
                    "id": f"F{event.seq}",
                    "due_at": ch.rescheduled_to,
                    "status": FollowUpStatus.SCHEDULED,
                    "scheduled_at": event.at,
                    "done_at": None,
                    "summary": ch.notes,
                }
            )
        )


def _record_follow_up(case: Case, ch: c.RecordFollowUp, event: Event) -> None:
    now = event.at
    case.last_contact_at = now
    due = [f for f in case.follow_ups if f.status is FollowUpStatus.DUE and f.kind is FollowUpKind.CONTACT]
    for f in due:
        f.status, f.done_at, f.summary = FollowUpStatus.DONE, now, ch.summary
    if not due:
        case.follow_ups.append(
            FollowUp(
                id=f"F{event.seq}",  # like every follow-up: named by the event that made it
                due_at=now,
                status=FollowUpStatus.DONE,
                done_at=now,
                summary=ch.summary,
            )
        )


def _review_plan(case: Case, ch: c.ReviewPlan, event: Event) -> None:
    case.plan_reviewed_at = event.at


def _notice(case: Case, ch: NoticeIssued, event: Event) -> None:
    case.notices_sent.append(ch.key)
    # The first notice about a follow-up puts the contact on the case's list of follow-ups.
    if ch.obligation_kind == "follow_up" and not any(f.due_at == ch.due for f in case.follow_ups):
        case.follow_ups.append(FollowUp(id=f"F{event.seq}", due_at=ch.due))
    # A referral whose answer is overdue has expired (a late answer is still taken).
    if ch.obligation_kind == "referral_answer" and ch.kind == "escalation" and ch.subject:
        referral = _find_referral(case, ch.subject)
        if referral.status in (ReferralStatus.PENDING, ReferralStatus.SENT):
            referral.status = ReferralStatus.EXPIRED


def _forget_stale_notices(case: Case, program: Program) -> None:
    """Keep only notice keys of obligations that still exist, so the list stays small."""
    live = {o.key for o in obligations(case, program)}
    case.notices_sent = [k for k in case.notices_sent if k.split("#", 1)[0] in live]


def _forget_finished_work(case: Case, program: Program) -> None:
    """Keep the live state bounded (domain/bounds.py): finished referrals and follow-ups
    beyond the newest few, old failed deliveries, and holds that no deadline still spans
    leave the state. Their story stays in the events (and the SQL record's rows)."""
    open_referrals = [r for r in case.referrals if r.status in ACTIVE_REFERRAL]
    finished = [r for r in case.referrals if r.status not in ACTIVE_REFERRAL]
    case.referrals = _in_event_order(open_referrals + finished[-bounds.KEEP_FINISHED_REFERRALS :])
    pending = [f for f in case.follow_ups if f.status in PENDING_FOLLOW_UP]
    done = [f for f in case.follow_ups if f.status not in PENDING_FOLLOW_UP]
    case.follow_ups = _in_event_order(pending + done[-bounds.KEEP_FINISHED_FOLLOW_UPS :])
    case.failed_deliveries = case.failed_deliveries[-bounds.KEEP_FAILED_DELIVERIES :]
    anchors = [o.since for o in obligations(case, program)]
    earliest = min(anchors, default=None)
    case.holds = [h for h in case.holds if h.end is None or (earliest is not None and h.end > earliest)]


def _in_event_order(items: list[_Item]) -> list[_Item]:
    """Referrals and follow-ups are named by their event's seq (R12, F40): keep that order."""
    return sorted(items, key=lambda item: int(item.id[1:]))


_APPLY: dict[type, Callable[[Case, Any, Event], None]] = {
    c.Decline: _decline,
    c.Withdraw: _withdraw,
    c.Close: _close,
    c.CompleteAssessment: _complete_assessment,
    c.SubmitPlan: _submit_plan,
    c.ApprovePlan: _approve_plan,
    c.RejectPlan: _reject_plan,
    c.Suspend: _suspend,
    c.Resume: _resume,
    c.Reopen: _reopen,
    c.Transfer: _transfer,
    c.Refer: _refer,
    c.RecordFollowUp: _record_follow_up,
    c.ReviewPlan: _review_plan,
    c.AddNote: _nothing_more,  # a note is its event: the record keeps it
    c.AnswerReferral: _answer_referral,
    c.RevokeReferral: _revoke_referral,
    c.RecordConsent: _record_consent,
    c.UpdateContact: _update_contact,
    c.ScheduleFollowUp: _schedule_follow_up,
    c.RecordFollowUpOutcome: _record_follow_up_outcome,
    DeliveryRecorded: _record_delivery,
    DeliveryFailing: _nothing_more,  # the notice is its event; the workflow shows the failing delivery
    NoticeIssued: _notice,
    Archive: _nothing_more,
    c.Accept: _nothing_more,
    c.StartMonitoring: _nothing_more,
    c.RevisePlan: _nothing_more,
    c.Reassess: _nothing_more,
    c.BeginEvaluation: _nothing_more,
    c.ResumeMonitoring: _nothing_more,
    Restore: _nothing_more,
}


def notice_for(case: Case, due: Due, program: Program) -> NoticeIssued:
    """The notice a due reminder or escalation issues, addressed to a person."""
    assert due.obligation is not None and due.obligation.due is not None and due.notify is not None
    recipients = {
        Role.CASE_MANAGER: case.manager,
        Role.SUPERVISOR: case.supervisor or program.lead,
        Role.PROGRAM_LEAD: program.lead,
    }
    return NoticeIssued(
        actor=SYSTEM,
        key=due.key,
        obligation=due.obligation.what,
        obligation_kind=due.obligation.kind,
        due=due.obligation.due,
        kind="reminder" if due.kind == "reminder" else "escalation",
        level=due.level,
        notify=due.notify,
        recipient=recipients.get(due.notify, program.lead),
        subject=due.obligation.subject,
    )
