"""What is due next, and when: pure functions of (case, program, now).

A case owes work against deadlines ("obligations"): finish the current stage
in time, contact the client every follow-up period while monitoring, review the
plan on its cadence. Each obligation produces notices: a reminder some lead
time before it is due, then the escalation ladder's rungs after it. Time on
hold does not count: deadlines move out by the time the case spent on hold.
"""

from __future__ import annotations

from datetime import datetime, timedelta
from typing import Literal

from domain.models import OPEN_REFERRAL, Case, FollowUpStatus, Hold, Model, Role, Stage
from domain.policy import Program

ObligationKind = Literal[
    "stage_deadline", "follow_up", "plan_review", "referral_answer", "scheduled_follow_up"
]

STAGE_WORK = {
    Stage.INTAKE: "intake decision",
    Stage.ASSESSMENT: "assessment",
    Stage.PLANNING: "approved plan",
    Stage.COORDINATION: "start of monitoring",
    Stage.EVALUATION: "evaluation and closure",
}


class Obligation(Model):
    key: str
    kind: ObligationKind
    what: str
    since: datetime  # when the work became owed
    due: datetime | None  # None while the case is on hold: the clock is paused
    subject: str | None = None  # the referral or follow-up it is about


class Due(Model):
    """The next thing the case's timer must do."""

    at: datetime
    kind: Literal["reminder", "escalation", "archive"]
    key: str
    obligation: Obligation | None = None
    level: int = 0
    notify: Role | None = None


def deadline(anchor: datetime, allowed: timedelta, holds: list[Hold]) -> datetime | None:
    """anchor + allowed, where the clock stops during holds. None if a hold is still open."""
    at, remaining = anchor, allowed
    for hold in sorted(holds, key=lambda h: h.start):
        if hold.end is not None and hold.end <= at:
            continue
        if hold.start >= at + remaining:
            break
        remaining -= max(hold.start - at, timedelta(0))
        if hold.end is None:
            return None
        at = max(at, hold.end)
    return at + remaining


def _working_stage(case: Case) -> tuple[Stage, datetime]:
    """The stage whose clocks run (on hold: the stage the case was held from)."""
    if case.stage is Stage.ON_HOLD and case.held_from is not None and case.held_stage_entered_at:
        return case.held_from, case.held_stage_entered_at
    return case.stage, case.stage_entered_at


def obligations(case: Case, program: Program) -> list[Obligation]:
    if not case.is_open:
        return []
    stage, entered = _working_stage(case)
    found: list[Obligation] = []

    def owe(
        kind: ObligationKind,
        what: str,
        anchor: datetime,
        allowed: timedelta,
        subject: str | None = None,
        holds: list[Hold] = case.holds,
    ) -> None:
        key = f"{kind}:{what}@{anchor.isoformat()}"
        due = deadline(anchor, allowed, holds)
        found.append(Obligation(key=key, kind=kind, what=what, since=anchor, due=due, subject=subject))

    if stage in program.deadlines:
        owe("stage_deadline", STAGE_WORK[stage], entered, program.deadlines[stage])
    if stage is Stage.MONITORING:
        last_contact = max(entered, case.last_contact_at or entered)
        owe("follow_up", "follow-up contact", last_contact, program.monitoring.follow_up_every)
        last_review = max(entered, case.plan_reviewed_at or entered)
        owe("plan_review", "plan review", last_review, program.monitoring.plan_review_every)
    # Time on hold does not count for any deadline: a referral's answer and an appointment's
    # outcome are owed the hold's length later, and nobody is reminded during the hold.
    # (Runs from before this kept those clocks running through holds: see `Program`.)
    outside = case.holds if program.holds_pause_every_deadline else []
    for r in case.referrals:
        if r.status in OPEN_REFERRAL:
            allowed = r.respond_within or program.referrals.response_time
            owe("referral_answer", f"answer to referral {r.id}", r.requested_at, allowed, r.id, outside)
    for f in case.follow_ups:
        if f.status is FollowUpStatus.SCHEDULED and f.scheduled_at is not None:
            what = f"{f.kind.value.replace('_', ' ')} {f.id}"
            owe("scheduled_follow_up", what, f.scheduled_at, f.due_at - f.scheduled_at, f.id, outside)
    return found


def notices(obligation: Obligation, program: Program, now: datetime) -> list[Due]:
    """Every notice this obligation will produce, sent or not, in time order."""
    due = obligation.due
    if due is None:
        return []
    out: list[Due] = []
    lead = program.escalation.reminder_lead
    # A reminder is only useful before the deadline (once it has passed, the ladder takes
    # over) and after the work began (a reminder the moment it is owed says nothing new).
    if lead > timedelta(0) and now < due and due - lead > obligation.since:
        out.append(
            Due(
                at=due - lead,
                kind="reminder",
                key=f"{obligation.key}#reminder",
                obligation=obligation,
                notify=Role.CASE_MANAGER,
            )
        )
    for level, rung in enumerate(program.escalation.ladder):
        out.append(
            Due(
                at=due + rung.after,
                kind="escalation",
                key=f"{obligation.key}#L{level}",
                obligation=obligation,
                level=level,
                notify=rung.notify,
            )
        )
    return out


def next_due(case: Case, program: Program, now: datetime) -> Due | None:
    """The earliest notice not yet issued (possibly already in the past), or archival."""
    if not case.is_open:
        if case.closed_at is None:
            return None
        return Due(
            at=case.closed_at + program.reopen_window,
            kind="archive",
            key=f"archive@{case.closed_at.isoformat()}",
        )
    sent = set(case.notices_sent)
    pending = [n for o in obligations(case, program) for n in notices(o, program, now) if n.key not in sent]
    return min(pending, key=lambda n: n.at, default=None)


def next_deadline(case: Case, program: Program) -> datetime | None:
    dues = [o.due for o in obligations(case, program) if o.due is not None]
    return min(dues, default=None)


class OverdueItem(Model):
    what: str
    due: datetime
    level: int | None  # highest escalation rung issued so far, None if none yet
    notified: Role | None


class Standing(Model):
    """An obligation with a deadline, and the highest escalation rung issued for it so far."""

    obligation: Obligation
    due: datetime
    level: int | None  # None if none yet
    notified: Role | None


def standings(case: Case, program: Program) -> list[Standing]:
    """Every obligation the case owes against a running clock (what the record keeps for the
    overdue report: which of them are overdue depends only on the time it is asked at)."""
    sent = set(case.notices_sent)
    found: list[Standing] = []
    for o in obligations(case, program):
        if o.due is None:
            continue
        # which escalations exist does not depend on the time asked (only the reminder does)
        issued = [n for n in notices(o, program, o.due) if n.kind == "escalation" and n.key in sent]
        top = issued[-1] if issued else None
        found.append(
            Standing(
                obligation=o,
                due=o.due,
                level=top.level if top else None,
                notified=top.notify if top else None,
            )
        )
    return found


def overdue(case: Case, program: Program, now: datetime) -> list[OverdueItem]:
    return [
        OverdueItem(what=s.obligation.what, due=s.due, level=s.level, notified=s.notified)
        for s in standings(case, program)
        if s.due <= now
    ]
