"""What people see of a case: the CaseView a query returns and the UI's details."""

from __future__ import annotations

from datetime import datetime

from pydantic import Field

from domain.lifecycle import allowed_actions
from domain.models import OPEN_REFERRAL, Case, Model, ReferralStatus, Stage
from domain.policy import Program
from domain.schedule import Due, OverdueItem, next_deadline, next_due, overdue

ACTIVE_REFERRAL = OPEN_REFERRAL | {ReferralStatus.ACCEPTED}


class CaseView(Model):
    case: Case
    next_deadline: datetime | None
    next_action: Due | None
    overdue: list[OverdueItem]
    allowed_actions: list[str]
    events: int
    unrecorded: int = Field(0, description="events not yet written to the SQL record")
    archived: bool = Field(False, description="read from the SQL record: the workflow history is gone")

    @property
    def number(self) -> str:
        return self.case.number

    @property
    def stage(self) -> Stage:
        return self.case.stage


def case_view(case: Case, program: Program, now: datetime, events: int, unrecorded: int = 0) -> CaseView:
    return CaseView(
        case=case,
        next_deadline=next_deadline(case, program),
        next_action=next_due(case, program, now),
        overdue=overdue(case, program, now),
        allowed_actions=allowed_actions(case),
        events=events,
        unrecorded=unrecorded,
    )


def details_markdown(view: CaseView) -> str:
    """The Temporal UI's "current details": no client name, only case facts."""
    c = view.case
    stage = f"{c.stage.value} (held from {c.held_from.value})" if c.held_from else c.stage.value
    lines = [
        f"## Case {c.number} · {c.program}",
        f"- **Stage:** {stage}",
        f"- **Manager:** {c.manager}" + (f" · supervisor {c.supervisor}" if c.supervisor else ""),
        f"- **Risk:** {c.risk.value}",
        f"- **Next due:** {_when(view.next_deadline)}",
    ]
    if c.outcome:
        lines.append(f"- **Outcome:** {c.outcome.value}")
    open_referrals = [r for r in c.referrals if r.status in ACTIVE_REFERRAL]
    lines.append(f"- **Open referrals:** {len(open_referrals)}")
    if open_referrals:
        lines.append("### Open referrals")
        lines += [f"- {r.id}: {r.service} → {r.provider} ({r.status.value})" for r in open_referrals]
    if c.failed_deliveries:
        lines.append("### Failed deliveries")
        lines += [f"- {f.kind} ({f.at:%Y-%m-%d %H:%M} UTC): {f.detail}" for f in c.failed_deliveries[-5:]]
    if view.overdue:
        lines.append("### Overdue")
        for item in view.overdue:
            level = "not yet escalated" if item.level is None else f"level {item.level} ({item.notified})"
            lines.append(f"- **{item.what}** due {_when(item.due)} — {level}")
    return "\n".join(lines)


def _when(at: datetime | None) -> str:
    return at.strftime("%Y-%m-%d %H:%M UTC") if at else "—"


__all__ = ["CaseView", "case_view", "details_markdown"]
